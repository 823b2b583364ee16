"""The PostgreSQL store's group writer: SQLite's writer and planner, on a psycopg connection.

Every write is planned by the same code as on SQLite (`ops.Transaction`): seqs are assigned
inside the transaction, compare-and-set is checked against the row read inside it, refusals
leave no trace. What differs is how the transaction holds off other processes: SQLite has one
write lock for the file; here the run rows a batch changes are locked `FOR UPDATE` when they
are read, daily-cap counters by a transaction-scoped advisory lock, and a unique-key race with
another process (the same decision id, a run id) rolls the batch back and plans it again, when
the refusal is seen. Committed events are announced to other processes with `pg_notify` in the
same transaction (PostgreSQL delivers notifications only on commit): commit, then publish.

psycopg's blocking API runs in the writer's thread, one hop per transaction, as on SQLite.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from ..flows.errors import FlowrunError
from .bus import EventBus
from .chats import AppendChat
from .errors import StorageCorrupt, StorageError
from .ops import Op, Planned, Rows, StepCache, Transaction
from .writer import GroupWriter, _Outcome

logger = logging.getLogger("flowrun.storage")

EVENTS_CHANNEL = "flowrun_events"
WORK_CHANNEL = "flowrun_work"
_RETRIED = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_ATTEMPTS = 4


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """The planner writes `?` placeholders (SQLite's); psycopg takes `%s`. No statement of
    ours has a literal `?` or `%`."""
    return sql.replace("?", "%s")


class PgConnection:
    """`ops.Connection` over psycopg's blocking connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return self.raw.execute(_pg(sql), parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object:
        with self.raw.cursor() as cursor:
            cursor.executemany(_pg(sql), list(rows))
        return None


class PgTransaction(Transaction):
    LOCK_ROWS = " FOR UPDATE"

    def __init__(self, conn: PgConnection, label: str, step_cache: StepCache) -> None:
        super().__init__(conn, label, step_cache)
        self._counters_locked: set[tuple[str, str]] = set()
        self._claims_locked: set[str] = set()

    def prefetch(self, ops: Sequence[Op[Any]]) -> None:
        """Also lock the chat rows the batch appends to: their `last_seq` is read by the plan."""
        chat_ids = sorted({op.chat_id for op in ops if isinstance(op, AppendChat)})
        if chat_ids:
            self.conn.execute("SELECT id FROM chats WHERE id = ANY(?) ORDER BY id FOR UPDATE", (chat_ids,))
        super().prefetch(ops)

    def runs_started(self, workspace: str, day: str) -> int:
        key = (workspace, day)
        if key not in self._counters_locked:  # no row to lock before the first start of the day
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"usage:{workspace}:{day}",))
            self._counters_locked.add(key)
        return super().runs_started(workspace, day)

    def claim_status(self, key: str) -> str | None:
        if key not in self._claims_locked:  # two processes taking one new key: one waits
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"claim:{key}",))
            self._claims_locked.add(key)
        return super().claim_status(key)


class PgGroupWriter(GroupWriter):
    """`connect` opens a fresh blocking connection (the first, and after one broke)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], label: str, bus: EventBus,
                 step_cache: StepCache, *, origin: str, max_batch_rows: int = 20000) -> None:
        self._connect = connect
        self._pg_conn: PgConnection | None = None
        self._origin = origin
        super().__init__(None, label, bus, step_cache, max_batch_rows=max_batch_rows)

    def open(self) -> None:
        """Connect (blocking: call from a thread)."""
        self._pg_conn = PgConnection(self._connect())

    def close_connection(self) -> None:
        if self._pg_conn is not None:
            self._pg_conn.raw.close()

    def _connection(self) -> PgConnection:
        conn = self._pg_conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            if conn is not None:
                logger.warning("the connection to %s broke; reconnecting", self._label)
                conn.raw.close()
            self._pg_conn = conn = PgConnection(self._connect())
        return conn

    def _transaction_sync(self, ops: list[Op[Any]]) -> tuple[list[_Outcome], Transaction]:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._attempt(ops)
            except _RETRIED as exc:
                if attempt == _ATTEMPTS:
                    raise
                logger.info("write to %s raced another process (%s); planning it again", self._label,
                            type(exc).__name__)
        raise AssertionError("unreachable")

    def _attempt(self, ops: list[Op[Any]]) -> tuple[list[_Outcome], Transaction]:
        conn = self._connection()
        with conn.raw.transaction():
            if not any(op.durable for op in ops):
                # like SQLite's synchronous=NORMAL: survives the crash of any process, not of the
                # database server's machine; a person's decision is flushed before it is answered
                conn.raw.execute("SET LOCAL synchronous_commit = off")
            tx = PgTransaction(conn, self._label, self._step_cache)
            tx.prefetch(ops)
            outcomes: list[_Outcome] = []
            for op in ops:
                try:
                    outcomes.append(op.plan(tx))
                except FlowrunError as refused:
                    outcomes.append(refused)
            tx.flush()
            payloads = [
                f"{run_id} {events[-1].seq} {self._origin}"
                for outcome in outcomes if isinstance(outcome, Planned)
                for run_id, events in outcome.published if events
            ]
            if payloads:
                conn.raw.execute(
                    "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                    (EVENTS_CHANNEL, payloads),
                )
        return outcomes, tx

    def _translate(self, exc: Exception, op: Op[Any]) -> BaseException:
        if isinstance(exc, FlowrunError) or not isinstance(exc, psycopg.Error):
            return super()._translate(exc, op)
        logger.error("write to %s failed: %r", self._label, exc)
        runs = ", ".join(op.run_ids()) or None
        error: StorageError
        if isinstance(exc, pg_errors.UniqueViolation) and getattr(exc.diag, "table_name", "") == "events":
            error = StorageCorrupt(
                f"cannot append to run {runs} in {self._label}: its event log already holds the seq "
                f"its row says is next (runs.last_seq is behind the events table): {exc}",
                path=self._label, table="runs", key=f"run {runs}",
            )
        else:
            error = StorageError(f"writing to {self._label} failed: {exc}", path=self._label, runs=runs)
        error.__cause__ = exc
        return error
