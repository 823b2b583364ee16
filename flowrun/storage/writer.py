"""The single writer: every write of a store goes through one task and one connection.

Writers queue an operation and wait. The writer task takes everything queued (up to a bound),
runs it in one `BEGIN IMMEDIATE` transaction, commits, publishes the committed events and only
then wakes the callers: that is the group commit. While one transaction runs, the next batch
gathers, so the batch size grows with the load and the per-event cost falls.

A refused operation (a moved version, a missing run, a daily cap) refuses before it records
anything and the rest of its batch commits. If the transaction itself fails (a bug, a locked or
full disk), it is rolled back and its operations are retried one by one, so one bad write cannot
fail its neighbours.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import anyio
from anyio.abc import TaskStatus

from ..flows.errors import FlowrunError
from .bus import EventBus
from .errors import StorageCorrupt, StorageError, StoreClosed
from .full import full_error, is_disk_full
from .transaction import Op, Planned, StepCache, Transaction

logger = logging.getLogger("flowrun.storage")

T = TypeVar("T")
_Outcome = Planned[Any] | BaseException


@dataclass(slots=True)
class WriterStats:
    """Counters for benchmarks and tests: how well group commit is batching."""

    transactions: int = 0
    operations: int = 0
    rows: int = 0
    largest_batch: int = 0
    fallbacks: int = 0


class _Pending(Generic[T]):
    __slots__ = ("done", "op", "outcome")

    def __init__(self, op: Op[T]) -> None:
        self.op = op
        self.done = anyio.Event()
        self.outcome: _Outcome | None = None

    def resolve(self, outcome: _Outcome) -> None:
        self.outcome = outcome
        self.done.set()

    def result(self) -> T:
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        return cast(T, outcome.result)


class GroupWriter:
    def __init__(
        self,
        conn: sqlite3.Connection | None,  # None: a subclass brings its own (PostgreSQL)
        label: str,
        bus: EventBus,
        step_cache: StepCache,
        *,
        max_batch_ops: int = 2000,
        max_batch_rows: int = 20000,
    ) -> None:
        self._conn = conn  # used only from the writer's one thread at a time (the limiter)
        self._limiter = anyio.CapacityLimiter(1)
        self._label = label
        self._bus = bus
        self._step_cache = step_cache
        self._max_ops = max_batch_ops
        self._max_rows = max_batch_rows
        self._queue: deque[_Pending[Any]] = deque()
        self._wakeup: anyio.Event | None = None
        self._closing = False
        self.stats = WriterStats()

    async def submit(self, op: Op[T]) -> T:
        """Queue `op` and wait until its transaction committed (or refused it).

        If the caller is cancelled while waiting, the write may still commit."""
        if self._closing:
            raise StoreClosed(f"the store at {self._label} is closed")
        pending = _Pending(op)
        self._queue.append(pending)
        if self._wakeup is not None:
            self._wakeup.set()
        await pending.done.wait()
        return pending.result()

    def close(self) -> None:
        """Accept no more writes; the writer finishes what is queued and returns."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                    self._wakeup = None
                    continue
                batch = self._take()
                # a started batch finishes (commit or rollback) and its callers hear about it
                with anyio.CancelScope(shield=True):
                    await self._execute(batch)
        finally:
            self._closing = True
            while self._queue:
                self._queue.popleft().resolve(
                    StoreClosed(f"the store at {self._label} closed before this write ran")
                )

    def _take(self) -> list[_Pending[Any]]:
        batch = [self._queue.popleft()]
        rows = batch[0].op.size
        while self._queue and len(batch) < self._max_ops:
            size = self._queue[0].op.size
            if rows + size > self._max_rows:
                break
            batch.append(self._queue.popleft())
            rows += size
        return batch

    async def _execute(self, batch: list[_Pending[Any]]) -> None:
        ops = [pending.op for pending in batch]
        outcomes: list[_Outcome]
        try:
            outcomes = await self._transaction(ops)
        except Exception as exc:
            if len(ops) == 1:
                outcomes = [self._translate(exc, ops[0])]
            else:
                logger.warning(
                    "group commit of %d writes to %s failed (%r); retrying them one by one",
                    len(ops),
                    self._label,
                    exc,
                )
                self.stats.fallbacks += 1
                outcomes = []
                for op in ops:
                    try:
                        outcomes.extend(await self._transaction([op]))
                    except Exception as single:
                        outcomes.append(self._translate(single, op))
        stats = self.stats
        stats.operations += len(ops)
        stats.rows += sum(op.size for op in ops)
        stats.largest_batch = max(stats.largest_batch, len(ops))
        for outcome in outcomes:
            if isinstance(outcome, Planned):
                for run_id, events in outcome.published:
                    self._bus.publish(run_id, events)
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.resolve(outcome)

    async def _transaction(self, ops: list[Op[Any]]) -> list[_Outcome]:
        """One transaction for the batch, run whole in the writer's thread: one thread hop per
        group commit rather than one per statement. Caches are updated back on the loop."""
        outcomes, tx = await anyio.to_thread.run_sync(
            self._transaction_sync, ops, limiter=self._limiter
        )
        self.stats.transactions += 1
        tx.committed()
        return outcomes

    def _transaction_sync(self, ops: list[Op[Any]]) -> tuple[list[_Outcome], Transaction]:
        """The connection runs `synchronous=NORMAL`, which in WAL mode survives a crash of the
        process (not of the machine); a batch that carries a person's decision is committed
        with `synchronous=FULL`: acknowledged means on disk."""
        conn = self._conn
        assert conn is not None
        durable = any(op.durable for op in ops)
        if durable:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tx = Transaction(conn, self._label, self._step_cache)
                outcomes: list[_Outcome] = list(tx.plan_all(ops))
                conn.execute("COMMIT")
            except BaseException:
                # no transaction may be open (BEGIN itself failed), or SQLite already rolled back
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("ROLLBACK")
                raise
        finally:
            if durable:
                conn.execute("PRAGMA synchronous = NORMAL")
        return outcomes, tx

    def _translate(self, exc: Exception, op: Op[Any]) -> BaseException:
        if isinstance(exc, FlowrunError):
            return exc
        if isinstance(exc, sqlite3.Error):
            logger.error("write to %s failed: %r", self._label, exc)
            runs = ", ".join(op.run_ids()) or None
            error: StorageError
            if is_disk_full(exc, self._label):
                error = full_error(self._label, exc, f"write run {runs} to" if runs else "write to")
            elif isinstance(exc, sqlite3.IntegrityError) and "events.run_id, events.seq" in str(exc):
                error = StorageCorrupt(
                    f"cannot append to run {runs} in {self._label}: its event log already holds the seq "
                    f"its row says is next (runs.last_seq is behind the events table): {exc}",
                    path=self._label,
                    table="runs",
                    key=f"run {runs}",
                )
            else:
                error = StorageError(
                    f"writing to {self._label} failed: {exc}", path=self._label, runs=runs
                )
            error.__cause__ = exc
            return error
        logger.exception("unexpected error while writing to %s", self._label, exc_info=exc)
        return exc
