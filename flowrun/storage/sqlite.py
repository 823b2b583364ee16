"""`SQLiteStore`: the default `Store`, on one SQLite file in WAL mode.

One writer connection, owned by one writer task (see `writer.py`: group commit, `BEGIN
IMMEDIATE`, seqs assigned inside the transaction), and a small pool of read-only connections.
Several processes may open the same file: the write lock serialises their transactions and
subscriptions poll for events the other processes wrote.

    async with SQLiteStore("flowrun.db") as store:
        run, events = await store.create_run(run, [RunCreated(...)])
        async with store.subscribe(run.id) as stream:
            async for event in stream: ...
"""

from __future__ import annotations

import contextlib
import enum
import json as jsonlib
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date, datetime
from typing import Any

import aiosqlite
import anyio

from ..flows.chat import Chat
from ..flows.enums import RunStatus
from ..flows.errors import NotFound, UsageError
from ..flows.events import ChatEventData, Event, EventData, LogOnly
from ..flows.redact import Redactor
from ..flows.run import Run, now
from .base import ClaimRow, ClaimStatus, DecisionRow, RecordRow, RunFilter
from .bus import DEFAULT_CAPACITY, EventBus
from .chats import AppendChat, CreateChat, decode_chat, encode_chat, encode_chat_events
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
    redact_run,
)
from .errors import StorageCorrupt, StorageError, StoreClosed
from .full import StoreFull, full_error, is_disk_full
from .migrate import migrate
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
from .private import private_database
from .sqlite_leases import SQLiteLeases
from .subscription import Subscription
from .writer import GroupWriter, WriterStats

logger = logging.getLogger("flowrun.storage")

_CHUNK = 500


class StoreState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SQLiteStore(SQLiteLeases):
    """The SQLite `Store`. An async context manager: entering opens and migrates the file and
    starts the writer task; leaving finishes queued writes, ends subscriptions and closes.

    Args:
        path: the database file (created if missing). `:memory:` is refused: the writer and
            the readers are separate connections and must share a file.
        poll_interval: how long a subscription waits for a live event before it looks in the
            database for events another process wrote.
        readers: read-only connections in the pool.
        mailbox_capacity: live events a subscriber may have pending before it falls back to
            reading the database.
        busy_timeout: seconds a transaction waits for another process's write lock.
        redactor: replaces secrets in everything written (runs, events, transcript, records)
            before it is encoded; runs returned by writes are the redacted ones. Without it, the
            common key formats are still redacted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = 0.2,
        readers: int = 2,
        mailbox_capacity: int = DEFAULT_CAPACITY,
        busy_timeout: float = 30.0,
        max_batch_rows: int = 20000,
        redactor: Redactor | None = None,
    ) -> None:
        label = os.fspath(path)
        if not label or label == ":memory:" or label.startswith("file:"):
            raise UsageError(f"SQLiteStore needs a file path, got {label!r}")
        if poll_interval <= 0 or readers < 1 or busy_timeout < 0 or max_batch_rows < 1:
            raise UsageError(
                "SQLiteStore: poll_interval must be > 0, readers >= 1, busy_timeout >= 0, max_batch_rows >= 1"
            )
        self.path = label
        self._poll_interval = poll_interval
        self._reader_count = readers
        self._busy_ms = int(busy_timeout * 1000)
        self._max_batch_rows = max_batch_rows
        self.redactor = redactor if redactor is not None else Redactor()
        self._bus = EventBus(mailbox_capacity)
        self._step_cache = StepCache()
        self._step_memo = StepMemo()
        self._stack: AsyncExitStack | None = None
        self._writer: GroupWriter | None = None
        self._readers: _ReaderPool | None = None
        self._read_only: StoreFull | None = None  # the disk was full when it opened: reads only
        self.state = StoreState.NEW

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def stats(self) -> WriterStats:
        """Group-commit counters of the writer (zeros before the store is opened)."""
        return self._writer.stats if self._writer is not None else WriterStats()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> SQLiteStore:
        if self.state is not StoreState.NEW:
            raise UsageError(
                f"the store at {self.path} is {self.state.value}; a SQLiteStore can be entered once"
            )
        stack = AsyncExitStack()
        try:
            await anyio.to_thread.run_sync(private_database, self.path)
            conn = await stack.enter_async_context(_connect(self.path, self._busy_ms, writer=True))
            await migrate(conn, self.path)
            readers = [
                await stack.enter_async_context(_connect(self.path, self._busy_ms, writer=False))
                for _ in range(self._reader_count)
            ]
            self._readers = pool = _ReaderPool(readers, self.path)
            stack.push_async_callback(pool.close)
            stack.callback(self._bus.close)
            raw = await anyio.to_thread.run_sync(_open_writer_connection, self.path, self._busy_ms)
            stack.callback(
                raw.close
            )  # registered before the task group: closed after the writer ends
            task_group = await stack.enter_async_context(anyio.create_task_group())
            self._writer = writer = GroupWriter(
                raw, self.path, self._bus, self._step_cache, max_batch_rows=self._max_batch_rows
            )
            stack.callback(writer.close)
            await task_group.start(writer.run)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            error = _translate(exc, self.path, "open") if isinstance(exc, sqlite3.Error) else exc
            if not isinstance(error, StoreFull):
                self.state = StoreState.CLOSED
                if error is exc:
                    raise
                raise error from exc
            stack = await self._open_read_only(error)
        self._stack = stack
        self.state = StoreState.OPEN
        logger.debug("opened %s", self.path)
        return self

    async def _open_read_only(self, full: StoreFull) -> AsyncExitStack:
        """The disk is full (SQLite cannot even make its WAL index): open for reading only, so
        `flowrun runs` and `show` keep working. The file is read as it is on disk (`immutable`:
        no locks, no WAL index); every write is refused with the "disk full" error."""
        logger.warning("%s; reading only", full.message)
        stack = AsyncExitStack()
        uri = f"file:{urllib.parse.quote(self.path)}?mode=ro&immutable=1"
        try:
            readers = []
            for _ in range(self._reader_count):
                conn = await stack.enter_async_context(_connect(uri, self._busy_ms, writer=False, uri=True))
                readers.append(conn)
            self._readers = pool = _ReaderPool(readers, self.path)
            stack.push_async_callback(pool.close)
            stack.callback(self._bus.close)
        except BaseException:
            self.state = StoreState.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise full from None
        self._read_only = full
        return stack

    async def __aexit__(self, *exc: object) -> None:
        if self.state is not StoreState.OPEN or self._stack is None:
            return
        self.state = StoreState.CLOSED
        stack, self._stack = self._stack, None
        # queued writes finish first (the writer drains its queue), then subscriptions end,
        # then the connections close
        await stack.aclose()
        logger.debug("closed %s", self.path)

    def _open_writer(self) -> GroupWriter:
        self._check_open()
        if self._read_only is not None:
            raise StoreFull(self._read_only.message, path=self.path)
        assert self._writer is not None
        return self._writer

    def _check_open(self) -> None:
        if self.state is not StoreState.OPEN:
            raise StoreClosed(
                f"the store at {self.path} is {self.state.value}, not open (use `async with`)"
            )

    @asynccontextmanager
    async def _reading(self, snapshot: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A pooled read-only connection; with `snapshot`, all its reads see one committed state."""
        self._check_open()
        assert self._readers is not None
        async with self._readers.connection() as conn:
            try:
                if not snapshot:
                    yield conn
                    return
                try:
                    await conn.execute("BEGIN")
                    yield conn
                finally:
                    # shielded, so a cancelled read never hands on a connection mid-transaction;
                    # if BEGIN itself did not run there is nothing to roll back
                    with (
                        anyio.CancelScope(shield=True),
                        contextlib.suppress(sqlite3.OperationalError),
                    ):
                        await conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, "read") from exc

    # -- runs --------------------------------------------------------------------------------------

    async def create_run(
        self,
        run: Run,
        events: Sequence[EventData],
        *,
        daily_cap: int | None = None,
        day: date | None = None,
    ) -> tuple[Run, list[Event]]:
        """Insert a new run (stored as version 1) with its first events (seq 1, 2, ...).

        With `day` (UTC), the run counts against `run.workspace`'s runs started that day, in the
        same transaction; with `daily_cap` too (`day` then defaults to today), it is refused once
        that many have started. Without either nothing is counted.

        Raises:
            StartRefused: `daily_cap_reached`; nothing is written.
            UsageError: `already_exists`, or the run or events cannot be stored.
        """
        writer = self._open_writer()
        day = self._cap_day(daily_cap, day)
        run = redact_run(run, self.redactor, new=True)
        op = CreateRun(
            run, encode_run(run, new=True), encode_events(run.id, events, self.redactor), daily_cap, day
        )
        return await writer.submit(op)

    @staticmethod
    def _cap_day(daily_cap: int | None, day: date | None) -> date | None:
        if daily_cap is not None:
            if daily_cap < 0:
                raise UsageError(f"daily_cap must be >= 0, got {daily_cap}")
            return day if day is not None else now().date()
        return day

    async def commit(
        self,
        run: Run,
        events: Sequence[EventData],
        *,
        expected_version: int,
        decision_id: str | None = None,
        lease_owner: str | None = None,
    ) -> tuple[Run, list[Event]]:
        """Write the run (its changed steps only) and append its events, compare-and-set on the
        version; the stored version becomes `expected_version + 1`.

        With `decision_id`, the decision on the step named by the `DecisionRecorded` event among
        `events` is stored under that id in the same transaction.

        Raises:
            ConcurrentUpdate: the stored version is not `expected_version`.
            NotFound: no such run.
            DecisionConflict: `already_decided`, the decision_id was recorded before (naming it).
            UsageError: the run or events cannot be stored, or there is no decision to record.
            LeaseLost: `lease_owner` (a driver's fence) no longer holds the run's lease.
        """
        writer = self._open_writer()
        op = self._commit_op(run, events, expected_version, decision_id)
        op.fence = lease_owner
        return await writer.submit(op)

    async def commit_pair(
        self,
        first: tuple[Run, Sequence[EventData], int],
        second: tuple[Run, Sequence[EventData]],
        *,
        daily_cap: int | None = None,
        day: date | None = None,
    ) -> tuple[Run, Run]:
        """Update `first` (CAS on its expected version) and create `second`, in one transaction;
        either both are written or neither. `daily_cap` and `day` count (and cap) `second` as
        `create_run` does.

        Raises:
            StartRefused: `daily_cap_reached`; nothing is written.
        """
        writer = self._open_writer()
        run, events, expected_version = first
        clone, clone_events = second
        if run.id == clone.id:
            raise UsageError(f"commit_pair: both runs have the id {run.id}")
        day = self._cap_day(daily_cap, day)
        clone = redact_run(clone, self.redactor, new=True)
        op = CommitPair(
            self._commit_op(run, events, expected_version, None),
            CreateRun(
                clone, encode_run(clone, new=True), encode_events(clone.id, clone_events, self.redactor),
                daily_cap, day,
            ),
        )
        return await writer.submit(op)

    def _commit_op(
        self, run: Run, events: Sequence[EventData], expected_version: int, decision_id: str | None
    ) -> CommitRun:
        if (
            isinstance(expected_version, bool)
            or not isinstance(expected_version, int)
            or expected_version < 1
        ):
            raise UsageError(
                f"expected_version must be a stored version (>= 1), got {expected_version!r}"
            )
        run = redact_run(run, self.redactor)
        encoded = encode_run(run, memo=self._step_memo)
        encoded_events = encode_events(run.id, events, self.redactor)
        decision = (
            decision_row(run, encoded_events, decision_id) if decision_id is not None else None
        )
        return CommitRun(run, encoded, encoded_events, expected_version, decision)

    async def append_transcript(
        self, run_id: str, entries: Sequence[LogOnly], *, lease_owner: str | None = None
    ) -> list[Event]:
        """Append transcript entries; returns their events once committed and published.

        Concurrent appends (any runs) share one transaction. Touches only the events table and
        the run's `last_seq`. An empty `entries` returns `[]` without a write.

        Raises:
            NotFound: no such run.
            LeaseLost: `lease_owner` (a driver's fence) no longer holds the run's lease.
        """
        writer = self._open_writer()
        if not entries:
            return []
        return await writer.submit(
            AppendTranscript(run_id, encode_entries(run_id, entries, self.redactor), lease_owner)
        )

    async def get_run(self, run_id: str) -> Run:
        """Raises NotFound naming the id."""
        runs = await self._load_runs("WHERE id = ?", (run_id,))
        if not runs:
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        return runs[0]

    async def list_runs(self, filter: RunFilter | None = None) -> list[Run]:
        """Newest first, at most `filter.limit`."""
        filter = filter if filter is not None else RunFilter()
        if filter.limit < 1:
            raise UsageError(f"RunFilter.limit must be >= 1, got {filter.limit}")
        clauses: list[str] = []
        params: list[Any] = []
        if filter.status is not None:
            if not filter.status:
                return []
            clauses.append(f"status IN ({','.join('?' * len(filter.status))})")
            params.extend(RunStatus(status).value for status in filter.status)
        for column, value in (
            ("flow_id", filter.flow),
            ("workspace", filter.workspace),
            ("started_by", filter.started_by),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if filter.before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?)")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._load_runs(
            f"{where} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, filter.limit)
        )

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        """Every run in one of `statuses`, oldest first (recovery handles them in start order)."""
        if not statuses:
            return []
        marks = ",".join("?" * len(statuses))
        values = tuple(RunStatus(status).value for status in statuses)
        return await self._load_runs(f"WHERE status IN ({marks}) ORDER BY created_at, id", values)

    async def _load_runs(self, where: str, params: Sequence[Any]) -> list[Run]:
        async with self._reading(snapshot=True) as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT id, version, last_seq, json, flow FROM runs {where}", params
                )
            )
            steps: dict[str, list[tuple[int, str]]] = {row[0]: [] for row in rows}
            ids = list(steps)
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                step_rows = await conn.execute_fetchall(
                    f"SELECT run_id, idx, json FROM steps WHERE run_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY run_id, idx",
                    chunk,
                )
                for run_id, index, json in step_rows:
                    steps[run_id].append((index, json))
        runs: list[Run] = []
        for run_id, version, last_seq, json, flow in rows:
            run = decode_run(self.path, run_id, version, last_seq, json, flow, steps[run_id])
            self._step_cache.put(run_id, version, tuple(json for _, json in steps[run_id]))
            runs.append(run)
        return runs

    # -- the event log -------------------------------------------------------------------------------

    async def events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Event]:
        """Stored events with `seq > after_seq`, in order, at most `limit`.

        Raises:
            NotFound: no such run.
            StorageCorrupt: the stored log has a gap or an unreadable event.
        """
        if after_seq < 0:
            raise UsageError(f"after_seq must be >= 0, got {after_seq}")
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be >= 1 (or None for all), got {limit}")
        return await self._fetch_events(run_id, after_seq, -1 if limit is None else limit, True)

    async def events_json(self, run_id: str, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, event as JSON)` for stored events after `after_seq`, at most `limit`, without
        decoding them: the JSON is what `Event.model_dump_json()` gives (built by SQLite from
        the stored columns). For faces that only forward events (the websocket's replay).

        Raises:
            NotFound: no such run (only checked when there is no event to return).
            StorageCorrupt: the stored log has a gap.
        """
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT seq, '{\"run_id\":' || json_quote(run_id) || ',\"seq\":' || seq || "
                    "',\"at\":\"' || replace(at, '.000000Z', 'Z') || '\",\"data\":' || data || '}' "
                    "FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (run_id, after_seq, limit),
                )
            )
            if not rows and not list(await conn.execute_fetchall("SELECT 1 FROM runs WHERE id = ?", (run_id,))):
                raise NotFound(f"run {run_id} not found", run_id=run_id)
        for expected, (seq, _) in enumerate(rows, start=after_seq + 1):
            if seq != expected:
                raise StorageCorrupt(
                    f"the event log of run {run_id} in {self.path} has a gap: seq {expected} is missing "
                    f"(next stored is {seq})",
                    path=self.path, table="events", key=f"run {run_id}",
                )
        return [(seq, text) for seq, text in rows]

    async def _fetch_events(
        self, run_id: str, after_seq: int, limit: int, must_exist: bool
    ) -> list[Event]:
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT seq, at, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (run_id, after_seq, limit),
                )
            )
            if not rows and must_exist:
                found = list(
                    await conn.execute_fetchall(
                        "SELECT 1 FROM runs WHERE id = ? UNION ALL SELECT 1 FROM chats WHERE id = ?",
                        (run_id, run_id),
                    )
                )
                if not found:
                    raise NotFound(f"run {run_id} not found", run_id=run_id)
        events: list[Event] = []
        expected = after_seq + 1
        for seq, at, data in rows:
            if seq != expected:
                raise StorageCorrupt(
                    f"the event log of run {run_id} in {self.path} has a gap: seq {expected} is missing "
                    f"(next stored is {seq})",
                    path=self.path,
                    table="events",
                    key=f"run {run_id}",
                )
            events.append(decode_event(self.path, run_id, seq, at, data))
            expected += 1
        return events

    # -- chats (their events are in the same log, under the chat id) ---------------------------------

    async def create_chat(self, chat: Chat, events: Sequence[ChatEventData] = ()) -> tuple[Chat, list[Event]]:
        """Insert a new chat with its first events (seq 1, 2, ...).

        Raises:
            UsageError: `already_exists`, or the chat cannot be stored.
        """
        writer = self._open_writer()
        chat = self.redactor.redact_obj(chat)
        return await writer.submit(
            CreateChat(chat, encode_chat(chat), encode_chat_events(chat.id, events, self.redactor))
        )

    async def append_chat(
        self, chat_id: str, events: Sequence[ChatEventData], *, chat: Chat | None = None
    ) -> list[Event]:
        """Append to a chat's log (gapless seqs, published after commit); with `chat`, rewrite its
        row in the same transaction. A person's message is committed durably (synchronous=FULL).

        Raises:
            NotFound: no such chat.
        """
        writer = self._open_writer()
        if chat is not None and chat.id != chat_id:
            raise UsageError(f"append_chat: the row is chat {chat.id}, not {chat_id}")
        chat = self.redactor.redact_obj(chat) if chat is not None else None
        encoded = encode_chat(chat) if chat is not None else None
        return await writer.submit(
            AppendChat(chat_id, encode_chat_events(chat_id, events, self.redactor), encoded)
        )

    async def get_chat(self, chat_id: str) -> Chat:
        """Raises NotFound naming the id."""
        chats = await self._load_chats("WHERE id = ?", (chat_id,))
        if not chats:
            raise NotFound(f"chat {chat_id} not found", chat_id=chat_id)
        return chats[0]

    async def list_chats(
        self, *, workspace: str | None = None, owner: str | None = None, limit: int = 50
    ) -> list[Chat]:
        """Most recently active first."""
        if limit < 1:
            raise UsageError(f"limit must be >= 1, got {limit}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("workspace", workspace), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._load_chats(f"{where} ORDER BY updated_at DESC, id DESC LIMIT ?", (*params, limit))

    async def _load_chats(self, where: str, params: Sequence[Any]) -> list[Chat]:
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(
                f"SELECT id, last_seq, updated_at, json FROM chats {where}", params))
        chats = []
        for chat_id, last_seq, updated_at, json in rows:
            chat = decode_chat(self.path, chat_id, last_seq, json)
            if updated_at:
                chat = chat.model_copy(update={"updated_at": datetime.fromisoformat(updated_at)})
            chats.append(chat)
        return chats

    def subscribe(self, run_id: str, after_seq: int = 0) -> Subscription:
        """Stored events after `after_seq`, then live ones, with no gap and no duplicate, until
        the caller stops (use `async with`, or `aclose()`) or the store closes.

        Events written by other processes arrive within about `poll_interval`."""
        self._open_writer()
        if after_seq < 0:
            raise UsageError(f"after_seq must be >= 0, got {after_seq}")
        return Subscription(
            self._bus, self._fetch_events, run_id, after_seq, poll_interval=self._poll_interval
        )

    # -- decisions, records, usage -------------------------------------------------------------------

    async def get_decision(self, decision_id: str) -> DecisionRow | None:
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT json FROM decisions WHERE decision_id = ?", (decision_id,)
                )
            )
        return decode_decision(self.path, decision_id, rows[0][0]) if rows else None

    async def put_record(self, record: RecordRow) -> None:
        writer = self._open_writer()
        record = self.redactor.redact_obj(record)
        await writer.submit(PutRecord(record.id, record.kind, encode_record(record)))

    async def get_record(self, record_id: str) -> RecordRow | None:
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall("SELECT json FROM records WHERE id = ?", (record_id,))
            )
        return decode_record(self.path, record_id, rows[0][0]) if rows else None

    async def list_records(self, kind: str) -> list[RecordRow]:
        """Records of one kind (plans, initiatives, health events), in id order."""
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT id, json FROM records WHERE kind = ? ORDER BY id", (kind,)
                )
            )
        return [decode_record(self.path, row[0], row[1]) for row in rows]

    async def runs_started(self, workspace: str, day: date) -> int:
        """Runs counted against `workspace`'s daily cap on `day` (UTC)."""
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT runs FROM usage_counters WHERE workspace = ? AND day = ?",
                    (workspace, format_day(day)),
                )
            )
        return int(rows[0][0]) if rows else 0


    # -- claims --------------------------------------------------------------------------------------

    async def claim(self, key: str, data: dict[str, Any], *, retry_failed: bool = False) -> bool:
        return await self._open_writer().submit(Claim(key, jsonlib.dumps(data), retry_failed))

    async def settle_claim(self, key: str, status: ClaimStatus, data: dict[str, Any]) -> None:
        await self._open_writer().submit(SettleClaim(key, status, jsonlib.dumps(data)))

    async def list_claims(self, prefix: str, limit: int = 50) -> list[ClaimRow]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        async with self._reading() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT key, at, status, json FROM claims WHERE key LIKE ? ESCAPE '\\' "
                    "ORDER BY at DESC, key DESC LIMIT ?",
                    (escaped + "%", limit),
                )
            )
        return [ClaimRow(key=r[0], at=r[1], status=r[2], data=jsonlib.loads(r[3])) for r in rows]


# -- connections -------------------------------------------------------------------------------------


def _open_writer_connection(path: str, busy_ms: int) -> sqlite3.Connection:
    """The group writer's own connection: plain sqlite3, driven one transaction per thread hop
    (aiosqlite would cost a hop per statement). WAL mode was set by the migrating connection."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
    conn.execute("PRAGMA synchronous = NORMAL")  # FULL for decisions: see the writer
    return conn


@asynccontextmanager
async def _connect(path: str, busy_ms: int, *, writer: bool, uri: bool = False) -> AsyncIterator[aiosqlite.Connection]:
    conn = await aiosqlite.connect(path, isolation_level=None, uri=uri)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
        if writer:
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            if str(rows[0][0]).lower() != "wal":
                raise StorageError(
                    f"{path} cannot use WAL mode (journal_mode is {rows[0][0]})", path=path
                )
            await conn.execute("PRAGMA synchronous = NORMAL")  # FULL for decisions: see writer
        else:
            await conn.execute("PRAGMA query_only = ON")
        yield conn
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


class _ReaderPool:
    """Read-only connections, one per reader at a time (so a read transaction is its own)."""

    def __init__(self, conns: list[aiosqlite.Connection], label: str) -> None:
        self._free = list(conns)
        self._size = len(conns)
        self._limit = anyio.Semaphore(len(conns))
        self._label = label
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._limit:
            if self._closed:
                raise StoreClosed(f"the store at {self._label} is closed")
            conn = self._free.pop()
            try:
                yield conn
            finally:
                self._free.append(conn)

    async def close(self) -> None:
        """Refuse new reads and wait for the running ones to finish."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for _ in range(self._size):
                await self._limit.acquire()


def _translate(exc: sqlite3.Error, path: str, doing: str) -> Exception:
    if is_disk_full(exc, path):
        return full_error(path, exc, doing)
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return StorageCorrupt(
            f"{path} is not a readable flowrun database ({doing}): {exc}", path=path
        )
    return StorageError(f"cannot {doing} {path}: {exc}", path=path)
