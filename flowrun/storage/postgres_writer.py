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

import contextlib
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from ..flows.errors import FlowrunError
from .bus import EventBus
from .chats import AppendChat
from .errors import StorageCorrupt, StorageError
from .transaction import Op, Planned, Rows, StepCache, Transaction
from .writer import GroupWriter, _Outcome

logger = logging.getLogger("flowrun.storage")

EVENTS_CHANNEL = "flowrun_events"
WORK_CHANNEL = "flowrun_work"


def channel(name: str, schema: str | None) -> str:
    """The NOTIFY channel `name` of the store in `schema`. Channels are per database, not per
    schema: two flowrun stores in one database (a schema each, as tests and staging do) must
    not wake each other. Identifiers stop at 63 bytes, so a long schema name is hashed."""
    if schema is None:
        return name
    full = f"{name}_{schema.lower()}"
    return full if len(full) <= 63 else f"{name}_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"
_RETRIED = (pg_errors.UniqueViolation, pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_ATTEMPTS = 4


@functools.lru_cache(maxsize=512)
def pg_placeholders(sql: str) -> str:
    """The planner writes `?` placeholders (SQLite's); psycopg takes `%s`. No statement of
    ours has a literal `?` or `%`."""
    return sql.replace("?", "%s")


class PgConnection:
    """`ops.Connection` over psycopg's blocking connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return self.raw.execute(pg_placeholders(sql), parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object:
        """An INSERT of many rows is one statement (`VALUES (..), (..)`): in pipeline mode a
        statement costs no round trip, but each costs the client as much as a small one. Other
        statements go row by row (psycopg's `executemany` would end with a round trip of its own)."""
        rows = list(rows)
        head, _, tail = sql.partition(_VALUES)
        group, _, rest = tail.partition(")")
        # only a list of plain placeholders: a value computed per row (a subquery) must see the
        # rows inserted before it, which one statement's snapshot does not
        if len(rows) > 1 and head.startswith("INSERT INTO ") and group.replace("?", "").replace(",", "").strip() == "":
            width = len(rows[0])
            per_statement = _MAX_PARAMETERS // width
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                values = ", ".join([_values(width)] * len(chunk))
                self.raw.execute(f"{head}VALUES {values}{rest}", [value for row in chunk for value in row])
            return None
        statement = pg_placeholders(sql)
        for row in rows:
            self.raw.execute(statement, row)
        return None


_VALUES = "VALUES ("
_MAX_PARAMETERS = 65535  # the protocol's bound on one statement's parameters


@functools.lru_cache(maxsize=16)
def _values(width: int) -> str:
    return "(" + ", ".join(["%s"] * width) + ")"


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

    def lock_records(self) -> None:
        """Two processes writing records wait for each other until the first commits: the second
        then reads the first's change numbers (a new statement sees what committed before it), so
        no reader ever sees number n+1 committed before n."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", ("records:changed",))

    def claim_status(self, key: str) -> str | None:
        if key not in self._claims_locked:  # two processes taking one new key: one waits
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"claim:{key}",))
            self._claims_locked.add(key)
        return super().claim_status(key)


class PgGroupWriter(GroupWriter):
    """`connect` opens a fresh blocking connection (the first, and after one broke)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], label: str, bus: EventBus,
                 step_cache: StepCache, *, origin: str, max_batch_rows: int = 20000,
                 schema: str | None = None) -> None:
        self._connect = connect
        self._channels = (channel(EVENTS_CHANNEL, schema), channel(WORK_CHANNEL, schema))
        self._pg_conn: PgConnection | None = None
        self._origin = origin
        self._announced: OrderedDict[str, None] = OrderedDict()  # announced at commit: see `announced`
        super().__init__(None, label, bus, step_cache, max_batch_rows=max_batch_rows)

    def open(self) -> None:
        """Connect (blocking: call from a thread)."""
        self._pg_conn = PgConnection(self._new_connection())

    def _new_connection(self) -> psycopg.Connection[Any]:
        raw = self._connect()
        if not raw.autocommit:
            raise ValueError("the writer's connection must be in autocommit mode (it sends BEGIN itself)")
        # like SQLite's synchronous=NORMAL: survives the crash of any process, not of the database
        # server's machine; a batch carrying a person's decision turns it on (see `_attempt`)
        raw.execute("SET synchronous_commit = off")
        return raw

    def close_connection(self) -> None:
        if self._pg_conn is not None:
            self._pg_conn.raw.close()

    def _connection(self) -> PgConnection:
        conn = self._pg_conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            if conn is not None:
                logger.warning("the connection to %s broke; reconnecting", self._label)
                conn.raw.close()
            self._pg_conn = conn = PgConnection(self._new_connection())
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
        """One transaction in pipeline mode: statements are queued, not waited for, so a batch
        costs two round trips (BEGIN with the reads its plan needs; then every write, the
        notifications and COMMIT) rather than one per statement. BEGIN and COMMIT are sent as
        statements (psycopg's own `transaction()` waits for each)."""
        conn = self._connection()
        raw = conn.raw
        try:
            with raw.pipeline():
                raw.execute("BEGIN")
                if any(op.durable for op in ops):  # acknowledged means flushed to disk
                    raw.execute("SET LOCAL synchronous_commit = on")
                tx = PgTransaction(conn, self._label, self._step_cache)
                outcomes: list[_Outcome] = list(tx.plan_all(ops))
                self._notify(conn, ops, outcomes)
                raw.execute("COMMIT")
        except BaseException:
            # a failed statement skipped the rest of the pipeline, COMMIT included: end the
            # transaction it left open (if the connection itself broke, it is replaced)
            if not raw.broken and not raw.closed:
                with contextlib.suppress(psycopg.Error):
                    raw.execute("ROLLBACK")
            raise
        return outcomes, tx

    def _notify(self, conn: PgConnection, ops: list[Op[Any]], outcomes: list[_Outcome]) -> None:
        """Announce the batch's events and, on the work channel, the runs it made runnable (a
        run created, approved, resumed, retried): delivered by PostgreSQL only on commit, so a
        worker hears of new work as soon as it can claim it."""
        events: list[str] = []
        work: list[str] = []
        for op, outcome in zip(ops, outcomes, strict=True):
            if not isinstance(outcome, Planned):
                continue
            for run_id, published in outcome.published:
                if published:
                    events.append(f"{run_id} {published[-1].seq} {self._origin}")
            work += op.made_runnable()
        if events or work:
            conn.raw.execute(
                "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload "
                "UNION ALL SELECT pg_notify(%s, run_id) FROM unnest(%s::text[]) AS run_id",
                (self._channels[0], events, self._channels[1], work),
            )
            for run_id in work:
                self._announced[run_id] = None
            while len(self._announced) > 1024:
                self._announced.popitem(last=False)

    def announced(self, run_id: str) -> bool:
        """Was `run_id` announced as new work when it was committed (once: the answer is used up)?"""
        return self._announced.pop(run_id, False) is None

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
