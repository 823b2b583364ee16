"""Buffered, redacted transcript writes for one run.

Entries are batched so a chatty shell does not cost a commit per line: a batch goes to the store
when it is large, on `flush()` (the engine flushes before every state change, so the log keeps
transcript and state in order), and at least every `interval` seconds while entries wait (a
flusher task owned by the sink's task group), so a live viewer lags by at most that much.

Every entry is redacted again by the store on its way in; the sink's own job is the streamed
pieces (model text and thinking deltas, shell output chunks), which it redacts as streams: the
tail of a stream that could still be the start of a secret is held back until the next piece of
that stream, until the agent does something else, or until the next state change.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from ..flows.enums import TranscriptKind
from ..flows.errors import LeaseLost
from ..flows.events import AgentMessages, LogOnly, TranscriptEntry
from ..flows.redact import Redactor, StreamRedactor
from ..storage.base import Store

log = logging.getLogger("flowrun.runtime")
_STREAMED = frozenset({TranscriptKind.TEXT, TranscriptKind.THINKING, TranscriptKind.TOOL_DELTA})
_StreamKey = tuple[int | None, str | None, TranscriptKind, str]


class _OpenStream:
    __slots__ = ("last", "redactor")

    def __init__(self, redactor: StreamRedactor, last: TranscriptEntry) -> None:
        self.redactor = redactor
        self.last = last


class TranscriptSink:
    def __init__(self, store: Store, run_id: str, *, redactor: Redactor | None = None, max_batch: int = 256,
                 interval: float = 0.05, fence: str | None = None) -> None:
        self._store = store
        self.run_id = run_id
        self._fence = fence  # the driver's lease owner: its writes stop once another process holds the run
        self.lost = False  # a write was refused: the run's lease is another process's now
        self._redactor = redactor if redactor is not None else Redactor()
        self._streams: dict[_StreamKey, _OpenStream] = {}
        self._max_batch = max_batch
        self._interval = interval
        self._buffer: list[LogOnly] = []
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> TranscriptSink:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._flusher)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)  # the body's exception propagates unwrapped
        with anyio.CancelScope(shield=True):
            await self.flush()

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(self._interval)
            await self._flush_buffer()

    async def emit(self, entry: TranscriptEntry) -> None:
        await self.log(entry)

    async def log(self, entry: LogOnly) -> None:
        """Buffer any log-only event (a transcript entry, the agent's messages)."""
        if isinstance(entry, TranscriptEntry):
            self._close_streams(entry)
            if entry.kind in _STREAMED and entry.stream is not None:
                streamed = self._feed(entry)
                if streamed is None:
                    return
                entry = streamed
        elif isinstance(entry, AgentMessages):
            self._close_streams(None, step=entry.step)
        self._buffer.append(entry)
        if len(self._buffer) >= self._max_batch:
            await self.flush()
        elif len(self._buffer) == 1:
            self._wake.set()

    def _feed(self, entry: TranscriptEntry) -> TranscriptEntry | None:
        assert entry.stream is not None
        key = (entry.step, entry.subagent, entry.kind, entry.stream)
        open_stream = self._streams.get(key)
        if open_stream is None:
            open_stream = self._streams[key] = _OpenStream(self._redactor.stream(), entry)
        open_stream.last = entry
        text = open_stream.redactor.feed(entry.text)
        if not text:
            return None
        return entry if text is entry.text else entry.model_copy(update={"text": text})

    def _close_streams(self, entry: TranscriptEntry | None, *, step: int | None = None) -> None:
        """Let out the held tails of the streams `entry` ends: the agent that wrote it moved on
        (another block, a tool call, a result). A shell's stdout and stderr interleave: the deltas
        of one call end neither stream of it. With no entry, every stream of `step` ends (or all)."""
        if not self._streams:
            return
        for key, open_stream in list(self._streams.items()):
            last = open_stream.last
            if entry is not None:
                if (last.step, last.subagent) != (entry.step, entry.subagent):
                    continue
                if key == (entry.step, entry.subagent, entry.kind, entry.stream):
                    continue
                if (entry.kind == last.kind == TranscriptKind.TOOL_DELTA
                        and entry.call_id == last.call_id):
                    continue
            elif step is not None and last.step != step:
                continue
            del self._streams[key]
            tail = open_stream.redactor.finish()
            if tail:
                self._buffer.append(last.model_copy(update={"text": tail}))

    @asynccontextmanager
    async def taken(self) -> AsyncIterator[list[LogOnly]]:
        """The buffered entries, taken under the flush lock, for a caller that commits them in
        its own transaction (a state change): one commit instead of two, order kept. If the
        caller fails, the entries are written on their own so none is lost."""
        async with self._lock:
            self._close_streams(None)
            batch, self._buffer = self._buffer, []
            try:
                yield batch
            except BaseException:
                if batch:
                    with anyio.CancelScope(shield=True):
                        await self._append(batch)
                raise

    async def flush(self) -> None:
        """Write everything buffered, the held tails of open streams included."""
        self._close_streams(None)
        await self._flush_buffer()

    async def _flush_buffer(self) -> None:
        async with self._lock:
            if self._buffer:
                batch, self._buffer = self._buffer, []
                await self._append(batch)

    async def _append(self, batch: list[LogOnly]) -> None:
        """Write a batch; once the run's lease is lost, nothing more is written (the entries of a
        driver that lost its run belong to no one: the new driver tells the run's story)."""
        if self.lost:
            return
        try:
            await self._store.append_transcript(self.run_id, batch, lease_owner=self._fence)
        except LeaseLost:
            self.lost = True
            log.warning("lost the lease of run %s: %d transcript entries were not written", self.run_id, len(batch))
