"""The run and step state machines, as pure functions.

Each command is `(run, ...) -> (new run, events)` or a typed error naming the state and the
command. No I/O here: the engine commits the new run and its events in one transaction.
The transition tables are the rules of the product document, one row each.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from .enums import DecisionKind, ExecutionMode, Outcome, RunStatus, StepStatus, TaskState
from .errors import DecisionConflict, InvalidTransition
from .events import (
    CheckpointReached,
    DecisionRecorded,
    EventData,
    RetryLinked,
    RunStatusChanged,
    SandboxChanged,
    StepStatusChanged,
    TaskChanged,
    UsageChanged,
)
from .run import (
    BackgroundTask,
    Blocked,
    Checkpoint,
    Decision,
    ResolvedCall,
    Run,
    SandboxLink,
    StepResult,
    StepRun,
    Usage,
    new_id,
    now,
)


class RunCommand(StrEnum):
    START = "start"
    PAUSE = "pause"
    APPROVE = "approve"
    SKIP = "skip"
    REJECT = "reject"
    COMPLETE = "complete"
    FAIL = "fail"
    BLOCK = "block"
    CANCEL = "cancel"
    RESUME = "resume"
    RETRY = "retry"
    INTERRUPT = "interrupt"


class StepCommand(StrEnum):
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"
    BLOCK = "block"
    CANCEL = "cancel"
    SKIP = "skip"
    RESET = "reset"


R, S = RunStatus, StepStatus

RUN_TRANSITIONS: dict[tuple[RunStatus, RunCommand], RunStatus] = {
    (R.PENDING, RunCommand.START): R.RUNNING,
    (R.PENDING, RunCommand.CANCEL): R.CANCELLED,  # a queued run that has not started can be called off
    (R.RUNNING, RunCommand.PAUSE): R.PAUSED,  # a checkpoint is reached before its step runs
    (R.PAUSED, RunCommand.APPROVE): R.RUNNING,  # approve runs that step
    (R.PAUSED, RunCommand.SKIP): R.RUNNING,  # skip marks the step skipped and advances
    (R.PAUSED, RunCommand.REJECT): R.REJECTED,  # reject stops the run
    (R.RUNNING, RunCommand.COMPLETE): R.COMPLETED,  # every step finished
    (R.RUNNING, RunCommand.FAIL): R.FAILED,  # a step failed and the run stopped
    (R.RUNNING, RunCommand.BLOCK): R.BLOCKED,  # waiting on something outside the agent
    (R.RUNNING, RunCommand.CANCEL): R.CANCELLED,  # cancel: only while running ...
    (R.PAUSED, RunCommand.CANCEL): R.CANCELLED,  # ... or paused
    (R.BLOCKED, RunCommand.RESUME): R.RUNNING,  # a blocked run shows Resume
    (R.CANCELLED, RunCommand.RESUME): R.RUNNING,  # a cancelled run shows Resume
    (R.FAILED, RunCommand.RETRY): R.RUNNING,  # a failed run shows Retry
    (R.INTERRUPTED, RunCommand.RETRY): R.RUNNING,  # an interrupted run shows Retry Flow
    (R.RUNNING, RunCommand.INTERRUPT): R.INTERRUPTED,  # a restart mid-run: interrupted, not failed
    (R.PENDING, RunCommand.INTERRUPT): R.INTERRUPTED,
}

STEP_TRANSITIONS: dict[tuple[StepStatus, StepCommand], StepStatus] = {
    (S.PENDING, StepCommand.START): S.RUNNING,
    (S.RUNNING, StepCommand.COMPLETE): S.COMPLETED,
    (S.RUNNING, StepCommand.FAIL): S.FAILED,
    (S.RUNNING, StepCommand.BLOCK): S.BLOCKED,
    (S.RUNNING, StepCommand.CANCEL): S.CANCELLED,
    (S.PENDING, StepCommand.CANCEL): S.CANCELLED,
    (S.PENDING, StepCommand.SKIP): S.SKIPPED,
    **{(status, StepCommand.RESET): S.PENDING for status in StepStatus},
}

ACTIONS: dict[RunStatus, tuple[str, ...]] = {
    # the header actions the document offers per status (a paused run decides on the card)
    R.PENDING: ("cancel",),
    R.RUNNING: ("cancel",),
    R.PAUSED: ("approve", "reject", "skip", "cancel"),
    R.BLOCKED: ("resume",),
    R.CANCELLED: ("resume",),
    R.FAILED: ("retry",),
    R.INTERRUPTED: ("retry",),
    R.COMPLETED: (),
    R.REJECTED: (),
}

DEFAULT_REJECT_REASON = "Rejected at the checkpoint."

Transition = tuple[Run, list[EventData]]


def run_transition(run: Run, command: RunCommand) -> RunStatus:
    try:
        return RUN_TRANSITIONS[(run.status, command)]
    except KeyError:
        allowed = ", ".join(ACTIONS[run.status]) or "nothing"
        raise InvalidTransition(
            f"run {run.id}", run.status.value, command.value, hint=f"a {run.status.value} run allows: {allowed}",
            run_id=run.id,
        ) from None


def step_transition(run: Run, index: int, command: StepCommand) -> StepStatus:
    step = run.steps[index]
    try:
        return STEP_TRANSITIONS[(step.status, command)]
    except KeyError:
        raise InvalidTransition(
            f"step {step.name!r} of run {run.id}", step.status.value, command.value, run_id=run.id, step=index
        ) from None


# -- helpers -------------------------------------------------------------------------------------


def _task_state(status: RunStatus) -> TaskState:
    if status in (R.PENDING, R.RUNNING):
        return TaskState.RUNNING
    if status in (R.PAUSED, R.BLOCKED):
        return TaskState.REVIEW
    if status == R.COMPLETED:
        return TaskState.DONE
    return TaskState.STOPPED


def _set_status(run: Run, command: RunCommand, events: list[EventData], reason: str = "", **changes: Any) -> Run:
    status = run_transition(run, command)
    changes["status"] = status
    if status.finished and status not in (R.PAUSED, R.BLOCKED):
        changes.setdefault("finished_at", now())
    elif status == R.RUNNING:
        changes.setdefault("finished_at", None)
    new = run.model_copy(update=changes)
    events.append(RunStatusChanged(status=status, previous=run.status, reason=reason, blocked=new.blocked))
    if new.task is not None:
        state = _task_state(status)
        if state != new.task.state:
            new = new.model_copy(update={"task": new.task.model_copy(update={"state": state})})
            events.append(
                TaskChanged(task_id=new.task.id, state=state, turns=new.usage.turns, cost_usd=new.usage.cost_usd)  # type: ignore[union-attr]
            )
    return new


def _set_step(run: Run, index: int, command: StepCommand | None, events: list[EventData], reason: str = "",
              result: StepResult | None = None, **changes: Any) -> Run:
    step = run.steps[index]
    if command is not None:
        status = step_transition(run, index, command)
        changes["status"] = status
        events.append(StepStatusChanged(step=index, status=status, previous=step.status, reason=reason, result=result))
    steps = list(run.steps)
    steps[index] = step.model_copy(update=changes)
    return run.model_copy(update={"steps": steps})


def last_decided(run: Run) -> int | None:
    """The step of the run's latest checkpoint decision (a second decision names it), if any."""
    decided = [s for s in run.steps if s.decision is not None]
    if not decided:
        return None
    return max(decided, key=lambda s: (s.decision.at, s.index)).index  # type: ignore[union-attr]


def first_unfinished(run: Run) -> int | None:
    """The first step not completed or skipped: where resume and retry pick up."""
    for step in run.steps:
        if step.status not in (S.COMPLETED, S.SKIPPED):
            return step.index
    return None


# -- commands ------------------------------------------------------------------------------------


def create(run: Run) -> Run:
    """A fresh run's steps from its frozen template, and its background task if it has one."""
    steps = [StepRun(index=i, name=s.name, skill=s.skill) for i, s in enumerate(run.flow.steps)]
    task = BackgroundTask(id=new_id("task")) if run.execution_mode == ExecutionMode.BACKGROUND else None
    return run.model_copy(update={"steps": steps, "task": task})


def start(run: Run) -> Transition:
    events: list[EventData] = []
    run = _set_status(run, RunCommand.START, events, started_at=now())
    return run, events


def begin_step(run: Run, index: int) -> Transition:
    events: list[EventData] = []
    step = run.steps[index]
    run = _set_step(run, index, StepCommand.START, events, started_at=now(), finished_at=None,
                    error=None, attempt=step.attempt + 1)
    return run, events


def skip_step(run: Run, index: int, reason: str) -> Transition:
    events: list[EventData] = []
    run = _set_step(run, index, StepCommand.SKIP, events, reason=reason, finished_at=now())
    return run, events


def record_usage(run: Run, index: int | None, delta: Usage) -> Transition:
    """Add a turn's (or a sub-agent's) usage to a step and roll it up onto the run and task."""
    events: list[EventData] = []
    if index is not None:
        run = _set_step(run, index, None, events, usage=run.steps[index].usage + delta)
    run = run.model_copy(update={"usage": run.usage + delta})
    step_usage = run.steps[index].usage if index is not None else Usage()
    events.append(UsageChanged(step=index, step_usage=step_usage, run_usage=run.usage))
    if run.task is not None:
        events.append(TaskChanged(task_id=run.task.id, state=run.task.state, turns=run.usage.turns,
                                  cost_usd=run.usage.cost_usd))
    return run, events


def finish_step(run: Run, index: int, result: StepResult, *, error: str | None = None) -> Transition:
    """Record a step's result. `success`/`partial` complete it, `blocked` blocks it and `error`
    fails it; the run itself moves on in the engine (`complete`, `fail`, `block`)."""
    events: list[EventData] = []
    command = {
        Outcome.SUCCESS: StepCommand.COMPLETE,
        Outcome.PARTIAL: StepCommand.COMPLETE,
        Outcome.BLOCKED: StepCommand.BLOCK,
        Outcome.ERROR: StepCommand.FAIL,
    }[result.outcome]
    run = _set_step(run, index, command, events, result=result, outcome=result.outcome, summary=result.summary,
                    artifacts=result.artifacts, output=result.output, error=error, finished_at=now())
    for artifact in result.artifacts:
        if artifact.kind == "pull_request":
            run = run.model_copy(update={"links": run.links.model_copy(update={"pull_request": artifact.ref})})
    return run, events


def complete(run: Run) -> Transition:
    events: list[EventData] = []
    run = _set_status(run, RunCommand.COMPLETE, events, checkpoint=None)
    return run, events


def fail(run: Run, reason: str) -> Transition:
    events: list[EventData] = []
    run = _set_status(run, RunCommand.FAIL, events, reason=reason, error=reason)
    return run, events


def block(run: Run, blocked: Blocked) -> Transition:
    events: list[EventData] = []
    run = run.model_copy(update={"blocked": blocked})
    if blocked.step is not None and run.steps[blocked.step].status == S.RUNNING:
        run = _set_step(run, blocked.step, StepCommand.BLOCK, events, reason=blocked.message, finished_at=now(),
                        error=blocked.message)
    run = _set_status(run, RunCommand.BLOCK, events, reason=blocked.message)
    return run, events


def pause_at(run: Run, index: int, message: str) -> Transition:
    """Park the run before step `index` runs; the previous step's summary gives the context."""
    previous = next((s.summary for s in reversed(run.steps[:index]) if s.status == S.COMPLETED), "")
    checkpoint = Checkpoint(step=index, message=message, previous_summary=previous)
    events: list[EventData] = []
    run = _set_status(run, RunCommand.PAUSE, events, reason=message, checkpoint=checkpoint)
    events.append(CheckpointReached(checkpoint=checkpoint))
    return run, events


def auto_approve(run: Run, index: int) -> Transition:
    """Background mode, a step marked auto-approve: continue, and write down that nobody decided."""
    spec = run.flow.steps[index].checkpoint
    decision = Decision(kind=DecisionKind.APPROVE, actor="flowrun", comment="Auto-approved in background mode.", auto=True)
    events: list[EventData] = [DecisionRecorded(step=index, decision=decision)]
    note = ResolvedCall(tool="checkpoint", detail=f"auto-approved: {spec.message if spec else ''}")
    run = _set_step(run, index, None, events, decision=decision, auto_resolved=[*run.steps[index].auto_resolved, note])
    return run, events


def decide(run: Run, decision: Decision, *, step: int | None = None, expected_version: int | None = None) -> Transition:
    """Apply a person's decision at the checkpoint, compare-and-set.

    Raises:
        DecisionConflict: `already_decided` (naming the first decision) or `stale_checkpoint`.
        InvalidTransition: the run is not paused and nothing was decided there.
    """
    target = step if step is not None else (run.checkpoint.step if run.checkpoint else last_decided(run))
    if target is not None and 0 <= target < len(run.steps):
        first = run.steps[target].decision
        if first is not None and (run.checkpoint is None or run.checkpoint.step != target):
            who = "automatically" if first.auto else f"by {first.actor}"
            raise DecisionConflict(
                f"the checkpoint at step {run.steps[target].name!r} of run {run.id} was already decided: "
                f"{first.kind.value} {who} at {first.at.isoformat(timespec='seconds')}",
                code="already_decided", run_id=run.id, step=target, decision=first.model_dump(mode="json"),
            )
    if run.status != R.PAUSED or run.checkpoint is None:
        raise InvalidTransition(f"run {run.id}", run.status.value, "decide a checkpoint on",
                                hint="only a paused run waits for a decision", run_id=run.id)
    if step is not None and step != run.checkpoint.step:
        raise DecisionConflict(
            f"stale checkpoint: run {run.id} waits at step {run.checkpoint.step} "
            f"({run.steps[run.checkpoint.step].name!r}), not step {step}",
            code="stale_checkpoint", run_id=run.id, step=run.checkpoint.step,
        )
    if expected_version is not None and expected_version != run.version:
        raise DecisionConflict(
            f"stale checkpoint: run {run.id} changed since you saw it (version {expected_version}, now {run.version}); "
            "reload it and decide again",
            code="stale_checkpoint", run_id=run.id, step=run.checkpoint.step, version=run.version,
        )
    index = run.checkpoint.step
    events: list[EventData] = [DecisionRecorded(step=index, decision=decision)]
    if decision.auto:  # written on the step, like a background auto-approval
        note = ResolvedCall(tool="checkpoint", detail=f"auto-{decision.kind.value}: {decision.comment}")
        run = _set_step(run, index, None, events, decision=decision,
                        auto_resolved=[*run.steps[index].auto_resolved, note])
    else:
        run = _set_step(run, index, None, events, decision=decision)
    if decision.kind == DecisionKind.APPROVE:
        run = _set_status(run, RunCommand.APPROVE, events, reason=decision.comment, checkpoint=None)
    elif decision.kind == DecisionKind.SKIP:
        run = _set_status(run, RunCommand.SKIP, events, reason=decision.comment, checkpoint=None)
        run = _set_step(run, index, StepCommand.SKIP, events, reason=decision.comment or "Skipped at the checkpoint.",
                        finished_at=now())
    else:
        reason = decision.comment or DEFAULT_REJECT_REASON
        run = _set_status(run, RunCommand.REJECT, events, reason=reason, checkpoint=None, error=reason)
    return run, events


def cancel(run: Run, actor: str) -> Transition:
    events: list[EventData] = []
    reason = f"Cancelled by {actor}."
    for step in run.steps:
        if step.status == S.RUNNING:
            run = _set_step(run, step.index, StepCommand.CANCEL, events, reason=reason, finished_at=now())
    if run.checkpoint is not None:
        run = _set_step(run, run.checkpoint.step, StepCommand.CANCEL, events, reason=reason, finished_at=now())
    run = _set_status(run, RunCommand.CANCEL, events, reason=reason, checkpoint=None)
    return run, events


def resume(run: Run) -> Transition:
    """Blocked or cancelled: continue from the first step not completed or skipped. A decision
    already made on that step stands; the prior transcript stays."""
    events: list[EventData] = []
    index = first_unfinished(run)
    if run.status not in (R.BLOCKED, R.CANCELLED):
        run_transition(run, RunCommand.RESUME)
    if index is not None and run.steps[index].status != S.PENDING:
        run = _set_step(run, index, StepCommand.RESET, events, reason="resumed", finished_at=None, error=None)
    run = _set_status(run, RunCommand.RESUME, events, reason="resumed", blocked=None, error=None,
                      started_at=run.started_at or now())
    return run, events


def retry(run: Run) -> Transition:
    """Failed or interrupted: reset the first unfinished step and the ones after it to a clean
    state, then continue. Completed and skipped steps before it are kept, and so is an approval
    already given for the step it picks up at: that sign-off still stands (the step is retried,
    not changed), so nobody is asked again."""
    events: list[EventData] = []
    run_transition(run, RunCommand.RETRY)
    index = first_unfinished(run)
    if index is not None:
        for i in range(index, len(run.steps)):
            step = run.steps[i]
            stands = step.decision if i == index and _approved(step.decision) else None
            if step.status != S.PENDING or step.decision is not stands or step.outcome is not None:
                run = _set_step(run, i, StepCommand.RESET, events, reason="retry", outcome=None, summary="",
                                artifacts=[], output={}, error=None, started_at=None, finished_at=None,
                                decision=stands, auto_resolved=[])
    run = _set_status(run, RunCommand.RETRY, events, reason="retry", blocked=None, error=None)
    return run, events


def _approved(decision: Decision | None) -> bool:
    return decision is not None and decision.kind == DecisionKind.APPROVE


def clone_for_retry(run: Run, actor: str) -> tuple[Run, Run, list[EventData], list[EventData]]:
    """Retry as a fresh run linked both ways by the retry chain. The clone keeps the completed
    and skipped steps before the pickup point (their results are what later steps read) and
    starts pending from there."""
    run_transition(run, RunCommand.RETRY)
    index = first_unfinished(run)
    clone = Run(
        workspace=run.workspace, flow=run.flow, params=run.params, started_by=actor, launch=run.launch,
        sandbox_profile=run.sandbox_profile, execution_mode=run.execution_mode,
        checkpoint_mode=run.checkpoint_mode, links=run.links.model_copy(update={"sandbox": None}),
        retry_of=run.id,
    )
    clone = create(clone)
    if index is not None:
        kept = [s.model_copy() for s in run.steps[:index]]
        clone = clone.model_copy(update={"steps": kept + clone.steps[index:]})
    original = run.model_copy(update={"retried_as": [*run.retried_as, clone.id]})
    return original, clone, [RetryLinked(retried_as=clone.id)], [RetryLinked(retry_of=run.id)]


def interrupt(run: Run, reason: str = "The platform restarted while the run was in flight.") -> Transition:
    events: list[EventData] = []
    for step in run.steps:
        if step.status == S.RUNNING:
            run = _set_step(run, step.index, StepCommand.CANCEL, events, reason="interrupted by a restart",
                            finished_at=now(), error="Interrupted by a restart; retry continues from here.")
    run = _set_status(run, RunCommand.INTERRUPT, events, reason=reason, error=reason)
    return run, events


def link_sandbox(run: Run, link: SandboxLink | None) -> Transition:
    run = run.model_copy(update={"links": run.links.model_copy(update={"sandbox": link})})
    return run, ([SandboxChanged(sandbox=link)] if link is not None else [])
