"""A snapshot of the workspace at every step boundary, so work is neither repeated nor lost.

When a step starts for the first time, the workspace is saved as it is then. When the same step
starts again (a retry after a failure or a crash, a resume after a block or a cancel), the
workspace is first put back to that snapshot: the step's earlier attempt may have edited files,
half-made a commit or left a stale lock, and running the step again on top of that would apply
its edits twice. A clone (`retry --clone`) starts from its source run's snapshot of the step it
continues from. Snapshots live under flowrun's home (`$FLOWRUN_HOME/snapshots/<run>/`), out of
the sandbox's reach; they are removed when the run completes or is rejected.

Only sandboxes that support it (`SupportsSnapshots`: the local backend) are snapshotted; for the
others the transcript says that a retried step continues in the workspace as it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import anyio

from ..flows.enums import TranscriptKind
from ..flows.events import TranscriptEntry
from ..flows.run import Run
from ..sandboxes.base import Sandbox, SupportsSnapshots
from .transcript import TranscriptSink

log = logging.getLogger("flowrun.runtime")


class Snapshots:
    """The snapshots of every run, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, run_id: str, step: int) -> Path:
        return self.directory / run_id / f"step-{step}.tar"

    async def at_step_start(self, sandbox: Sandbox, run: Run, index: int, sink: TranscriptSink) -> None:
        """Put the workspace back to this step's snapshot if it has one (the step ran before),
        else start it from the clone source's snapshot (a clone's first step), then save it."""
        if not isinstance(sandbox, SupportsSnapshots):
            if run.steps[index].attempt > 1:
                await _say(sink, index, "This sandbox keeps no workspace snapshots: the step starts again in the "
                                        "workspace as its last attempt left it.")
            return
        own = self.path(run.id, index)
        if await anyio.Path(own).is_file():
            await self._restore(sandbox, own, sink, index,
                                f"Step {index + 1} starts again from the workspace as it was when it first started "
                                "(its earlier attempt's changes are undone).")
            await anyio.to_thread.run_sync(self._forget_after, run.id, index)
            return
        source = self.path(run.retry_of, index) if run.retry_of else None
        if source is not None and not await anyio.to_thread.run_sync(self._has_any, run.id):
            if await anyio.Path(source).is_file():
                await self._restore(sandbox, source, sink, index,
                                    f"This run is a clone of {run.retry_of}: step {index + 1} starts from that run's "
                                    f"workspace as it was when its step {index + 1} started.")
            else:
                await _say(sink, index, f"This run is a clone of {run.retry_of}, which kept no workspace snapshot "
                                        f"for step {index + 1}: the step starts in a freshly provisioned workspace.")
        started = time.monotonic()
        await anyio.to_thread.run_sync(lambda: self.directory.mkdir(mode=0o700, parents=True, exist_ok=True))
        size = await sandbox.snapshot(own)
        log.info("run %s: workspace snapshot before step %d: %d bytes in %.3fs", run.id, index + 1, size,
                 time.monotonic() - started)

    async def _restore(self, sandbox: SupportsSnapshots, src: Path, sink: TranscriptSink, index: int,
                       text: str) -> None:
        started = time.monotonic()
        await sandbox.restore(src)
        await _say(sink, index, text, snapshot=str(src), duration_s=round(time.monotonic() - started, 3))

    def _has_any(self, run_id: str) -> bool:
        """Whether a step of this run was snapshotted (for a clone: whether it has started one)."""
        return any((self.directory / run_id).glob("step-*.tar"))

    def _forget_after(self, run_id: str, index: int) -> None:
        """Snapshots of later steps are of a workspace that no longer exists."""
        directory = self.directory / run_id
        for path in directory.glob("step-*.tar"):
            number = path.stem.removeprefix("step-")
            if number.isdigit() and int(number) > index:
                path.unlink(missing_ok=True)

    async def forget(self, run_id: str) -> None:
        """Remove a run's snapshots (it completed or was rejected: nothing will start again)."""
        await anyio.to_thread.run_sync(_remove, self.directory / run_id)


def _remove(path: Path) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


async def _say(sink: TranscriptSink, index: int, text: str, **data: object) -> None:
    await sink.emit(TranscriptEntry(kind=TranscriptKind.INFO, step=index, text=text, data=dict(data)))
