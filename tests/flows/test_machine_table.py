"""Every cell of both state machines, against the product document.

Each table below is written out from the document, not derived from the code: one row per state,
naming what the document lets that state do (and the words that say so), and why everything else
is refused. Every (state, command) cell is then a test case: the allowed ones must land where the
document says, the forbidden ones must raise `InvalidTransition` naming the state and the command.
The cells are checked twice: at the gate (`run_transition`/`step_transition`) and through the
command functions the engine calls (`start`, `decide`, `cancel`, `retry`, ...).
"""

from __future__ import annotations

from collections.abc import Callable

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
)
from flowrun.flows.errors import InvalidTransition
from flowrun.flows.machine import RunCommand, StepCommand
from flowrun.flows.run import Blocked, Checkpoint, Decision, Run, StepResult
from flowrun.flows.template import FlowTemplate

R, S, C, SC = RunStatus, StepStatus, RunCommand, StepCommand

# -- the run machine ---------------------------------------------------------------------------

# state -> ({command: (new state, the document's words)}, why anything else is refused)
RUN_TABLE: dict[RunStatus, tuple[dict[RunCommand, tuple[RunStatus, str]], str]] = {
    R.PENDING: ({
        C.START: (R.RUNNING, "pending: queued, not yet started"),
        C.CANCEL: (R.CANCELLED, "a queued run can be called off before it starts (issue 8: it was offered cancel)"),
        C.INTERRUPT: (R.INTERRUPTED, "a restart before it started: interrupted, so a retry starts it"),
    }, "a pending run has not reached a step or a checkpoint yet"),
    R.RUNNING: ({
        C.PAUSE: (R.PAUSED, "the run pauses with status paused when a step the mode marks comes up"),
        C.COMPLETE: (R.COMPLETED, "completed: every step finished"),
        C.FAIL: (R.FAILED, "failed: a step failed and the run stopped"),
        C.BLOCK: (R.BLOCKED, "blocked: waiting on something outside the agent"),
        C.CANCEL: (R.CANCELLED, "Cancel stops a running or paused run"),
        C.INTERRUPT: (R.INTERRUPTED, "the platform was updated mid-run: interrupted by deploy, not failed"),
    }, "a running run is decided nowhere (only at a checkpoint), and is neither resumed nor retried"),
    R.PAUSED: ({
        C.APPROVE: (R.RUNNING, "Approve continues the run from that step"),
        C.SKIP: (R.RUNNING, "Skip marks the paused step skipped and advances to the next one"),
        C.REJECT: (R.REJECTED, "Reject stops the run; its status becomes rejected"),
        C.CANCEL: (R.CANCELLED, "Cancel stops a running or paused run"),
    }, "a paused run has no header button: you decide on the inline checkpoint card"),
    R.BLOCKED: ({
        C.RESUME: (R.RUNNING, "A blocked or cancelled run shows Resume"),
    }, "a blocked run is parked, not lost: only resume continues it"),
    R.CANCELLED: ({
        C.RESUME: (R.RUNNING, "A blocked or cancelled run shows Resume"),
    }, "a cancelled run stopped cleanly: only resume continues it"),
    R.FAILED: ({
        C.RETRY: (R.RUNNING, "A failed run shows Retry"),
    }, "a failed run ended badly: only retry re-runs it"),
    R.INTERRUPTED: ({
        C.RETRY: (R.RUNNING, "A run interrupted by deploy shows Retry Flow"),
    }, "an interrupted run is retried (Retry Flow), nothing else"),
    R.COMPLETED: ({}, "every step finished: a completed run has no action"),
    R.REJECTED: ({}, "a person rejected it: a rejected run is final"),
}

# the header actions the document offers per state (a paused run decides on its card)
OFFERED: dict[RunStatus, tuple[str, ...]] = {
    R.PENDING: ("cancel",), R.RUNNING: ("cancel",), R.PAUSED: ("approve", "reject", "skip", "cancel"),
    R.BLOCKED: ("resume",), R.CANCELLED: ("resume",), R.FAILED: ("retry",), R.INTERRUPTED: ("retry",),
    R.COMPLETED: (), R.REJECTED: (),
}
ACTION_COMMAND = {"approve": C.APPROVE, "reject": C.REJECT, "skip": C.SKIP, "cancel": C.CANCEL,
                  "resume": C.RESUME, "retry": C.RETRY}

RUN_CELLS = [(status, command) for status in RunStatus for command in RunCommand]

FLOW = FlowTemplate.model_validate({
    "id": "f", "name": "F",
    "steps": [{"name": "Plan", "skill": "s"}, {"name": "Build", "skill": "s"},
              {"name": "Ship", "skill": "s", "checkpoint": "Sign off"}],
})


def run_in(status: RunStatus) -> Run:
    """A run as it is when it is in `status` (a paused one waits at its checkpoint, ...)."""
    run = machine.create(Run(flow=FLOW, started_by="ana", sandbox_profile="local",
                             execution_mode=ExecutionMode.INTERACTIVE, checkpoint_mode=CheckpointMode.TEMPLATE))
    changes: dict[str, object] = {"status": status}
    if status == R.PAUSED:
        changes["checkpoint"] = Checkpoint(step=2, message="Sign off")
    if status == R.BLOCKED:
        changes["blocked"] = Blocked(cause=BlockedCause.STEP_REPORTED_BLOCKED, message="m", fix="f")
    return run.model_copy(update=changes)


def _decide(kind: DecisionKind) -> Callable[[Run], machine.Transition]:
    return lambda run: machine.decide(run, Decision(kind=kind, actor="ana"))


COMMAND_FUNCTIONS: dict[RunCommand, Callable[[Run], machine.Transition]] = {
    C.START: machine.start,
    C.PAUSE: lambda run: machine.pause_at(run, 2, "Sign off"),
    C.APPROVE: _decide(DecisionKind.APPROVE),
    C.SKIP: _decide(DecisionKind.SKIP),
    C.REJECT: _decide(DecisionKind.REJECT),
    C.COMPLETE: machine.complete,
    C.FAIL: lambda run: machine.fail(run, "a step failed"),
    C.BLOCK: lambda run: machine.block(run, Blocked(cause=BlockedCause.STEP_REPORTED_BLOCKED, message="m", fix="f")),
    C.CANCEL: lambda run: machine.cancel(run, "ana"),
    C.RESUME: machine.resume,
    C.RETRY: machine.retry,
    C.INTERRUPT: machine.interrupt,
}


def _cell_id(cell: tuple[object, object]) -> str:
    return f"{cell[0]}-{cell[1]}"


def test_the_table_covers_every_state() -> None:
    assert set(RUN_TABLE) == set(RunStatus) and set(OFFERED) == set(RunStatus)
    assert len(RUN_CELLS) == 108 and set(COMMAND_FUNCTIONS) == set(RunCommand)


@pytest.mark.parametrize(("status", "command"), RUN_CELLS, ids=[_cell_id(c) for c in RUN_CELLS])
def test_every_run_cell_at_the_gate(status: RunStatus, command: RunCommand) -> None:
    allowed, why_not = RUN_TABLE[status]
    if command in allowed:
        assert machine.run_transition(run_in(status), command) == allowed[command][0], allowed[command][1]
        return
    with pytest.raises(InvalidTransition) as info:
        machine.run_transition(run_in(status), command)
    assert status.value in info.value.message and command.value in info.value.message, why_not
    assert info.value.code == "invalid_transition"


@pytest.mark.parametrize(("status", "command"), RUN_CELLS, ids=[_cell_id(c) for c in RUN_CELLS])
def test_every_run_cell_through_its_command(status: RunStatus, command: RunCommand) -> None:
    allowed, why_not = RUN_TABLE[status]
    run = run_in(status)
    if command in allowed:
        new, events = COMMAND_FUNCTIONS[command](run)
        assert new.status == allowed[command][0], allowed[command][1]
        assert events, "a transition is written down as events"
        return
    with pytest.raises(InvalidTransition) as info:
        COMMAND_FUNCTIONS[command](run)
    assert status.value in info.value.message, why_not


@pytest.mark.parametrize("status", list(RunStatus))
def test_clone_for_retry_only_where_retry_is_allowed(status: RunStatus) -> None:
    allowed, _ = RUN_TABLE[status]
    if C.RETRY in allowed:
        original, clone, _, _ = machine.clone_for_retry(run_in(status), "bo")
        assert clone.retry_of == original.id and original.retried_as == [clone.id]
        return
    with pytest.raises(InvalidTransition):
        machine.clone_for_retry(run_in(status), "bo")


@pytest.mark.parametrize("status", list(RunStatus))
def test_the_actions_offered_are_the_documents_and_each_one_works(status: RunStatus) -> None:
    assert machine.ACTIONS[status] == OFFERED[status]
    allowed, _ = RUN_TABLE[status]
    for action in OFFERED[status]:
        assert ACTION_COMMAND[action] in allowed, f"{status} offers {action} but refuses it"


def test_a_cancelled_pending_run_resumes_from_its_first_step() -> None:
    run, _ = machine.cancel(run_in(R.PENDING), "ana")
    assert run.status == R.CANCELLED and all(s.status == S.PENDING for s in run.steps)
    resumed, _ = machine.resume(run)
    assert resumed.status == R.RUNNING and resumed.started_at is not None
    assert machine.first_unfinished(resumed) == 0


# -- the step machine --------------------------------------------------------------------------

STEP_TABLE: dict[StepStatus, tuple[dict[StepCommand, tuple[StepStatus, str]], str]] = {
    S.PENDING: ({
        SC.START: (S.RUNNING, "running: a step is executing"),
        SC.SKIP: (S.SKIPPED, "Skip marks the paused step skipped (and a false condition skips it)"),
        SC.CANCEL: (S.CANCELLED, "cancelling a run paused before this step cancels the step it waited at"),
        SC.RESET: (S.PENDING, "retry resets that step and the ones after it to a clean state"),
    }, "a pending step has not run: it cannot have finished, failed or blocked"),
    S.RUNNING: ({
        SC.COMPLETE: (S.COMPLETED, "a step that finishes (success, or partial without its output) completes"),
        SC.FAIL: (S.FAILED, "a step failed"),
        SC.BLOCK: (S.BLOCKED, "a step that reports itself blocked pauses the run for attention"),
        SC.CANCEL: (S.CANCELLED, "Cancel stops a running run: its running step is cancelled"),
        SC.RESET: (S.PENDING, "retry resets that step to a clean state"),
    }, "a running step is neither started again nor skipped"),
    S.COMPLETED: ({
        SC.RESET: (S.PENDING, "retry resets the steps after the pickup point to a clean state"),
    }, "neither resume nor retry repeats a completed step"),
    S.FAILED: ({
        SC.RESET: (S.PENDING, "Retry re-runs from the first step that has not completed, resetting it"),
    }, "a failed step runs again only through retry"),
    S.BLOCKED: ({
        SC.RESET: (S.PENDING, "a resume continues from the blocked step rather than starting over"),
    }, "a blocked step continues only through resume"),
    S.SKIPPED: ({
        SC.RESET: (S.PENDING, "retry resets the steps after the pickup point to a clean state"),
    }, "a skipped step is done with: resume and retry pick up after it"),
    S.CANCELLED: ({
        SC.RESET: (S.PENDING, "resume continues a cancelled run from the first step not completed"),
    }, "a cancelled step continues only through resume"),
}

STEP_CELLS = [(status, command) for status in StepStatus for command in StepCommand]


def run_with_step(status: StepStatus) -> Run:
    run = run_in(R.RUNNING)
    steps = list(run.steps)
    steps[0] = steps[0].model_copy(update={"status": status})
    return run.model_copy(update={"steps": steps})


def test_the_step_table_covers_every_state() -> None:
    assert set(STEP_TABLE) == set(StepStatus) and len(STEP_CELLS) == 49


@pytest.mark.parametrize(("status", "command"), STEP_CELLS, ids=[_cell_id(c) for c in STEP_CELLS])
def test_every_step_cell(status: StepStatus, command: StepCommand) -> None:
    allowed, why_not = STEP_TABLE[status]
    run = run_with_step(status)
    if command in allowed:
        assert machine.step_transition(run, 0, command) == allowed[command][0], allowed[command][1]
        return
    with pytest.raises(InvalidTransition) as info:
        machine.step_transition(run, 0, command)
    assert status.value in info.value.message and command.value in info.value.message, why_not
    assert "'Plan'" in info.value.message  # names the step


STEP_FUNCTIONS: dict[StepCommand, Callable[[Run], machine.Transition]] = {
    SC.START: lambda run: machine.begin_step(run, 0),
    SC.SKIP: lambda run: machine.skip_step(run, 0, "condition is false"),
    SC.COMPLETE: lambda run: machine.finish_step(run, 0, StepResult(outcome=Outcome.SUCCESS, summary="ok")),
    SC.FAIL: lambda run: machine.finish_step(run, 0, StepResult(outcome=Outcome.ERROR, summary="broke")),
    SC.BLOCK: lambda run: machine.finish_step(run, 0, StepResult(outcome=Outcome.BLOCKED, summary="needs a key")),
}
FUNCTION_CELLS = [(status, command) for status in StepStatus for command in STEP_FUNCTIONS]


@pytest.mark.parametrize(("status", "command"), FUNCTION_CELLS, ids=[_cell_id(c) for c in FUNCTION_CELLS])
def test_every_step_cell_through_its_command(status: StepStatus, command: StepCommand) -> None:
    allowed, why_not = STEP_TABLE[status]
    run = run_with_step(status)
    if command in allowed:
        new, _ = STEP_FUNCTIONS[command](run)
        assert new.steps[0].status == allowed[command][0], allowed[command][1]
        return
    with pytest.raises(InvalidTransition):
        STEP_FUNCTIONS[command](run)


def test_partial_completes_the_step_it_ran() -> None:
    run = run_with_step(S.RUNNING)
    new, _ = machine.finish_step(run, 0, StepResult(outcome=Outcome.PARTIAL, summary="no output"))
    assert new.steps[0].status == S.COMPLETED and new.steps[0].outcome == Outcome.PARTIAL
