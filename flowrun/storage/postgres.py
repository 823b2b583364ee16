"""`PostgresStore`: the `Store` for several machines, on PostgreSQL (`pip install flowrun[postgres]`).

The same protocol and guarantees as `SQLiteStore`, with the same planner for writes (see
`postgres_writer`): per-run gapless seqs assigned in the transaction, commit before publish,
compare-and-set on the run version, idempotent decision ids. Reads use a few async psycopg
connections. Events committed by other processes are announced with LISTEN/NOTIFY (the payload
is `run_id seq origin`; subscribers read the rows), so a subscription hears them at once; it
still looks in the database after `poll_interval` of quiet, in case a notification was lost
with a dropped connection.

    async with PostgresStore("postgresql://flowrun@db.internal/flowrun") as store: ...

Driver: psycopg 3, chosen by measurement (`scripts/bench_pg_drivers.py`, see the README).
"""

from __future__ import annotations

import contextlib
import enum
import json as jsonlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date
from typing import Any

import anyio
import psycopg
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..flows.enums import RunStatus
from ..flows.errors import NotFound, UsageError
from ..flows.events import Event, EventData, LogOnly
from ..flows.redact import Redactor
from ..flows.run import Run, now
from .base import ClaimRow, ClaimStatus, DecisionRow, RecordRow, RunFilter
from .bus import DEFAULT_CAPACITY, EventBus
from .codec import (
    StepMemo,
    decode_decision,
    decode_event,
    decode_record,
    decode_run,
    encode_entries,
    encode_events,
    encode_record,
    encode_run,
    format_day,
    redact_all,
    redact_run,
)
from .errors import SchemaTooNew, StorageCorrupt, StorageError, StoreClosed
from .factory import is_postgres_url
from .migrate import load_migrations
from .ops import (
    AppendTranscript,
    Claim,
    CommitPair,
    CommitRun,
    CreateRun,
    PutRecord,
    SettleClaim,
    StepCache,
    decision_row,
)
from .postgres_chats import PostgresChats
from .postgres_leases import PostgresLeases
from .postgres_writer import EVENTS_CHANNEL, WORK_CHANNEL, PgGroupWriter
from .subscription import Subscription
from .writer import WriterStats

logger = logging.getLogger("flowrun.storage")

_MIGRATION_LOCK = 7_246_001  # pg_advisory_xact_lock key: one migrating process at a time


class StoreState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def _conninfo_dict(url: str) -> dict[str, Any]:
    try:
        return dict(conninfo_to_dict(url))
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"not a valid PostgreSQL URL ({exc})") from None


def redacted(url: str) -> str:
    """The URL as it may be shown: no password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable url>"
    host, port, user, db = (str(parts.get(k) or "") for k in ("host", "port", "user", "dbname"))
    return f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{db}"


class PostgresStore(PostgresLeases, PostgresChats):
    """The PostgreSQL `Store`. An async context manager, entered once, like `SQLiteStore`.

    Args:
        url: a libpq URL (`postgresql://user@host:5432/db`).
        schema: keep flowrun's tables in this schema (created if missing); default: the
            connection's search_path (usually `public`). Tests use one schema per run.
        poll_interval: how long a subscription waits without any notification before it looks
            in the database anyway.
        readers: async connections for reads (and lease statements).
        redactor: replaces secrets in everything written, as `SQLiteStore`'s does.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        poll_interval: float = 2.0,
        readers: int = 3,
        mailbox_capacity: int = DEFAULT_CAPACITY,
        max_batch_rows: int = 20000,
        connect_timeout: float = 10.0,
        redactor: Redactor | None = None,
    ) -> None:
        if not is_postgres_url(url):
            raise UsageError(f"PostgresStore needs a postgresql:// URL, got {redacted(url)!r}")
        if poll_interval <= 0 or readers < 1 or max_batch_rows < 1:
            raise UsageError("PostgresStore: poll_interval must be > 0, readers >= 1, max_batch_rows >= 1")
        if schema is None:  # the URL may name one: ?options=-csearch_path%3Dname
            found = re.search(r"-c\s*search_path=(\w+)", str(_conninfo_dict(url).get("options") or ""))
            schema = found.group(1) if found else None
        if schema is not None and not schema.replace("_", "").isalnum():
            raise UsageError(f"schema must be letters, digits and underscores, got {schema!r}")
        self.url = url
        self.schema = schema
        self.path = redacted(url) + (f"#{schema}" if schema else "")  # the label errors name
        self._conninfo = make_conninfo(
            url, connect_timeout=max(1, int(connect_timeout)),
            **({"options": f"-csearch_path={schema}"} if schema else {}),
        )
        self._poll_interval = poll_interval
        self.redactor = redactor if redactor is not None else Redactor()  # as SQLiteStore: on every write
        self._reader_count = readers
        self._max_batch_rows = max_batch_rows
        self._bus = EventBus(mailbox_capacity)
        self._step_cache = StepCache()
        self._step_memo = StepMemo()
        self._origin = secrets.token_hex(6)  # tells this store's notifications from others'
        self._stack: AsyncExitStack | None = None
        self._writer: PgGroupWriter | None = None
        self._free: list[psycopg.AsyncConnection[Any] | None] = []
        self._limit: anyio.Semaphore | None = None
        self._work: anyio.Event | None = None
        self._work_flag = False
        self.state = StoreState.NEW

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def stats(self) -> WriterStats:
        return self._writer.stats if self._writer is not None else WriterStats()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> PostgresStore:
        if self.state is not StoreState.NEW:
            raise UsageError(f"the store at {self.path} is {self.state.value}; a PostgresStore can be entered once")
        stack = AsyncExitStack()
        try:
            await migrate_postgres(self._conninfo, self.path, self.schema)
            stack.push_async_callback(self._close_readers)
            for _ in range(self._reader_count):
                self._free.append(await self._connect())
            self._limit = anyio.Semaphore(self._reader_count)
            stack.push_async_callback(self._drain_readers)
            stack.callback(self._bus.close)
            writer = PgGroupWriter(lambda: psycopg.connect(self._conninfo), self.path, self._bus,
                                   self._step_cache, origin=self._origin, max_batch_rows=self._max_batch_rows)
            await anyio.to_thread.run_sync(writer.open)
            stack.callback(writer.close_connection)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # the listener: after the writer ends
            self._writer = writer
            stack.callback(writer.close)
            await task_group.start(writer.run)
            await task_group.start(self._listen)
        except BaseException as exc:
            self.state = StoreState.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open {self.path}: {exc}", path=self.path) from exc
            raise
        self._stack = stack
        self.state = StoreState.OPEN
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.state is not StoreState.OPEN or self._stack is None:
            return
        self.state = StoreState.CLOSED
        stack, self._stack = self._stack, None
        await stack.aclose()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)  # for snapshot reads
        return conn

    async def _drain_readers(self) -> None:
        assert self._limit is not None
        with anyio.CancelScope(shield=True):
            for _ in range(self._reader_count):
                await self._limit.acquire()

    def _open_writer(self) -> PgGroupWriter:
        if self.state is not StoreState.OPEN or self._writer is None:
            raise StoreClosed(f"the store at {self.path} is {self.state.value}, not open (use `async with`)")
        return self._writer

    @asynccontextmanager
    async def _reading(self, snapshot: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection. One whose use was cancelled or failed is closed and replaced on
        its next use: its protocol state is unknown (a query may still be in flight)."""
        self._open_writer()
        assert self._limit is not None
        async with self._limit:
            conn = self._free.pop()
            healthy = False
            try:
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        await _close(conn)
                    conn = None
                    conn = await self._connect()
                if snapshot:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
                healthy = True
            except psycopg.Error as exc:
                raise StorageError(f"cannot read {self.path}: {exc}", path=self.path) from exc
            finally:
                if not healthy and conn is not None:
                    await _close(conn)
                    conn = None
                self._free.append(conn)

    async def _close_readers(self) -> None:
        free, self._free = self._free, []
        for conn in free:
            if conn is not None:
                await _close(conn)

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        async with self._reading() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    # -- listening ---------------------------------------------------------------------------------

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hand other processes' notifications to the bus (events) and to `wait_for_work`."""
        started = False
        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                if not started:
                    raise StorageError(f"cannot listen on {self.path}: {exc}", path=self.path) from exc
                logger.warning("cannot listen on %s (%s); retrying in %.1fs", self.path, exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                await conn.execute(f"LISTEN {WORK_CHANNEL}")
                if not started:
                    started = True
                    task_status.started()
                else:  # notifications may have been lost while disconnected
                    self._bus.nudge()
                    self._wake_work()
                delay = 0.2
                async for note in conn.notifies():
                    if note.channel == WORK_CHANNEL:
                        self._wake_work()
                        continue
                    run_id, _, rest = note.payload.partition(" ")
                    if not rest.endswith(self._origin):
                        self._bus.nudge(run_id)
            except psycopg.Error as exc:
                logger.warning("lost the notification connection to %s (%s); reconnecting", self.path, exc)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(conn)

    def _wake_work(self) -> None:
        self._work_flag = True
        if self._work is not None:
            self._work.set()

    # -- runs --------------------------------------------------------------------------------------

    async def create_run(self, run: Run, events: Sequence[EventData], *, daily_cap: int | None = None,
                         day: date | None = None) -> tuple[Run, list[Event]]:
        writer = self._open_writer()
        day = _cap_day(daily_cap, day)
        run = redact_run(run, self.redactor, new=True)
        events = redact_all(events, self.redactor)
        return await writer.submit(
            CreateRun(run, encode_run(run, new=True), encode_events(run.id, events), daily_cap, day)
        )

    async def commit(self, run: Run, events: Sequence[EventData], *, expected_version: int,
                     decision_id: str | None = None, lease_owner: str | None = None) -> tuple[Run, list[Event]]:
        writer = self._open_writer()
        op = self._commit_op(run, events, expected_version, decision_id)
        op.fence = lease_owner
        return await writer.submit(op)

    async def commit_pair(self, first: tuple[Run, Sequence[EventData], int],
                          second: tuple[Run, Sequence[EventData]], *, daily_cap: int | None = None,
                          day: date | None = None) -> tuple[Run, Run]:
        writer = self._open_writer()
        day = _cap_day(daily_cap, day)
        run, events, expected_version = first
        clone, clone_events = second
        if run.id == clone.id:
            raise UsageError(f"commit_pair: both runs have the id {run.id}")
        clone = redact_run(clone, self.redactor, new=True)
        clone_events = redact_all(clone_events, self.redactor)
        return await writer.submit(CommitPair(
            self._commit_op(run, events, expected_version, None),
            CreateRun(clone, encode_run(clone, new=True), encode_events(clone.id, clone_events), daily_cap, day),
        ))

    def _commit_op(self, run: Run, events: Sequence[EventData], expected_version: int,
                   decision_id: str | None) -> CommitRun:
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 1:
            raise UsageError(f"expected_version must be a stored version (>= 1), got {expected_version!r}")
        run = redact_run(run, self.redactor)
        encoded = encode_run(run, memo=self._step_memo)
        encoded_events = encode_events(run.id, redact_all(events, self.redactor))
        decision = decision_row(run, encoded_events, decision_id) if decision_id is not None else None
        return CommitRun(run, encoded, encoded_events, expected_version, decision)

    async def append_transcript(self, run_id: str, entries: Sequence[LogOnly], *,
                                lease_owner: str | None = None) -> list[Event]:
        writer = self._open_writer()
        if not entries:
            return []
        entries = redact_all(entries, self.redactor)
        return await writer.submit(AppendTranscript(run_id, encode_entries(run_id, entries), lease_owner))

    async def get_run(self, run_id: str) -> Run:
        runs = await self._load_runs("WHERE id = %s", (run_id,))
        if not runs:
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        return runs[0]

    async def list_runs(self, filter: RunFilter | None = None) -> list[Run]:
        filter = filter if filter is not None else RunFilter()
        if filter.limit < 1:
            raise UsageError(f"RunFilter.limit must be >= 1, got {filter.limit}")
        clauses: list[str] = []
        params: list[Any] = []
        if filter.status is not None:
            if not filter.status:
                return []
            clauses.append("status = ANY(%s)")
            params.append([RunStatus(status).value for status in filter.status])
        for column, value in (("flow_id", filter.flow), ("workspace", filter.workspace),
                              ("started_by", filter.started_by)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if filter.before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = %s)")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._load_runs(f"{where} ORDER BY created_at DESC, id DESC LIMIT %s", (*params, filter.limit))

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        if not statuses:
            return []
        values = [RunStatus(status).value for status in statuses]
        return await self._load_runs("WHERE status = ANY(%s) ORDER BY created_at, id", (values,))

    async def _load_runs(self, where: str, params: Sequence[Any]) -> list[Run]:
        async with self._reading(snapshot=True) as conn:
            cursor = await conn.execute(f"SELECT id, version, last_seq, json, flow FROM runs {where}", params)
            rows = await cursor.fetchall()
            steps: dict[str, list[tuple[int, str]]] = {row[0]: [] for row in rows}
            if steps:
                cursor = await conn.execute(
                    "SELECT run_id, idx, json FROM steps WHERE run_id = ANY(%s) ORDER BY run_id, idx", (list(steps),)
                )
                for run_id, index, json in await cursor.fetchall():
                    steps[run_id].append((index, json))
        runs: list[Run] = []
        for run_id, version, last_seq, json, flow in rows:
            run = decode_run(self.path, run_id, version, last_seq, json, flow, steps[run_id])
            self._step_cache.put(run_id, version, tuple(json for _, json in steps[run_id]))
            runs.append(run)
        return runs

    # -- the event log -------------------------------------------------------------------------------

    async def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        if after_seq < 0:
            raise UsageError(f"after_seq must be >= 0, got {after_seq}")
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be >= 1 (or None for all), got {limit}")
        return await self._fetch_events(run_id, after_seq, -1 if limit is None else limit, True)

    async def _fetch_events(self, run_id: str, after_seq: int, limit: int, must_exist: bool) -> list[Event]:
        rows = await self._rows(
            "SELECT seq, at, data FROM events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (run_id, after_seq, None if limit < 0 else limit),
        )
        if not rows and must_exist and not await self._rows(
            "SELECT 1 FROM runs WHERE id = %s UNION ALL SELECT 1 FROM chats WHERE id = %s", (run_id, run_id)
        ):
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        events: list[Event] = []
        expected = after_seq + 1
        for seq, at, data in rows:
            if seq != expected:
                raise StorageCorrupt(
                    f"the event log of run {run_id} in {self.path} has a gap: seq {expected} is missing "
                    f"(next stored is {seq})", path=self.path, table="events", key=f"run {run_id}",
                )
            events.append(decode_event(self.path, run_id, seq, at, data))
            expected += 1
        return events

    async def events_json(self, run_id: str, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, event as JSON)` without decoding, as `SQLiteStore.events_json` (the websocket's
        replay): the JSON is what `Event.model_dump_json()` gives, built from the stored columns."""
        rows = await self._rows(
            "SELECT seq, '{\"run_id\":' || to_json(run_id)::text || ',\"seq\":' || seq || "
            "',\"at\":\"' || replace(at, '.000000Z', 'Z') || '\",\"data\":' || data || '}' "
            "FROM events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (run_id, after_seq, limit),
        )
        if not rows and not await self._rows("SELECT 1 FROM runs WHERE id = %s", (run_id,)):
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        for expected, (seq, _) in enumerate(rows, start=after_seq + 1):
            if seq != expected:
                raise StorageCorrupt(
                    f"the event log of run {run_id} in {self.path} has a gap: seq {expected} is missing "
                    f"(next stored is {seq})", path=self.path, table="events", key=f"run {run_id}",
                )
        return [(int(seq), str(text)) for seq, text in rows]

    def subscribe(self, run_id: str, after_seq: int = 0) -> Subscription:
        """Stored events after `after_seq`, then live ones (from any process, announced by
        NOTIFY), with no gap and no duplicate."""
        self._open_writer()
        if after_seq < 0:
            raise UsageError(f"after_seq must be >= 0, got {after_seq}")
        return Subscription(self._bus, self._fetch_events, run_id, after_seq, poll_interval=self._poll_interval)

    # -- decisions, records, usage -------------------------------------------------------------------

    async def get_decision(self, decision_id: str) -> DecisionRow | None:
        rows = await self._rows("SELECT json FROM decisions WHERE decision_id = %s", (decision_id,))
        return decode_decision(self.path, decision_id, rows[0][0]) if rows else None

    async def put_record(self, record: RecordRow) -> None:
        writer = self._open_writer()
        record = self.redactor.redact_obj(record)
        await writer.submit(PutRecord(record.id, record.kind, encode_record(record)))

    async def get_record(self, record_id: str) -> RecordRow | None:
        rows = await self._rows("SELECT json FROM records WHERE id = %s", (record_id,))
        return decode_record(self.path, record_id, rows[0][0]) if rows else None

    async def list_records(self, kind: str) -> list[RecordRow]:
        rows = await self._rows("SELECT id, json FROM records WHERE kind = %s ORDER BY id", (kind,))
        return [decode_record(self.path, row[0], row[1]) for row in rows]

    async def runs_started(self, workspace: str, day: date) -> int:
        rows = await self._rows("SELECT runs FROM usage_counters WHERE workspace = %s AND day = %s",
                                (workspace, format_day(day)))
        return int(rows[0][0]) if rows else 0


    # -- claims --------------------------------------------------------------------------------------

    async def claim(self, key: str, data: dict[str, Any], *, retry_failed: bool = False) -> bool:
        return await self._open_writer().submit(Claim(key, jsonlib.dumps(data), retry_failed))

    async def settle_claim(self, key: str, status: ClaimStatus, data: dict[str, Any]) -> None:
        await self._open_writer().submit(SettleClaim(key, status, jsonlib.dumps(data)))

    async def list_claims(self, prefix: str, limit: int = 50) -> list[ClaimRow]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._rows(
            "SELECT key, at, status, json FROM claims WHERE key LIKE %s ESCAPE '\\' "
            "ORDER BY at DESC, key DESC LIMIT %s",
            (escaped + "%", limit),
        )
        return [ClaimRow(key=r[0], at=r[1], status=r[2], data=jsonlib.loads(r[3])) for r in rows]


def _cap_day(daily_cap: int | None, day: date | None) -> date | None:
    """As `SQLiteStore`: with a cap, the day defaults to today; every start on a day counts."""
    if daily_cap is not None:
        if daily_cap < 0:
            raise UsageError(f"daily_cap must be >= 0, got {daily_cap}")
        return day if day is not None else now().date()
    return day


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
        await conn.close()


# -- migrations ----------------------------------------------------------------------------------------


async def schema_version(conninfo: str) -> tuple[int, int]:
    """(the database's schema version, the newest this flowrun knows); 0 for an empty database."""
    latest = len(load_migrations("postgres"))
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cursor = await conn.execute("SELECT to_regclass('flowrun_schema') IS NOT NULL")
        exists = await cursor.fetchone()
        if not exists or not exists[0]:
            return 0, latest
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM flowrun_schema")
        row = await cursor.fetchone()
        return (int(row[0]) if row else 0), latest


async def migrate_postgres(conninfo: str, label: str, schema: str | None) -> int:
    """Bring the database (schema) up to the newest migration in one transaction, one migrating
    process at a time; returns the schema version.

    Raises:
        SchemaTooNew: the database was migrated by a newer flowrun.
    """
    migrations = load_migrations("postgres")
    latest = migrations[-1].version if migrations else 0
    async with await psycopg.AsyncConnection.connect(conninfo) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if schema is not None:
            await conn.execute(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_sql.Identifier(schema)))
        await conn.execute("CREATE TABLE IF NOT EXISTS flowrun_schema (version INTEGER PRIMARY KEY, "
                           "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM flowrun_schema")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > latest:
            raise SchemaTooNew(
                f"the database {label} has schema version {current}, newer than this flowrun knows ({latest}); "
                "upgrade flowrun to open it", path=label, schema_version=current, supported=latest,
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await conn.execute(statement.encode())  # bytes: no placeholders in DDL
            await conn.execute("INSERT INTO flowrun_schema (version, name) VALUES (%s, %s)",
                               (migration.version, migration.name))
            logger.info("applied migration %s to %s", migration.name, label)
            current = migration.version
    return current
