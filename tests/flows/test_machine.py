"""The product document's run rules, one row each, against the pure state machines."""

from __future__ import annotations

import pytest

from flowrun.flows import machine
from flowrun.flows.enums import (
    BlockedCause,
    CheckpointMode,
    DecisionKind,
    ExecutionMode,
    Outcome,
    RunStatus,
    StepStatus,
    TaskState,
)
from flowrun.flows.errors import DecisionConflict, InvalidTransition
from flowrun.flows.events import DecisionRecorded, RunStatusChanged, StepStatusChanged, TaskChanged
from flowrun.flows.machine import RunCommand
from flowrun.flows.run import Blocked, Decision, Run, StepResult
from flowrun.flows.template import FlowTemplate

R = RunStatus

FLOW = FlowTemplate.model_validate({
    "id": "f", "name": "F",
    "steps": [{"name": "Plan", "skill": "s"}, {"name": "Build", "skill": "s"},
              {"name": "Ship", "skill": "s", "checkpoint": "Sign off"}],
})


def make_run(status: RunStatus = R.PENDING, *, mode: ExecutionMode = ExecutionMode.INTERACTIVE) -> Run:
    run = machine.create(Run(flow=FLOW, started_by="ana", sandbox_profile="local", execution_mode=mode,
                             checkpoint_mode=CheckpointMode.TEMPLATE))
    return run.model_copy(update={"status": status})


# (from, command, to, the document's words)
ALLOWED = [
    (R.PENDING, RunCommand.START, R.RUNNING, "pending: queued, not yet started"),
    (R.RUNNING, RunCommand.PAUSE, R.PAUSED, "paused: waiting at a checkpoint for your decision"),
    (R.PAUSED, RunCommand.APPROVE, R.RUNNING, "Approve continues the run from that step"),
    (R.PAUSED, RunCommand.SKIP, R.RUNNING, "Skip marks the paused step skipped and advances"),
    (R.PAUSED, RunCommand.REJECT, R.REJECTED, "Reject stops the run; its status becomes rejected"),
    (R.RUNNING, RunCommand.COMPLETE, R.COMPLETED, "completed: every step finished"),
    (R.RUNNING, RunCommand.FAIL, R.FAILED, "failed: a step failed and the run stopped"),
    (R.RUNNING, RunCommand.BLOCK, R.BLOCKED, "blocked: waiting on something outside the agent"),
    (R.RUNNING, RunCommand.CANCEL, R.CANCELLED, "Cancel stops a running ... run"),
    (R.PAUSED, RunCommand.CANCEL, R.CANCELLED, "Cancel stops a ... paused run"),
    (R.BLOCKED, RunCommand.RESUME, R.RUNNING, "A blocked ... run shows Resume"),
    (R.CANCELLED, RunCommand.RESUME, R.RUNNING, "A ... cancelled run shows Resume"),
    (R.FAILED, RunCommand.RETRY, R.RUNNING, "A failed run shows Retry"),
    (R.INTERRUPTED, RunCommand.RETRY, R.RUNNING, "A run interrupted by deploy shows Retry Flow"),
    (R.RUNNING, RunCommand.INTERRUPT, R.INTERRUPTED, "updated mid-run: interrupted rather than failed"),
]


@pytest.mark.parametrize(("start", "command", "end", "rule"), ALLOWED, ids=[r[3] for r in ALLOWED])
def test_allowed_transitions(start: RunStatus, command: RunCommand, end: RunStatus, rule: str) -> None:
    assert machine.run_transition(make_run(start), command) == end


FORBIDDEN = [
    (R.COMPLETED, RunCommand.CANCEL, "Cancel appears only while a run is running or paused"),
    (R.FAILED, RunCommand.CANCEL, "Cancel appears only while a run is running or paused"),
    (R.BLOCKED, RunCommand.RETRY, "a blocked run is resumed, not retried"),
    (R.FAILED, RunCommand.RESUME, "a failed run is retried, not resumed"),
    (R.INTERRUPTED, RunCommand.RESUME, "an interrupted run is retried (Retry Flow)"),
    (R.COMPLETED, RunCommand.RETRY, "a completed run has no header action"),
    (R.REJECTED, RunCommand.RESUME, "a rejected run is final"),
    (R.RUNNING, RunCommand.APPROVE, "only a paused run is decided"),
    (R.PAUSED, RunCommand.COMPLETE, "a paused run has no header button; decide on the card"),
]


@pytest.mark.parametrize(("start", "command", "rule"), FORBIDDEN, ids=[r[2] for r in FORBIDDEN])
def test_forbidden_transitions_name_state_and_command(start: RunStatus, command: RunCommand, rule: str) -> None:
    with pytest.raises(InvalidTransition) as info:
        machine.run_transition(make_run(start), command)
    assert start.value in info.value.message and command.value in info.value.message


def paused_at_ship(mode: ExecutionMode = ExecutionMode.INTERACTIVE) -> Run:
    run, _ = machine.start(make_run(mode=mode))
    for i in (0, 1):
        run, _ = machine.begin_step(run, i)
        run, _ = machine.finish_step(run, i, StepResult(outcome=Outcome.SUCCESS, summary=f"step {i} done"))
    run, _ = machine.pause_at(run, 2, "Sign off")
    return run


def test_checkpoint_carries_message_and_previous_summary() -> None:
    run = paused_at_ship()
    assert run.status == R.PAUSED
    assert run.checkpoint is not None
    assert (run.checkpoint.step, run.checkpoint.message, run.checkpoint.previous_summary) == (2, "Sign off", "step 1 done")


def test_approve_records_comment_and_continues() -> None:
    run, events = machine.decide(paused_at_ship(), Decision(kind=DecisionKind.APPROVE, actor="ana", comment="ship it"))
    assert run.status == R.RUNNING and run.checkpoint is None
    assert run.steps[2].decision is not None and run.steps[2].decision.comment == "ship it"
    assert run.steps[2].status == StepStatus.PENDING  # approve runs the step next
    assert any(isinstance(e, DecisionRecorded) for e in events)


def test_reject_with_default_reason() -> None:
    run, events = machine.decide(paused_at_ship(), Decision(kind=DecisionKind.REJECT, actor="ana"))
    assert run.status == R.REJECTED
    assert run.error == machine.DEFAULT_REJECT_REASON
    status = [e for e in events if isinstance(e, RunStatusChanged)][-1]
    assert status.reason == machine.DEFAULT_REJECT_REASON


def test_reject_with_comment_records_it_as_the_reason() -> None:
    run, _ = machine.decide(paused_at_ship(), Decision(kind=DecisionKind.REJECT, actor="ana", comment="wrong track"))
    assert run.error == "wrong track"


def test_skip_marks_step_skipped_and_last_skip_leaves_nothing_to_run() -> None:
    run, events = machine.decide(paused_at_ship(), Decision(kind=DecisionKind.SKIP, actor="ana"))
    assert run.steps[2].status == StepStatus.SKIPPED
    assert machine.first_unfinished(run) is None  # the engine completes the run next
    run, _ = machine.complete(run)
    assert run.status == R.COMPLETED
    assert any(isinstance(e, StepStatusChanged) and e.status == StepStatus.SKIPPED for e in events)


def test_second_decision_is_already_decided_naming_the_first() -> None:
    run, _ = machine.decide(paused_at_ship(), Decision(kind=DecisionKind.APPROVE, actor="ana"))
    with pytest.raises(DecisionConflict) as info:
        machine.decide(run, Decision(kind=DecisionKind.REJECT, actor="bo"), step=2)
    assert info.value.code == "already_decided"
    assert "approve by ana" in info.value.message


def test_decision_for_another_step_is_stale() -> None:
    with pytest.raises(DecisionConflict) as info:
        machine.decide(paused_at_ship(), Decision(kind=DecisionKind.APPROVE, actor="ana"), step=1)
    assert info.value.code == "stale_checkpoint"


def test_decision_against_an_old_version_is_stale() -> None:
    run = paused_at_ship().model_copy(update={"version": 7})
    with pytest.raises(DecisionConflict) as info:
        machine.decide(run, Decision(kind=DecisionKind.APPROVE, actor="ana"), expected_version=6)
    assert info.value.code == "stale_checkpoint"


def test_decision_on_a_run_that_is_not_paused() -> None:
    with pytest.raises(InvalidTransition, match="running"):
        machine.decide(make_run(R.RUNNING), Decision(kind=DecisionKind.APPROVE, actor="ana"))


def test_background_auto_approve_is_written_down() -> None:
    run, _ = machine.start(make_run(mode=ExecutionMode.BACKGROUND))
    run, events = machine.auto_approve(run, 2)
    decision = run.steps[2].decision
    assert decision is not None and decision.auto and decision.kind == DecisionKind.APPROVE
    assert run.steps[2].auto_resolved and run.steps[2].auto_resolved[0].tool == "checkpoint"


def test_background_task_flips_to_review_when_paused() -> None:
    run = paused_at_ship(ExecutionMode.BACKGROUND)
    assert run.task is not None and run.task.state == TaskState.REVIEW
    run, events = machine.decide(run, Decision(kind=DecisionKind.APPROVE, actor="ana"))
    assert run.task is not None and run.task.state == TaskState.RUNNING
    assert any(isinstance(e, TaskChanged) for e in events)


def test_interactive_runs_have_no_task() -> None:
    assert make_run().task is None


def failed_at_build() -> Run:
    run, _ = machine.start(make_run())
    run, _ = machine.begin_step(run, 0)
    run, _ = machine.finish_step(run, 0, StepResult(outcome=Outcome.SUCCESS, summary="planned"))
    run, _ = machine.begin_step(run, 1)
    run, _ = machine.finish_step(run, 1, StepResult(outcome=Outcome.ERROR, summary="boom"))
    run, _ = machine.fail(run, "boom")
    return run


def test_retry_resets_the_failed_step_and_later_ones_and_keeps_earlier() -> None:
    run, _ = machine.retry(failed_at_build())
    assert run.status == R.RUNNING
    assert [s.status for s in run.steps] == [StepStatus.COMPLETED, StepStatus.PENDING, StepStatus.PENDING]
    assert run.steps[0].summary == "planned" and run.steps[1].summary == ""
    assert machine.first_unfinished(run) == 1


def test_retry_as_clone_links_both_ways() -> None:
    original, clone, _, _ = machine.clone_for_retry(failed_at_build(), "bo")
    assert original.retried_as == [clone.id] and clone.retry_of == original.id
    assert clone.steps[0].status == StepStatus.COMPLETED and clone.steps[1].status == StepStatus.PENDING
    assert clone.started_by == "bo" and clone.status == R.PENDING


def test_resume_blocked_continues_from_the_blocked_step() -> None:
    run, _ = machine.start(make_run())
    run, _ = machine.begin_step(run, 0)
    run, _ = machine.finish_step(run, 0, StepResult(outcome=Outcome.BLOCKED, summary="need a key"))
    run, _ = machine.block(run, Blocked(cause=BlockedCause.STEP_REPORTED_BLOCKED, message="need a key",
                                        fix="add it", step=0))
    assert run.status == R.BLOCKED and run.blocked is not None
    run, _ = machine.resume(run)
    assert run.status == R.RUNNING and run.blocked is None
    assert run.steps[0].status == StepStatus.PENDING


def test_cancel_paused_then_resume_asks_at_the_checkpoint_again() -> None:
    run, _ = machine.cancel(paused_at_ship(), "ana")
    assert run.status == R.CANCELLED and run.steps[2].status == StepStatus.CANCELLED
    run, _ = machine.resume(run)
    assert run.status == R.RUNNING and machine.first_unfinished(run) == 2
    assert run.steps[2].decision is None


def test_interrupt_keeps_completed_steps_and_retry_continues() -> None:
    run, _ = machine.start(make_run())
    run, _ = machine.begin_step(run, 0)
    run, _ = machine.interrupt(run)
    assert run.status == R.INTERRUPTED and run.steps[0].status == StepStatus.CANCELLED
    run, _ = machine.retry(run)
    assert machine.first_unfinished(run) == 0 and run.steps[0].status == StepStatus.PENDING


def test_step_transitions_are_guarded() -> None:
    run = make_run(R.RUNNING)
    with pytest.raises(InvalidTransition, match="pending"):
        machine.finish_step(run, 0, StepResult(outcome=Outcome.SUCCESS))


def test_partial_outcome_completes_the_step() -> None:
    run, _ = machine.start(make_run())
    run, _ = machine.begin_step(run, 0)
    run, _ = machine.finish_step(run, 0, StepResult(outcome=Outcome.PARTIAL, summary="no result"))
    assert run.steps[0].status == StepStatus.COMPLETED and run.steps[0].outcome == Outcome.PARTIAL
