"""The writes a store can make: run, transcript, record and claim operations, planned inside a
group-commit transaction (see `transaction.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ..flows.errors import DecisionConflict, StartRefused, UsageError
from ..flows.events import DecisionRecorded, Event, RunStatusChanged
from ..flows.run import Run, now
from .base import DecisionRow
from .codec import EncodedEvent, EncodedRun, encode_decision, format_day
from .transaction import RUNNABLE, Op, Planned, RunState, Transaction


@dataclass(slots=True)
class AppendTranscript(Op[list[Event]]):
    run_id: str
    entries: list[EncodedEvent]
    fence: str | None = None  # the lease owner writing (see `Transaction.existing_run`)

    def run_ids(self) -> Iterable[str]:
        return (self.run_id,)

    @property
    def size(self) -> int:
        return len(self.entries)

    def plan(self, tx: Transaction) -> Planned[list[Event]]:
        state = tx.existing_run(self.run_id, fence=self.fence)
        events = tx.append_events(self.run_id, state, self.entries)
        return Planned(events, [(self.run_id, events)])


@dataclass(slots=True)
class CreateRun(Op[tuple[Run, list[Event]]]):
    run: Run
    encoded: EncodedRun
    events: list[EncodedEvent]
    daily_cap: int | None = None
    day: date | None = None

    def run_ids(self) -> Iterable[str]:
        return (self.run.id,)

    @property
    def size(self) -> int:
        return len(self.events) + len(self.encoded.steps) + 1

    def check(self, tx: Transaction) -> None:
        tx.absent_run(self.run.id)
        if self.daily_cap is not None:
            assert self.day is not None
            workspace, day = self.run.workspace, format_day(self.day)
            started = tx.runs_started(workspace, day)
            if started >= self.daily_cap:
                resets_at = datetime.combine(self.day + timedelta(days=1), time(0), tzinfo=UTC)
                raise StartRefused(
                    f"workspace {workspace!r} has reached its daily cap of {self.daily_cap} runs for {day} "
                    f"(UTC); the cap resets at 00:00 UTC tomorrow ({resets_at.isoformat()})",
                    code="daily_cap_reached",
                    workspace=workspace,
                    cap=self.daily_cap,
                    started=started,
                    day=day,
                    resets_at=resets_at.isoformat(),
                )

    def apply(self, tx: Transaction) -> tuple[Run, list[Event]]:
        state = tx.insert_run(self.encoded)
        if self.day is not None:  # every run started counts, capped or not
            tx.count_start(self.run.workspace, format_day(self.day))
        events = tx.append_events(self.run.id, state, self.events)
        return self.run.model_copy(
            update={"version": state.version, "last_seq": state.last_seq}
        ), events

    def made_runnable(self) -> list[str]:
        return [self.run.id] if self.run.status.value in RUNNABLE else []

    def plan(self, tx: Transaction) -> Planned[tuple[Run, list[Event]]]:
        self.check(tx)
        run, events = self.apply(tx)
        return Planned((run, events), [(run.id, events)])


@dataclass(slots=True)
class CommitRun(Op[tuple[Run, list[Event]]]):
    run: Run
    encoded: EncodedRun
    events: list[EncodedEvent]
    expected_version: int
    decision: DecisionRow | None = None
    decision_json: str = ""
    fence: str | None = None  # the lease owner writing (see `Transaction.existing_run`)

    def __post_init__(self) -> None:
        if self.decision is not None:  # encoded by the caller: a failure is the caller's alone
            self.decision_json = encode_decision(self.decision)

    def run_ids(self) -> Iterable[str]:
        return (self.run.id,)

    def decision_ids(self) -> Iterable[str]:
        return () if self.decision is None else (self.decision.decision_id,)

    @property
    def size(self) -> int:
        return len(self.events) + 2

    @property
    def durable(self) -> bool:
        return self.decision is not None or any(e.type == "decision" for e in self.events)

    def check(self, tx: Transaction) -> RunState:
        state = tx.existing_run(self.run.id, self.expected_version, self.fence)
        if self.decision is not None:
            first = tx.stored_decision(self.decision.decision_id)
            if first is not None:
                who = "automatically" if first.decision.auto else f"by {first.decision.actor}"
                raise DecisionConflict(
                    f"decision {first.decision_id!r} was already recorded: {first.decision.kind.value} {who} "
                    f"on step {first.step} of run {first.run_id}",
                    code="already_decided",
                    decision_id=first.decision_id,
                    run_id=first.run_id,
                    step=first.step,
                    decision=first.decision.model_dump(mode="json"),
                )
        return state

    def apply(self, tx: Transaction, state: RunState) -> tuple[Run, list[Event]]:
        tx.update_run(state, self.encoded)
        events = tx.append_events(self.run.id, state, self.events)
        if self.decision is not None:
            tx.record_decision(self.decision, self.decision_json)
        return self.run.model_copy(
            update={"version": state.version, "last_seq": state.last_seq}
        ), events

    def made_runnable(self) -> list[str]:
        changes = [e.data for e in self.events if isinstance(e.data, RunStatusChanged)]
        moved = changes and changes[-1].status.value in RUNNABLE and (
            changes[0].previous is None or changes[0].previous.value not in RUNNABLE)
        return [self.run.id] if moved and self.run.status.value in RUNNABLE else []

    def plan(self, tx: Transaction) -> Planned[tuple[Run, list[Event]]]:
        state = self.check(tx)
        run, events = self.apply(tx, state)
        return Planned((run, events), [(run.id, events)])


@dataclass(slots=True)
class CommitPair(Op[tuple[Run, Run]]):
    first: CommitRun
    second: CreateRun

    def run_ids(self) -> Iterable[str]:
        return (self.first.run.id, self.second.run.id)

    @property
    def size(self) -> int:
        return self.first.size + self.second.size

    def made_runnable(self) -> list[str]:
        return [*self.first.made_runnable(), *self.second.made_runnable()]

    def plan(self, tx: Transaction) -> Planned[tuple[Run, Run]]:
        state = self.first.check(tx)
        self.second.check(tx)
        first, first_events = self.first.apply(tx, state)
        second, second_events = self.second.apply(tx)
        return Planned((first, second), [(first.id, first_events), (second.id, second_events)])


@dataclass(slots=True)
class PutRecord(Op[None]):
    record_id: str
    kind: str
    json: str

    def plan(self, tx: Transaction) -> Planned[None]:
        tx.put_record(self.record_id, self.kind, self.json)
        return Planned(None, [])


@dataclass(slots=True)
class Claim(Op[bool]):
    """Take `key` once: True if this op took it (absent, or `retry_failed` and it had failed)."""

    key: str
    json: str
    retry_failed: bool = False

    def plan(self, tx: Transaction) -> Planned[bool]:
        status = tx.claim_status(self.key)
        if status is None or (self.retry_failed and status == "failed"):
            tx.put_claim(self.key, "taken", self.json)
            return Planned(True, [])
        return Planned(False, [])


@dataclass(slots=True)
class SettleClaim(Op[None]):
    """Record how a taken claim ended: done, failed (may be taken again) or refused."""

    key: str
    status: str
    json: str

    def plan(self, tx: Transaction) -> Planned[None]:
        tx.put_claim(self.key, self.status, self.json)
        return Planned(None, [])


def decision_row(run: Run, events: Sequence[EncodedEvent], decision_id: str) -> DecisionRow:
    """The decision a commit with `decision_id` records: the run's own copy, on the step named by
    the `DecisionRecorded` event among the events.

    Raises:
        UsageError: no `DecisionRecorded` event, or it names a step the run does not have.
    """
    recorded = [item.data for item in events if isinstance(item.data, DecisionRecorded)]
    if not recorded:
        raise UsageError(
            f"commit of run {run.id} with decision_id {decision_id!r} has no 'decision' event to take it from"
        )
    step = recorded[-1].step
    if not 0 <= step < len(run.steps):
        raise UsageError(f"run {run.id} has no step {step} (decision_id {decision_id!r})")
    decision = run.steps[step].decision or recorded[-1].decision
    return DecisionRow(
        decision_id=decision_id, run_id=run.id, step=step, decision=decision, at=now()
    )
