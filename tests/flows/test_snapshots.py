"""Persisted shapes carry a schema version, and snapshots written by earlier versions must load.
Add a snapshot here whenever a persisted shape changes; never edit an old one."""

from __future__ import annotations

import json
from pathlib import Path

from flowrun.flows.enums import DecisionKind, RunStatus, StepStatus, TaskState
from flowrun.flows.events import (
    AgentMessages,
    DecisionRecorded,
    TranscriptEntry,
    event_data_adapter,
)
from flowrun.flows.run import RUN_SCHEMA_VERSION, Run

SNAPSHOTS = Path(__file__).with_name("snapshots")


def test_run_v1_loads() -> None:
    run = Run.model_validate_json((SNAPSHOTS / "run-v1.json").read_text())
    assert run.schema_version == 1 <= RUN_SCHEMA_VERSION
    assert run.status == RunStatus.RUNNING and run.task is not None and run.task.state == TaskState.RUNNING
    assert [s.status for s in run.steps] == [StepStatus.COMPLETED, StepStatus.PENDING]
    decision = run.steps[1].decision
    assert decision is not None and decision.kind == DecisionKind.APPROVE and decision.comment == "ok"
    assert run.steps[0].usage.turns == 2 and run.usage.cost_usd == 0.01
    assert run.links.sandbox is not None and run.links.sandbox.state == "released"


def test_events_v1_load() -> None:
    raw = json.loads((SNAPSHOTS / "events-v1.json").read_text())
    events = [event_data_adapter.validate_python(item) for item in raw]
    assert {type(e).__name__ for e in events} >= {"RunStatusChanged", "StepStatusChanged", "UsageChanged",
                                                   "CheckpointReached", "DecisionRecorded", "TaskChanged"}
    assert any(isinstance(e, DecisionRecorded) and e.decision.decision_id == "d1" for e in events)
    assert any(isinstance(e, TranscriptEntry) and e.data.get("diff") for e in events)
    assert any(isinstance(e, AgentMessages) and e.messages for e in events)


def test_run_v1_single_clone_becomes_the_first_link_of_the_chain() -> None:
    raw = json.loads((SNAPSHOTS / "run-v1.json").read_text())
    assert Run.model_validate(raw).retried_as == []
    raw["retried_as"] = "run_01JSNAPSHOTCLONE000000000"  # how v1 stored a clone
    assert Run.model_validate(raw).retried_as == ["run_01JSNAPSHOTCLONE000000000"]


def test_run_v2_loads_with_its_retry_chain() -> None:
    run = Run.model_validate_json((SNAPSHOTS / "run-v2.json").read_text())
    assert run.schema_version == 2 <= RUN_SCHEMA_VERSION
    assert run.retried_as == ["run_01JSNAPSHOTV2CLONE000001", "run_01JSNAPSHOTV2CLONE000002"]
    assert run.status == RunStatus.FAILED and len(run.steps) == 2
