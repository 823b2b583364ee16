"""What the SQLite and PostgreSQL stores share: the write side and the reads that are one SQL.

Every write is encoded and redacted here, in the caller's coroutine, and handed to the store's
group writer as an operation (`ops.py`), which plans it inside a transaction: per-run gapless
seqs assigned there, compare-and-set on the run version, idempotent decision ids, events
published only after the commit. Reads that are the same SQL on both (`?` placeholders; the
PostgreSQL store translates them) live here too; what differs (opening, connections, reading a
run, notifications, leases) is in each store's module.
"""

from __future__ import annotations

import enum
import json as jsonlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import date, datetime
from typing import Any

from ..flows.chat import Chat
from ..flows.enums import RunStatus
from ..flows.errors import NotFound, UsageError
from ..flows.events import ChatEventData, Event, EventData, LogOnly
from ..flows.redact import Redactor
from ..flows.run import Run, now
from .base import ClaimRow, ClaimStatus, DecisionRow, RecordChanges, RecordRow, RunFilter
from .bus import EventBus
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
from .errors import StorageCorrupt, StoreClosed
from .ops import (
    AppendTranscript,
    Claim,
    CommitPair,
    CommitRun,
    CreateRun,
    PutRecord,
    SettleClaim,
    decision_row,
)
from .subscription import Subscription
from .transaction import StepCache
from .writer import GroupWriter, WriterStats

logger = logging.getLogger("flowrun.storage")

RunRow = tuple[str, int, int, str, str, Sequence[tuple[int, str]]]
"""`(id, version, last_seq, json, flow, [(step index, step json), ...])`: a run as stored."""


class StoreState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def gapless(label: str, run_id: str, after_seq: int, seqs: Sequence[int]) -> None:
    """Raises StorageCorrupt naming the first missing seq if `seqs` is not `after_seq + 1, ...`."""
    for expected, seq in enumerate(seqs, start=after_seq + 1):
        if seq != expected:
            raise StorageCorrupt(
                f"the event log of run {run_id} in {label} has a gap: seq {expected} is missing "
                f"(next stored is {seq})", path=label, table="events", key=f"run {run_id}",
            )


def check_lease(seconds: float) -> None:
    if not seconds > 0:
        raise UsageError(f"a lease must last more than 0 seconds, got {seconds}")


def cap_day(daily_cap: int | None, day: date | None) -> date | None:
    """With a cap, the day defaults to today (UTC); every start on a day counts, capped or not."""
    if daily_cap is not None:
        if daily_cap < 0:
            raise UsageError(f"daily_cap must be >= 0, got {daily_cap}")
        return day if day is not None else now().date()
    return day


class StoreCore:
    """The shared half of `SQLiteStore` and `PostgresStore`. A store sets the attributes in its
    `__init__` (`_init_core`) and implements `_query` (one statement, `?` placeholders),
    `_load_runs` and `events_json`; it may narrow `_open_writer` (SQLite's read-only mode)."""

    path: str
    redactor: Redactor
    state: StoreState
    _bus: EventBus
    _writer: GroupWriter | None
    _stack: AsyncExitStack | None
    NO_LIMIT: int | None = -1  # what `LIMIT ?` takes for "all" in the store's dialect

    def _init_core(self, label: str, *, poll_interval: float, redactor: Redactor | None, mailbox_capacity: int) -> None:
        self.path = label
        self.redactor = redactor if redactor is not None else Redactor()  # on every write
        self.state = StoreState.NEW
        self._poll_interval = poll_interval
        self._bus = EventBus(mailbox_capacity)
        self._step_cache = StepCache()
        self._step_memo = StepMemo()
        self._writer = None
        self._stack = None

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def stats(self) -> WriterStats:
        """Group-commit counters of the writer (zeros before the store is opened)."""
        return self._writer.stats if self._writer is not None else WriterStats()

    async def __aexit__(self, *exc: object) -> None:
        """Queued writes finish first (the writer drains its queue), then subscriptions end, then
        the connections close."""
        stack = self._stack
        if self.state is not StoreState.OPEN or stack is None:
            return
        self.state = StoreState.CLOSED
        self._stack = None
        await stack.aclose()
        logger.debug("closed %s", self.path)

    def _check_open(self) -> None:
        if self.state is not StoreState.OPEN:
            raise StoreClosed(f"the store at {self.path} is {self.state.value}, not open (use `async with`)")

    def _open_writer(self) -> GroupWriter:
        self._check_open()
        assert self._writer is not None
        return self._writer

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def _load_runs(self, where: str, params: Sequence[Any]) -> list[Run]:
        raise NotImplementedError

    def _decode_runs(self, rows: Sequence[RunRow]) -> list[Run]:
        runs: list[Run] = []
        for run_id, version, last_seq, json, flow, steps in rows:
            run = decode_run(self.path, run_id, version, last_seq, json, flow, steps)
            jsons = tuple(step_json for _, step_json in steps)
            self._step_cache.put(run_id, version, jsons)
            self._step_memo.read(run, jsons)
            runs.append(run)
        return runs

    # -- runs --------------------------------------------------------------------------------------

    async def create_run(self, run: Run, events: Sequence[EventData], *, daily_cap: int | None = None,
                         day: date | None = None) -> tuple[Run, list[Event]]:
        """Insert a new run (stored as version 1) with its first events (seq 1, 2, ...).

        With `day` (UTC), the run counts against `run.workspace`'s runs started that day, in the
        same transaction; with `daily_cap` too (`day` then defaults to today), it is refused once
        that many have started. Without either nothing is counted.

        Raises:
            StartRefused: `daily_cap_reached`; nothing is written.
            UsageError: `already_exists`, or the run or events cannot be stored.
        """
        writer = self._open_writer()
        return await writer.submit(self._create_op(run, events, daily_cap, cap_day(daily_cap, day)))

    def _create_op(self, run: Run, events: Sequence[EventData], daily_cap: int | None, day: date | None) -> CreateRun:
        run = redact_run(run, self.redactor, new=True)
        return CreateRun(run, encode_run(run, new=True), encode_events(run.id, events, self.redactor), daily_cap, day)

    async def commit(self, run: Run, events: Sequence[EventData], *, expected_version: int,
                     decision_id: str | None = None, lease_owner: str | None = None) -> tuple[Run, list[Event]]:
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

    async def commit_pair(self, first: tuple[Run, Sequence[EventData], int], second: tuple[Run, Sequence[EventData]],
                          *, daily_cap: int | None = None, day: date | None = None) -> tuple[Run, Run]:
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
        return await writer.submit(CommitPair(
            self._commit_op(run, events, expected_version, None),
            self._create_op(clone, clone_events, daily_cap, cap_day(daily_cap, day)),
        ))

    def _commit_op(self, run: Run, events: Sequence[EventData], expected_version: int,
                   decision_id: str | None) -> CommitRun:
        if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 1:
            raise UsageError(f"expected_version must be a stored version (>= 1), got {expected_version!r}")
        run = redact_run(run, self.redactor, memo=self._step_memo)
        encoded = encode_run(run, memo=self._step_memo)
        encoded_events = encode_events(run.id, events, self.redactor)
        decision = decision_row(run, encoded_events, decision_id) if decision_id is not None else None
        return CommitRun(run, encoded, encoded_events, expected_version, decision)

    async def append_transcript(self, run_id: str, entries: Sequence[LogOnly], *,
                                lease_owner: str | None = None) -> list[Event]:
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
        return await writer.submit(AppendTranscript(run_id, encode_entries(run_id, entries, self.redactor), lease_owner))

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
        for column, value in (("flow_id", filter.flow), ("workspace", filter.workspace),
                              ("started_by", filter.started_by)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if filter.before is not None:
            clauses.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?)")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._load_runs(f"{where} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, filter.limit))

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        """Every run in one of `statuses`, oldest first (recovery handles them in start order)."""
        if not statuses:
            return []
        values = tuple(RunStatus(status).value for status in statuses)
        return await self._load_runs(f"WHERE status IN ({','.join('?' * len(values))}) ORDER BY created_at, id", values)

    # -- the event log -------------------------------------------------------------------------------

    async def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
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

    async def _fetch_events(self, run_id: str, after_seq: int, limit: int, must_exist: bool) -> list[Event]:
        rows = await self._query("SELECT seq, at, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                                 (run_id, after_seq, self.NO_LIMIT if limit < 0 else limit))
        if not rows and must_exist and not await self._query(
            "SELECT 1 FROM runs WHERE id = ? UNION ALL SELECT 1 FROM chats WHERE id = ?", (run_id, run_id)
        ):
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        gapless(self.path, run_id, after_seq, [row[0] for row in rows])
        return [decode_event(self.path, run_id, seq, at, data) for seq, at, data in rows]

    async def _events_json(self, run_id: str, after_seq: int, limit: int, sql: str) -> list[tuple[int, str]]:
        """`events_json` with the dialect's statement (`sql`: seq and the event's JSON text)."""
        rows = await self._query(sql, (run_id, after_seq, limit))
        if not rows and not await self._query("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        gapless(self.path, run_id, after_seq, [row[0] for row in rows])
        return [(int(seq), str(text)) for seq, text in rows]

    def subscribe(self, run_id: str, after_seq: int = 0) -> Subscription:
        """Stored events after `after_seq`, then live ones, with no gap and no duplicate, until
        the caller stops (use `async with`, or `aclose()`) or the store closes."""
        self._open_writer()
        if after_seq < 0:
            raise UsageError(f"after_seq must be >= 0, got {after_seq}")
        return Subscription(self._bus, self._fetch_events, run_id, after_seq, poll_interval=self._poll_interval)

    # -- chats (their events are in the same log, under the chat id) ---------------------------------

    async def create_chat(self, chat: Chat, events: Sequence[ChatEventData] = ()) -> tuple[Chat, list[Event]]:
        """Insert a new chat with its first events (seq 1, 2, ...).

        Raises:
            UsageError: `already_exists`, or the chat cannot be stored.
        """
        writer = self._open_writer()
        chat = self.redactor.redact_obj(chat)
        return await writer.submit(CreateChat(chat, encode_chat(chat), encode_chat_events(chat.id, events, self.redactor)))

    async def append_chat(self, chat_id: str, events: Sequence[ChatEventData], *,
                          chat: Chat | None = None) -> list[Event]:
        """Append to a chat's log (gapless seqs, published after commit); with `chat`, rewrite its
        row in the same transaction. A person's message is committed durably.

        Raises:
            NotFound: no such chat.
        """
        writer = self._open_writer()
        if chat is not None and chat.id != chat_id:
            raise UsageError(f"append_chat: the row is chat {chat.id}, not {chat_id}")
        chat = self.redactor.redact_obj(chat) if chat is not None else None
        encoded = encode_chat(chat) if chat is not None else None
        return await writer.submit(AppendChat(chat_id, encode_chat_events(chat_id, events, self.redactor), encoded))

    async def get_chat(self, chat_id: str) -> Chat:
        """Raises NotFound naming the id."""
        chats = await self._load_chats("WHERE id = ?", (chat_id,))
        if not chats:
            raise NotFound(f"chat {chat_id} not found", chat_id=chat_id)
        return chats[0]

    async def list_chats(self, *, workspace: str | None = None, owner: str | None = None,
                         limit: int = 50) -> list[Chat]:
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
        chats = []
        for chat_id, last_seq, updated_at, json in await self._query(
                f"SELECT id, last_seq, updated_at, json FROM chats {where}", params):
            chat = decode_chat(self.path, chat_id, last_seq, json)
            if updated_at:
                chat = chat.model_copy(update={"updated_at": datetime.fromisoformat(updated_at)})
            chats.append(chat)
        return chats

    # -- decisions, records, usage, claims -----------------------------------------------------------

    async def get_decision(self, decision_id: str) -> DecisionRow | None:
        rows = await self._query("SELECT json FROM decisions WHERE decision_id = ?", (decision_id,))
        return decode_decision(self.path, decision_id, rows[0][0]) if rows else None

    async def put_record(self, record: RecordRow) -> None:
        writer = self._open_writer()
        record = self.redactor.redact_obj(record)
        await writer.submit(PutRecord(record.id, record.kind, encode_record(record)))

    async def get_record(self, record_id: str) -> RecordRow | None:
        rows = await self._query("SELECT json FROM records WHERE id = ?", (record_id,))
        return decode_record(self.path, record_id, rows[0][0]) if rows else None

    async def list_records(self, kind: str) -> list[RecordRow]:
        """Records of one kind (plans, initiatives, health events), in id order."""
        rows = await self._query("SELECT id, json FROM records WHERE kind = ? ORDER BY id", (kind,))
        return [decode_record(self.path, row[0], row[1]) for row in rows]

    async def records_changed(self, kind: str, after: int = 0, limit: int | None = None) -> RecordChanges:
        """See `Store.records_changed`: one range read on the `(kind, changed)` index."""
        rows = await self._query(
            "SELECT id, json, changed FROM records WHERE kind = ? AND changed > ? ORDER BY changed LIMIT ?",
            (kind, after, self.NO_LIMIT if limit is None else limit))
        return RecordChanges(records=[decode_record(self.path, row[0], row[1]) for row in rows],
                             cursor=int(rows[-1][2]) if rows else after)

    async def runs_started(self, workspace: str, day: date) -> int:
        """Runs counted against `workspace`'s daily cap on `day` (UTC)."""
        rows = await self._query("SELECT runs FROM usage_counters WHERE workspace = ? AND day = ?",
                                 (workspace, format_day(day)))
        return int(rows[0][0]) if rows else 0

    async def claim_runs(self, owner: str, *, lease_s: float, limit: int = 1, run_ids: Sequence[str] | None = None,
                         dead_owners: Sequence[str] = ()) -> list[str]:
        """See `Store.claim_runs`; the store's lease half does the claiming (`_claim_runs`)."""
        check_lease(lease_s)
        if limit < 1 or (run_ids is not None and not run_ids):
            return []
        return await self._claim_runs(owner, lease_s, limit, run_ids, dead_owners)

    async def _claim_runs(self, owner: str, lease_s: float, limit: int, run_ids: Sequence[str] | None,
                          dead_owners: Sequence[str]) -> list[str]:
        raise NotImplementedError

    async def host_chat(self, chat_id: str, owner: str, *, lease_s: float, dead_owners: Sequence[str] = ()) -> bool:
        """See `Store.host_chat`; the store's lease half takes the lease (`_host_chat`)."""
        check_lease(lease_s)
        if await self._host_chat(chat_id, owner, lease_s, dead_owners):
            return True
        await self.get_chat(chat_id)  # NotFound for a chat that does not exist
        return False

    async def renew_chat_hosts(self, owner: str, chat_ids: Sequence[str], *, lease_s: float) -> list[str]:
        check_lease(lease_s)
        return await self._renew_chat_hosts(owner, chat_ids, lease_s) if chat_ids else []

    async def _host_chat(self, chat_id: str, owner: str, lease_s: float, dead_owners: Sequence[str]) -> bool:
        raise NotImplementedError

    async def _renew_chat_hosts(self, owner: str, chat_ids: Sequence[str], lease_s: float) -> list[str]:
        raise NotImplementedError

    async def claim_and_read_runs(self, owner: str, *, lease_s: float, limit: int = 1,
                                  dead_owners: Sequence[str] = ()) -> list[Run]:
        """See `Store.claim_and_read_runs`: here a claim, then a read of each run claimed."""
        runs: list[Run] = []
        for run_id in await self.claim_runs(owner, lease_s=lease_s, limit=limit, dead_owners=dead_owners):
            runs.append(await self.get_run(run_id))
        return runs

    async def claim(self, key: str, data: dict[str, Any], *, retry_failed: bool = False) -> bool:
        return await self._open_writer().submit(Claim(key, jsonlib.dumps(data), retry_failed))

    async def settle_claim(self, key: str, status: ClaimStatus, data: dict[str, Any]) -> None:
        await self._open_writer().submit(SettleClaim(key, status, jsonlib.dumps(data)))

    async def list_claims(self, prefix: str, limit: int = 50) -> list[ClaimRow]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._query(
            "SELECT key, at, status, json FROM claims WHERE key LIKE ? ESCAPE '\\' ORDER BY at DESC, key DESC LIMIT ?",
            (escaped + "%", limit),
        )
        return [ClaimRow(key=r[0], at=r[1], status=r[2], data=jsonlib.loads(r[3])) for r in rows]
