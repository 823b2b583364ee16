"""A group-commit transaction being planned (in the writer's thread), and the `Op` it plans.

Each operation (`ops.py`, `chats.py`, the SQLite lease statements) first checks everything that
can refuse it (a missing run, a version that moved, a daily cap) and only then records its rows
in the transaction, so a refused operation leaves no trace and the others in the same group
commit go ahead. Rows are written by `Transaction.flush` in a handful of statements, whatever the
number of operations. The same planner serves SQLite (`writer.py`) and PostgreSQL
(`postgres_writer.py`).
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ..flows.errors import ConcurrentUpdate, FlowrunError, LeaseLost, NotFound, UsageError
from ..flows.events import Event
from ..flows.run import now
from .base import DecisionRow
from .codec import EncodedEvent, EncodedRun, decode_decision, format_time

T = TypeVar("T")
Published = list[tuple[str, list[Event]]]

_CHUNK = 500  # stay well under SQLite's bound-parameter limit
RUNNABLE = ("pending", "running")  # statuses with work to do: what leases are about


class Rows(Protocol):
    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """What a transaction needs of its connection: `?` placeholders, a blocking API. sqlite3's
    connection is one; the PostgreSQL store adapts psycopg's to it (see `postgres_writer`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object: ...


class StepCache:
    """The step JSON last written or read per run, keyed by the run version it belongs to.

    A (run, version) pair names exactly one stored state (versions only move by compare-and-set),
    so a commit against `expected_version` can write only the steps whose JSON differs from it.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, tuple[str, ...]]] = OrderedDict()

    def get(self, run_id: str, version: int) -> tuple[str, ...] | None:
        entry = self._entries.get(run_id)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(run_id)
        return entry[1]

    def put(self, run_id: str, version: int, steps: tuple[str, ...]) -> None:
        entry = self._entries.get(run_id)
        if entry is not None and entry[0] > version:
            return
        self._entries[run_id] = (version, steps)
        self._entries.move_to_end(run_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


@dataclass(slots=True)
class RunState:
    """A run row as this transaction sees it (the stored row plus earlier writes in the batch)."""

    version: int
    last_seq: int
    insert: bool = False  # created in this transaction
    row: EncodedRun | None = None  # full row to write; None: only last_seq moved
    touched: bool = False
    lease_owner: str | None = None  # the engine process driving it (fenced writes must be its)


@dataclass(slots=True)
class Planned(Generic[T]):
    result: T
    published: Published


class Transaction:
    """One group commit being planned: the stored state it read, and the rows it will write.

    `LOCK_ROWS` is appended to the reads of run rows: SQLite's write lock already serialises
    every writer, a PostgreSQL transaction locks the rows it will change (`FOR UPDATE`)."""

    LOCK_ROWS = ""

    def __init__(self, conn: Connection, label: str, step_cache: StepCache) -> None:
        self.conn = conn
        self.label = label
        self._step_cache = step_cache
        self._runs: dict[str, RunState | None] = {}
        self._decisions: dict[str, str | None] = {}  # decision_id -> stored json (None: absent)
        self._usage: dict[tuple[str, str], int] = {}
        self._usage_touched: set[tuple[str, str]] = set()
        self._events: list[tuple[str, int, str, str, str]] = []
        self._steps: dict[str, dict[int, str]] = {}
        self._truncate: dict[str, int] = {}
        self._new_decisions: list[tuple[str, str, int, str]] = []
        self._records: dict[str, tuple[str, str, str]] = {}
        self._claims: dict[str, tuple[str, str, str, str]] = {}  # key -> (key, at, status, json)
        self.step_versions: dict[str, tuple[int, tuple[str, ...]]] = {}
        # statements that must see this transaction's other writes (lease claims): run last
        self.after_flush: list[Callable[[Connection], None]] = []
        # one time for every event of the transaction: when it was written
        self.at = now()
        self.at_text = format_time(self.at)

    # -- reading, inside the write lock ------------------------------------------------------

    def prefetch(self, ops: Sequence[Op[Any]]) -> None:
        """Read every run row and decision the batch names, a few queries for the whole batch."""
        run_ids = sorted({run_id for op in ops for run_id in op.run_ids()} - self._runs.keys())
        for row in self._rows_in(
            "SELECT id, version, last_seq, lease_owner FROM runs WHERE id IN ({}) ORDER BY id" + self.LOCK_ROWS,
            run_ids
        ):
            self._runs[row[0]] = RunState(version=row[1], last_seq=row[2], lease_owner=row[3])
        for run_id in run_ids:
            self._runs.setdefault(run_id, None)
        decision_ids = sorted({d for op in ops for d in op.decision_ids()} - self._decisions.keys())
        for row in self._rows_in(
            "SELECT decision_id, json FROM decisions WHERE decision_id IN ({})", decision_ids
        ):
            self._decisions[row[0]] = row[1]
        for decision_id in decision_ids:
            self._decisions.setdefault(decision_id, None)

    def _rows_in(self, sql: str, keys: Sequence[str]) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows += self.conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def run(self, run_id: str) -> RunState | None:
        if run_id not in self._runs:
            rows = list(
                self.conn.execute(
                    "SELECT version, last_seq, lease_owner FROM runs WHERE id = ?" + self.LOCK_ROWS, (run_id,)
                ).fetchall()
            )
            self._runs[run_id] = (
                RunState(version=rows[0][0], last_seq=rows[0][1], lease_owner=rows[0][2]) if rows else None
            )
        return self._runs[run_id]

    def existing_run(self, run_id: str, expected_version: int | None = None, fence: str | None = None) -> RunState:
        """The run's stored state. `fence`: the lease owner the write comes from; refused with
        `LeaseLost` when another process holds the run's lease now (or nobody does)."""
        state = self.run(run_id)
        if state is None:
            raise NotFound(f"run {run_id} not found", run_id=run_id)
        if fence is not None and state.lease_owner != fence:
            raise LeaseLost(
                f"run {run_id} is no longer driven by {fence} (its lease is {state.lease_owner or 'free'}); "
                "this process must stop driving it",
                run_id=run_id, owner=fence, holder=state.lease_owner,
            )
        if expected_version is not None and state.version != expected_version:
            raise ConcurrentUpdate(
                f"run {run_id} changed under you: you expected version {expected_version}, it is at "
                f"version {state.version}; reload it and try again",
                run_id=run_id,
                expected_version=expected_version,
                version=state.version,
            )
        return state

    def absent_run(self, run_id: str) -> None:
        if self.run(run_id) is not None:
            raise UsageError(f"run {run_id} already exists", code="already_exists", run_id=run_id)

    def stored_decision(self, decision_id: str) -> DecisionRow | None:
        if decision_id not in self._decisions:
            rows = list(
                self.conn.execute(
                    "SELECT json FROM decisions WHERE decision_id = ?", (decision_id,)
                ).fetchall()
            )
            self._decisions[decision_id] = rows[0][0] if rows else None
        json = self._decisions[decision_id]
        return None if json is None else decode_decision(self.label, decision_id, json)

    def runs_started(self, workspace: str, day: str) -> int:
        key = (workspace, day)
        if key not in self._usage:
            rows = list(
                self.conn.execute(
                    "SELECT runs FROM usage_counters WHERE workspace = ? AND day = ?", key
                ).fetchall()
            )
            self._usage[key] = rows[0][0] if rows else 0
        return self._usage[key]

    # -- recording writes (never fail) ---------------------------------------------------------

    def insert_run(self, run: EncodedRun) -> RunState:
        state = RunState(version=1, last_seq=0, insert=True, row=run, touched=True)
        self._runs[run.id] = state
        self._write_steps(run.id, run.steps, known=None, fresh=True)
        self.step_versions[run.id] = (1, run.steps)
        return state

    def update_run(self, state: RunState, run: EncodedRun) -> None:
        known = self.step_versions.get(run.id)
        previous = known[1] if known is not None and known[0] == state.version else None
        if previous is None:
            previous = self._step_cache.get(run.id, state.version)
        self._write_steps(run.id, run.steps, known=previous)
        state.version += 1
        state.row = run
        state.touched = True
        self.step_versions[run.id] = (state.version, run.steps)

    def _write_steps(
        self,
        run_id: str,
        steps: tuple[str, ...],
        known: tuple[str, ...] | None,
        fresh: bool = False,
    ) -> None:
        if (known is None and not fresh) or (known is not None and len(known) > len(steps)):
            # unknown previous state, or fewer steps than before: drop what may be stale
            self._truncate[run_id] = min(self._truncate.get(run_id, len(steps)), len(steps))
            pending = self._steps.get(run_id, {})
            for index in [i for i in pending if i >= len(steps)]:
                del pending[index]
        for index, json in enumerate(steps):
            if known is None or index >= len(known) or known[index] != json:
                self._steps.setdefault(run_id, {})[index] = json

    def append_events(
        self, run_id: str, state: RunState, encoded: Sequence[EncodedEvent]
    ) -> list[Event]:
        at, at_text = self.at, self.at_text
        seq = state.last_seq
        events: list[Event] = []
        rows = self._events
        for item in encoded:
            seq += 1
            rows.append((run_id, seq, at_text, item.type, item.json))
            events.append(Event(run_id=run_id, seq=seq, at=at, data=item.data))
        state.last_seq = seq
        state.touched = True
        return events

    def record_decision(self, row: DecisionRow, json: str) -> None:
        self._decisions[row.decision_id] = json
        self._new_decisions.append((row.decision_id, row.run_id, row.step, json))

    def count_start(self, workspace: str, day: str) -> None:
        key = (workspace, day)
        self._usage[key] = self.runs_started(workspace, day) + 1  # read first when uncapped
        self._usage_touched.add(key)

    def put_record(self, record_id: str, kind: str, json: str) -> None:
        self._records[record_id] = (record_id, kind, json)

    def lock_records(self) -> None:
        """Hold the record change numbers until the commit, so they are taken in commit order:
        SQLite's write lock already does (one writer at a time); PostgreSQL takes a lock."""

    def claim_status(self, key: str) -> str | None:
        """The status of claim `key`, as this transaction will leave it (None: never taken)."""
        if key in self._claims:
            return self._claims[key][2]
        row = self.conn.execute("SELECT status FROM claims WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put_claim(self, key: str, status: str, json: str) -> None:
        self._claims[key] = (key, self.at_text, status, json)

    def plan_all(self, ops: Sequence[Op[Any]]) -> list[Planned[Any] | FlowrunError]:
        """Plan the batch: read what it names, plan each op (a refusal is its outcome, and the
        others go ahead), then write every row."""
        self.prefetch(ops)
        outcomes: list[Planned[Any] | FlowrunError] = []
        for op in ops:
            try:
                outcomes.append(op.plan(self))
            except FlowrunError as refused:
                outcomes.append(refused)
        self.flush()
        return outcomes

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        seq_only: list[tuple[int, str]] = []
        for run_id, state in self._runs.items():
            if state is None or not state.touched:
                continue
            row = state.row
            if state.insert:
                assert row is not None
                inserts.append(
                    (
                        row.id,
                        row.workspace,
                        row.flow_id,
                        row.status,
                        row.started_by,
                        row.created_at,
                        state.version,
                        state.last_seq,
                        row.json,
                        row.flow,
                    )
                )
            elif row is not None:
                updates.append(
                    (
                        row.workspace,
                        row.flow_id,
                        row.status,
                        row.started_by,
                        row.created_at,
                        state.version,
                        state.last_seq,
                        row.json,
                        run_id,
                    )
                )
            else:
                seq_only.append((state.last_seq, run_id))
        conn = self.conn
        if inserts:
            conn.executemany(
                "INSERT INTO runs (id, workspace, flow_id, status, started_by, created_at, version, last_seq, json, flow) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        if updates:
            conn.executemany(
                "UPDATE runs SET workspace = ?, flow_id = ?, status = ?, started_by = ?, created_at = ?, "
                "version = ?, last_seq = ?, json = ? WHERE id = ?",
                updates,
            )
        if seq_only:
            conn.executemany("UPDATE runs SET last_seq = ? WHERE id = ?", seq_only)
        if self._truncate:
            conn.executemany(
                "DELETE FROM steps WHERE run_id = ? AND idx >= ?", list(self._truncate.items())
            )
        if self._steps:
            conn.executemany(
                "INSERT INTO steps (run_id, idx, json) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, idx) DO UPDATE SET json = excluded.json",
                [
                    (run_id, index, json)
                    for run_id, steps in self._steps.items()
                    for index, json in steps.items()
                ],
            )
        if self._events:
            conn.executemany(
                "INSERT INTO events (run_id, seq, at, type, data) VALUES (?, ?, ?, ?, ?)",
                self._events,
            )
        if self._new_decisions:
            conn.executemany(
                "INSERT INTO decisions (decision_id, run_id, step, json) VALUES (?, ?, ?, ?)",
                self._new_decisions,
            )
        if self._usage_touched:
            conn.executemany(
                "INSERT INTO usage_counters (workspace, day, runs) VALUES (?, ?, ?) "
                "ON CONFLICT (workspace, day) DO UPDATE SET runs = excluded.runs",
                [
                    (workspace, day, self._usage[(workspace, day)])
                    for workspace, day in self._usage_touched
                ],
            )
        if self._records:
            # each write takes its kind's next change number (`Store.records_changed`), row by row
            self.lock_records()
            conn.executemany(
                "INSERT INTO records (id, kind, json, changed) "
                "VALUES (?, ?, ?, (SELECT coalesce(max(changed), 0) + 1 FROM records WHERE kind = ?)) "
                "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, json = excluded.json, changed = excluded.changed",
                [(record_id, kind, json, kind) for record_id, kind, json in self._records.values()],
            )
        if self._claims:
            conn.executemany(
                "INSERT INTO claims (key, at, status, json) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET at = excluded.at, status = excluded.status, json = excluded.json",
                list(self._claims.values()),
            )
        for statement in self.after_flush:
            statement(conn)

    def committed(self) -> None:
        """The transaction committed: remember the step JSON it wrote."""
        for run_id, (version, steps) in self.step_versions.items():
            self._step_cache.put(run_id, version, steps)


class Op(abc.ABC, Generic[T]):
    """A write waiting for the writer. `plan` refuses (raising) before it records anything."""

    def run_ids(self) -> Iterable[str]:
        return ()

    def decision_ids(self) -> Iterable[str]:
        return ()

    @property
    def size(self) -> int:
        """Rows this op adds, roughly: the writer caps a group commit by it."""
        return 1

    @property
    def durable(self) -> bool:
        """Must be on disk (not just in the OS) before it is acknowledged: a person's decision."""
        return False

    def made_runnable(self) -> list[str]:
        """The runs this op, once committed, leaves with work to do that they did not have."""
        return []

    @abc.abstractmethod
    def plan(self, tx: Transaction) -> Planned[T]: ...
