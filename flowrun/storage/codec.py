"""Rows <-> domain models.

Secrets are replaced here, on the one path every write takes (`redact_run`, and the `redactor`
of `encode_events`/`encode_entries`): parameters, summaries, outputs, artifacts, decisions and their
comments, failure reasons, transcript entries and records are stored and published redacted,
whoever wrote them.

Encoding happens in the caller's coroutine, before a write joins a group commit, so a value that
cannot be stored fails that caller alone (and the writer only moves strings). Decoding turns an
unreadable row into `StorageCorrupt` naming the file, the table and the key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from ..flows.errors import UsageError
from ..flows.events import (
    AgentMessages,
    Event,
    EventData,
    LogOnly,
    TranscriptEntry,
    event_data_adapter,
)
from ..flows.redact import Redactor
from ..flows.run import Run, StepRun
from .base import DecisionRow, RecordRow
from .errors import StorageCorrupt

EVENT_TYPES: tuple[type[BaseModel], ...] = get_args(get_args(EventData)[0])
_RUN_EXCLUDE = {"steps", "flow", "version", "last_seq"}


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    type: str
    json: str
    data: EventData


@dataclass(frozen=True, slots=True)
class EncodedRun:
    """A run ready to write: the columns of its `runs` row and one JSON string per step."""

    id: str
    workspace: str
    flow_id: str
    status: str
    started_by: str
    created_at: str
    json: str
    steps: tuple[str, ...]
    flow: str = ""  # the frozen template: encoded for a new run only (it never changes after)


def format_time(value: datetime) -> str:
    """UTC, fixed width, so the text sorts like the time (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_day(value: date) -> str:
    return value.isoformat()


def _dump(model: BaseModel, what: str, **kwargs: Any) -> str:
    try:
        return model.model_dump_json(**kwargs)
    except PydanticSerializationError as exc:
        raise UsageError(f"{what} cannot be stored as JSON: {exc}") from exc


class StepMemo:
    """The step objects last stored, and last read, per run, with their JSON. The state machines
    copy a run with only the changed step replaced, so an unchanged step is the same (frozen)
    object: what was stored or read from the store is redacted already and its JSON is known,
    so neither is done again on every commit (a 20-step run's redaction walk was most of a
    commit's cost). Two generations per run, so a read by another task (a status check) does
    not make the driver's copy unknown."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._stored: OrderedDict[str, tuple[tuple[StepRun, ...], tuple[str, ...]]] = OrderedDict()
        self._read: OrderedDict[str, tuple[tuple[StepRun, ...], tuple[str, ...]]] = OrderedDict()

    def _known(self, run_id: str, index: int, step: StepRun) -> str | None:
        for generations in (self._stored, self._read):
            objects, jsons = generations.get(run_id, ((), ()))
            if index < len(objects) and objects[index] is step:
                return jsons[index]
        return None

    def stored(self, run_id: str, index: int, step: StepRun) -> bool:
        """Is `step` the very object stored or read (so redacted) at `index` of run `run_id`?"""
        return self._known(run_id, index, step) is not None

    def read(self, run: Run, jsons: tuple[str, ...]) -> None:
        """`run` was just decoded from these step rows."""
        self._put(self._read, run.id, tuple(run.steps), jsons)

    def encode(self, run: Run) -> tuple[str, ...]:
        encoded = tuple(
            self._known(run.id, i, step) or _dump(step, f"step {step.index} of run {run.id}")
            for i, step in enumerate(run.steps)
        )
        self._put(self._stored, run.id, tuple(run.steps), encoded)
        return encoded

    def _put(self, generations: OrderedDict[str, tuple[tuple[StepRun, ...], tuple[str, ...]]], run_id: str,
             steps: tuple[StepRun, ...], jsons: tuple[str, ...]) -> None:
        generations[run_id] = (steps, jsons)
        generations.move_to_end(run_id)
        while len(generations) > self._capacity:
            generations.popitem(last=False)


def redact_run(run: Run, redactor: Redactor, *, new: bool = False, memo: StepMemo | None = None) -> Run:
    """The run with every secret it carries replaced (the same object when there is none). The
    frozen template is looked at only for a new run: it never changes after; with `memo`, a
    step stored before as this very object (see `StepMemo`) is not looked at again."""
    update: dict[str, Any] = {}
    for name in type(run).model_fields:
        if name == "flow" and not new:
            continue
        value = getattr(run, name)
        if name == "steps" and memo is not None:
            steps = [step if memo.stored(run.id, i, step) else redactor.redact_obj(step)
                     for i, step in enumerate(value)]
            redacted: Any = value if all(a is b for a, b in zip(steps, value, strict=True)) else steps
        else:
            redacted = redactor.redact_obj(value)
        if redacted is not value:
            update[name] = redacted
    return run.model_copy(update=update) if update else run


def encode_run(run: Run, *, new: bool = False, memo: StepMemo | None = None) -> EncodedRun:
    if not isinstance(run, Run):
        raise UsageError(f"expected a Run, got {type(run).__name__}")
    if memo is not None:
        steps = memo.encode(run)
    else:
        steps = tuple(_dump(step, f"step {step.index} of run {run.id}") for step in run.steps)
    for position, step in enumerate(run.steps):
        if step.index != position:
            raise UsageError(f"run {run.id}: step at position {position} has index {step.index}")
    return EncodedRun(
        id=run.id,
        workspace=run.workspace,
        flow_id=run.flow_id,
        status=run.status.value,
        started_by=run.started_by,
        created_at=format_time(run.created_at),
        json=_dump(run, f"run {run.id}", exclude=_RUN_EXCLUDE),
        steps=steps,
        flow=_dump(run.flow, f"the flow of run {run.id}") if new else "",
    )


def _encode_event(data: Any, what: str, redactor: Redactor | None) -> EncodedEvent:
    """One event's JSON, with its secrets replaced (the event that is published is the redacted
    one too). Walking the model costs less than screening its JSON: Python's `re` pays per
    character, and the JSON is longer than the strings in it."""
    if redactor is not None:
        data = redactor.redact_obj(data)
    return EncodedEvent(data.type, _dump(data, what), data)


def encode_events(
    run_id: str, events: Sequence[EventData], redactor: Redactor | None = None
) -> list[EncodedEvent]:
    encoded: list[EncodedEvent] = []
    for i, data in enumerate(events):
        if not isinstance(data, EVENT_TYPES):
            raise UsageError(
                f"run {run_id}: events[{i}] is a {type(data).__name__}, not an event model"
            )
        encoded.append(_encode_event(data, f"run {run_id}: events[{i}]", redactor))
    return encoded


def encode_entries(
    run_id: str, entries: Sequence[LogOnly], redactor: Redactor | None = None
) -> list[EncodedEvent]:
    encoded: list[EncodedEvent] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, TranscriptEntry | AgentMessages):
            raise UsageError(
                f"run {run_id}: entries[{i}] is a {type(entry).__name__}, not a TranscriptEntry "
                "or AgentMessages"
            )
        encoded.append(_encode_event(entry, f"run {run_id}: entries[{i}]", redactor))
    return encoded


def encode_decision(row: DecisionRow) -> str:
    return _dump(row, f"decision {row.decision_id}")


def encode_record(record: RecordRow) -> str:
    if not isinstance(record, RecordRow):
        raise UsageError(f"expected a RecordRow, got {type(record).__name__}")
    return _dump(record, f"record {record.id}")


# -- decoding ------------------------------------------------------------------------------------


def _corrupt(label: str, table: str, key: str, exc: Exception) -> StorageCorrupt:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        reason = f"{where}: {first['msg']}"
        if exc.error_count() > 1:
            reason += f" (and {exc.error_count() - 1} more problems)"
    else:
        reason = str(exc)
    return StorageCorrupt(
        f"cannot read {key} from table {table!r} in {label}: {reason}",
        path=label,
        table=table,
        key=key,
    )


def decode_run(
    label: str,
    run_id: str,
    version: int,
    last_seq: int,
    json: str,
    flow: str,
    steps: Sequence[tuple[int, str]],
) -> Run:
    try:
        # the row's JSON is an object without "flow": splice the template back in
        run = Run.model_validate_json(
            f'{json[:-1]},"flow":{flow}}}' if json.endswith("}") else json
        )
    except ValidationError as exc:
        raise _corrupt(label, "runs", f"run {run_id}", exc) from exc
    decoded: list[StepRun] = []
    for position, (index, step_json) in enumerate(steps):
        if index != position:
            raise StorageCorrupt(
                f"cannot read run {run_id} from {label}: step rows are not numbered 0..N (found {index} at {position})",
                path=label,
                table="steps",
                key=f"run {run_id}",
            )
        try:
            decoded.append(StepRun.model_validate_json(step_json))
        except ValidationError as exc:
            raise _corrupt(label, "steps", f"step {index} of run {run_id}", exc) from exc
    if run.id != run_id:
        raise StorageCorrupt(
            f"cannot read run {run_id} from {label}: its JSON says it is {run.id}",
            path=label,
            table="runs",
            key=f"run {run_id}",
        )
    return run.model_copy(update={"steps": decoded, "version": version, "last_seq": last_seq})


def decode_event(label: str, run_id: str, seq: int, at: str, data: str) -> Event:
    try:
        parsed = event_data_adapter.validate_json(data)
        when = datetime.fromisoformat(at)
    except (ValidationError, ValueError) as exc:
        raise _corrupt(label, "events", f"event {seq} of run {run_id}", exc) from exc
    return Event.model_construct(run_id=run_id, seq=seq, at=when, data=parsed)


def decode_decision(label: str, decision_id: str, json: str) -> DecisionRow:
    try:
        return DecisionRow.model_validate_json(json)
    except ValidationError as exc:
        raise _corrupt(label, "decisions", f"decision {decision_id}", exc) from exc


def decode_record(label: str, record_id: str, json: str) -> RecordRow:
    try:
        return RecordRow.model_validate_json(json)
    except ValidationError as exc:
        raise _corrupt(label, "records", f"record {record_id}", exc) from exc
