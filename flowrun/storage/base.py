"""The `Store` protocol: runs, their event log, and the few other records the engine keeps.

Invariants every implementation keeps:
- `seq` is per run, gapless and increasing; assigned inside the writing transaction.
- The run row (and its step rows) and the events that describe the change are written in one
  transaction, and events are published to subscribers only after that transaction commits.
- `commit` is compare-and-set on `Run.version`: it writes only if the stored version equals
  `expected_version`, and stores `expected_version + 1`.
- `subscribe(run_id, after_seq)` yields every event with `seq > after_seq` exactly once and in
  order: first the stored ones, then live ones, with no gap and no duplicate across the switch.
- Transcript appends are group-committed: many appends waiting at once share one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from ..flows.chat import Chat
from ..flows.enums import RunStatus
from ..flows.events import ChatEventData, Event, EventData, LogOnly
from ..flows.run import Decision, Run, now


class RecordRow(BaseModel):
    """A plan or initiative a run can be launched from; its context is in the run's scope."""

    id: str
    kind: str  # "plan" | "initiative" | ...
    title: str = ""
    body: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class RecordChanges(BaseModel):
    """Records of one kind written after a cursor (`Store.records_changed`), in the order they
    were written, and the cursor to pass next time."""

    records: list[RecordRow]
    cursor: int = Field(description="the change number of the last write read (the `after` it was asked with if none)")


class DecisionRow(BaseModel):
    """A decision stored under the client's `decision_id`, so repeating it is idempotent."""

    decision_id: str
    run_id: str
    step: int
    decision: Decision
    at: Any = Field(default_factory=now)


class WorkerRow(BaseModel):
    """An engine process that is alive (its heartbeat keeps `expires`, unix seconds, ahead)."""

    id: str  # host:pid:token, as in `runs.lease_owner`
    kind: str  # "worker" | "serve" | "cli" | "mcp" ...
    drives: bool  # it claims runnable runs (a face-only process does not)
    started_at: str = ""
    expires: float = 0.0


class LeaseRow(BaseModel):
    """Who drives a run that has work to do (`pending` or `running`); `owner` None: nobody."""

    run_id: str
    status: RunStatus
    owner: str | None = None
    expires: float | None = None  # unix seconds on the store's clock


ClaimStatus = Literal["taken", "done", "failed", "refused"]


class ClaimRow(BaseModel):
    """Something done at most once across processes and restarts: a schedule's slot, a webhook
    delivery, a checkpoint's timeout. `data` says what came of it (a run id, a refusal)."""

    key: str
    status: ClaimStatus
    at: Any = None
    data: dict[str, Any] = Field(default_factory=dict)


class RunFilter(BaseModel):
    status: list[RunStatus] | None = None
    flow: str | None = None
    workspace: str | None = None
    started_by: str | None = None
    before: str | None = None  # a run id: only runs listed after it (older), for cursor paging
    limit: int = 50


class Store(Protocol):
    async def __aenter__(self) -> Store: ...
    async def __aexit__(self, *exc: object) -> None: ...

    # runs ------------------------------------------------------------------------------------
    async def create_run(
        self, run: Run, events: Sequence[EventData], *, daily_cap: int | None = None, day: date | None = None
    ) -> tuple[Run, list[Event]]:
        """Insert a new run (version 1) with its first events.

        With `day` (UTC), counts the run against the workspace's runs started that day in the same
        transaction (every run started counts, capped or not); with `daily_cap` too, raises
        `StartRefused(code="daily_cap_reached")` if the cap is reached.
        """
        ...

    async def commit(
        self, run: Run, events: Sequence[EventData], *, expected_version: int, decision_id: str | None = None,
        lease_owner: str | None = None,
    ) -> tuple[Run, list[Event]]:
        """Write the run (and steps) and append its events, compare-and-set on the version.

        With `decision_id`, also stores the decision row in the same transaction. With
        `lease_owner` (a driver's fence), writes only while that owner holds the run's lease.

        Raises:
            ConcurrentUpdate: the stored version is not `expected_version`.
            LeaseLost: (a ConcurrentUpdate) `lease_owner` no longer holds the lease.
            NotFound: no such run.
        """
        ...

    async def commit_pair(
        self,
        first: tuple[Run, Sequence[EventData], int],
        second: tuple[Run, Sequence[EventData]],
        *,
        daily_cap: int | None = None,
        day: date | None = None,
    ) -> tuple[Run, Run]:
        """Update one run (CAS) and create another in one transaction (retry as a clone); the new
        run is counted (and capped) as `create_run` counts it."""
        ...

    async def append_transcript(
        self, run_id: str, entries: Sequence[LogOnly], *, lease_owner: str | None = None
    ) -> list[Event]:
        """Append transcript entries; returns once they are committed and published.

        Many concurrent appends are group-committed into one transaction. With `lease_owner`
        (a driver's fence), appends only while that owner holds the run's lease, else raises
        `LeaseLost`."""
        ...

    async def get_run(self, run_id: str) -> Run:
        """Raises NotFound naming the id."""
        ...

    async def list_runs(self, filter: RunFilter | None = None) -> list[Run]:
        """Newest first."""
        ...

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]: ...

    # the event log -----------------------------------------------------------------------------
    async def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]: ...

    def subscribe(self, run_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Stored events after `after_seq`, then live ones, forever (the caller stops iterating)."""
        ...

    # decisions, records, usage -----------------------------------------------------------------
    async def get_decision(self, decision_id: str) -> DecisionRow | None: ...

    async def put_record(self, record: RecordRow) -> None: ...

    async def get_record(self, record_id: str) -> RecordRow | None: ...

    async def list_records(self, kind: str) -> list[RecordRow]: ...

    async def records_changed(self, kind: str, after: int = 0, limit: int | None = None) -> RecordChanges:
        """Records of `kind` created or changed after change number `after` (0: all of them),
        oldest write first, at most `limit`; pass the answer's `cursor` as `after` next time.

        Every write of a record takes the next change number of its kind inside the writing
        transaction, in commit order (writers of records are serialised, across processes too),
        so a reader that follows the cursor reads each write once, and misses none: not two
        written in the same instant, not one another process committed meanwhile. A record
        written again comes back with its new content."""
        ...

    async def runs_started(self, workspace: str, day: date) -> int: ...

    # leases: which engine process drives which run -----------------------------------------------
    async def claim_runs(
        self,
        owner: str,
        *,
        lease_s: float,
        limit: int = 1,
        run_ids: Sequence[str] | None = None,
        dead_owners: Sequence[str] = (),
    ) -> list[str]:
        """Lease up to `limit` runs that have work to do (`pending`, `running`) and whose lease
        is free, expired or held by one of `dead_owners` (processes known to be gone), oldest
        first; with `run_ids`, only among those, and also those `owner` holds (renewed).
        Returns the claimed ids. Two processes never both claim one run."""
        ...

    async def claim_and_read_runs(
        self,
        owner: str,
        *,
        lease_s: float,
        limit: int = 1,
        dead_owners: Sequence[str] = (),
    ) -> list[Run]:
        """`claim_runs` (any runnable run) and the claimed runs as stored, read in the same
        round trip where the store can (a worker drives a run it claims at once)."""
        ...

    async def renew_leases(self, owner: str, run_ids: Sequence[str], *, lease_s: float) -> list[str]:
        """Push the leases `owner` holds forward; returns the ids it still holds (a lease taken
        over by another process after it expired is lost, and its driver must stop)."""
        ...

    async def release_leases(self, owner: str, run_ids: Sequence[str]) -> None: ...

    async def leases(self) -> list[LeaseRow]:
        """The lease of every run that has work to do, oldest first."""
        ...

    async def lease(self, run_id: str) -> LeaseRow:
        """One run's status and lease, whatever its status (a cheap read, before each tool call).

        Raises NotFound naming the id."""
        ...

    async def store_time(self) -> float:
        """Now, in unix seconds, on the clock leases are measured by."""
        ...

    async def heartbeat(self, worker: WorkerRow, *, ttl_s: float) -> None:
        """Record that `worker` is alive for the next `ttl_s` seconds."""
        ...

    async def remove_worker(self, worker_id: str) -> None: ...

    async def live_workers(self) -> list[WorkerRow]: ...

    async def announce_work(self, run_id: str) -> None:
        """Tell engine processes (this one and others) that `run_id` may be claimable now."""
        ...

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Wait until work is announced (True) or `timeout_s` passes (False)."""
        ...

    # claims: at most once, across processes ------------------------------------------------------
    async def claim(self, key: str, data: dict[str, Any], *, retry_failed: bool = False) -> bool:
        """Take `key` (atomically, across processes): True if this caller took it. With
        `retry_failed`, a claim that was settled `failed` may be taken again."""
        ...

    async def settle_claim(self, key: str, status: ClaimStatus, data: dict[str, Any]) -> None: ...

    async def list_claims(self, prefix: str, limit: int = 50) -> list[ClaimRow]:
        """Claims whose key starts with `prefix`, newest first."""
        ...

    # notifications read, per person -------------------------------------------------------------
    async def mark_notes_read(self, workspace: str, actor: str, note_ids: Sequence[str]) -> None:
        """Record that `actor` (of `workspace`) has read these notifications (idempotent)."""
        ...

    async def notes_read(self, workspace: str, actor: str, among: Sequence[str] | None = None) -> set[str]:
        """The ids of the notifications `actor` has read; with `among`, only those of these ids
        (a poll asks about the notifications it holds, not the person's whole history)."""
        ...

class ChatStore(Protocol):
    """Chats, in the same store and event log as runs: a chat's events are stored under the chat
    id with a gapless seq, so `events(chat_id, ...)` and `subscribe(chat_id, ...)` read them exactly
    as they read a run's. Implemented by `SQLiteStore` and `PostgresStore`."""

    async def create_chat(self, chat: Chat, events: Sequence[ChatEventData] = ()) -> tuple[Chat, list[Event]]: ...

    async def append_chat(
        self, chat_id: str, events: Sequence[ChatEventData], *, chat: Chat | None = None
    ) -> list[Event]:
        """Raises NotFound for an unknown chat. A person's message is committed durably."""
        ...

    async def get_chat(self, chat_id: str) -> Chat: ...

    async def host_chat(self, chat_id: str, owner: str, *, lease_s: float, dead_owners: Sequence[str] = ()) -> bool:
        """Make `owner` the one engine process that answers in the chat (its agent and its notes
        about runs), on a lease like a run's: true when the chat was free, its lease expired,
        its host is one of `dead_owners`, or `owner` hosts it already (renewed). Raises NotFound."""
        ...

    async def renew_chat_hosts(self, owner: str, chat_ids: Sequence[str], *, lease_s: float) -> list[str]:
        """Push `owner`'s chat leases forward; returns the chats it still hosts."""
        ...

    async def release_chat_hosts(self, owner: str, chat_ids: Sequence[str]) -> None: ...

    async def list_chats(
        self, *, workspace: str | None = None, owner: str | None = None, limit: int = 50
    ) -> list[Chat]: ...

    async def events(self, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]: ...

    def subscribe(self, run_id: str, after_seq: int = 0) -> AsyncIterator[Event]: ...
