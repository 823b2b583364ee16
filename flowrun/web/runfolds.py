"""The run page's folded transcripts, kept up to date instead of re-read.

A run page refresh (`/runs/{id}/live?after_seq=N`) renders the header, banners, summary and
timeline from the run row, and the transcript sections that changed after N. Those sections are
folded from the whole log, so this keeps the fold of each recently shown run and, on the next
request, reads and folds only the events after the last one it folded (in pages, up to the run
row's `last_seq`). The first request for a run after a restart reads its log once.

The fold is only ever added to (a stored event never changes; a retried step's earlier
transcript stays), so a kept fold is as good as a fresh one. Runs are evicted least recently
shown first.
"""

from __future__ import annotations

from collections import OrderedDict

import anyio

from ..flows.run import Run
from ..runtime.access import Actor
from ..tools.face import EngineSlot
from .transcript_view import Fold, Section

KEPT_RUNS = 32
PAGE = 2000


class RunFolds:
    def __init__(self, slot: EngineSlot, kept: int = KEPT_RUNS) -> None:
        self.slot = slot
        self.kept = kept
        self._folds: OrderedDict[str, tuple[Fold, anyio.Lock]] = OrderedDict()
        self.events_read = 0
        """Events read from the store so far (tests check that a refresh reads only new ones)."""

    async def sections(self, actor: Actor, run: Run) -> list[Section]:
        """The transcript sections of `run` up to at least its `last_seq` (a request that saw
        a newer row may have folded a little further; sections are rendered whole, so the page
        stays gapless). The caller has been allowed to read the run; every page read asks the
        engine again with the caller's actor.

        The sections are shared: render them before the next await."""
        found = self._folds.get(run.id)
        if found is None:
            found = self._folds[run.id] = (Fold(len(run.steps)), anyio.Lock())
            while len(self._folds) > self.kept:
                self._folds.popitem(last=False)
        self._folds.move_to_end(run.id)
        fold, lock = found
        async with lock:
            engine = self.slot.get()
            while fold.seq < run.last_seq:
                page = await engine.events(actor, run.id, fold.seq, min(PAGE, run.last_seq - fold.seq))
                if not page:
                    break
                self.events_read += len(page)
                fold.add(page)
        return fold.sections(len(run.steps))
