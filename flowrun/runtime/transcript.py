"""Buffered, redacted transcript writes for one run.

Entries are batched so a chatty shell does not cost a commit per line: a batch goes to the store
when it is large, on `flush()` (the engine flushes before every state change, so the log keeps
transcript and state in order), and at least every `interval` seconds while entries wait (a
flusher task owned by the sink's task group), so a live viewer lags by at most that much.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from ..flows.events import LogOnly, TranscriptEntry
from ..storage.base import Store

Redact = Callable[[LogOnly], LogOnly]


class TranscriptSink:
    def __init__(self, store: Store, run_id: str, *, redact: Redact | None = None,
                 max_batch: int = 256, interval: float = 0.05) -> None:
        self._store = store
        self.run_id = run_id
        self._redact = redact
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
            await self.flush()

    async def emit(self, entry: TranscriptEntry) -> None:
        await self.log(entry)

    async def log(self, entry: LogOnly) -> None:
        """Buffer any log-only event (a transcript entry, the agent's messages)."""
        if self._redact is not None:
            entry = self._redact(entry)
        self._buffer.append(entry)
        if len(self._buffer) >= self._max_batch:
            await self.flush()
        elif len(self._buffer) == 1:
            self._wake.set()

    @asynccontextmanager
    async def taken(self) -> AsyncIterator[list[LogOnly]]:
        """The buffered entries, taken under the flush lock, for a caller that commits them in
        its own transaction (a state change): one commit instead of two, order kept. If the
        caller fails, the entries are written on their own so none is lost."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            try:
                yield batch
            except BaseException:
                if batch:
                    with anyio.CancelScope(shield=True):
                        await self._store.append_transcript(self.run_id, batch)
                raise

    async def flush(self) -> None:
        async with self._lock:
            if self._buffer:
                batch, self._buffer = self._buffer, []
                await self._store.append_transcript(self.run_id, batch)
