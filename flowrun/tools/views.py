"""Domain objects turned into the views the tools return.

Pure functions over `Run`, `Event` and `FlowTemplate`; no engine, no I/O. The hint and the next
actions are derived from the run's state here, once, so every tool answers the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..flows.enums import LaunchKind, RunStatus, TranscriptKind
from ..flows.events import Event, TranscriptEntry
from ..flows.machine import ACTIONS
from ..flows.run import Run, StepRun
from ..flows.template import FlowTemplate
from ..runtime.access import Actor
from .models import (
    ArtifactView,
    BlockedView,
    CheckpointView,
    DecisionView,
    FlowStepView,
    FlowView,
    NextTool,
    ParameterView,
    RunView,
    StepView,
    TranscriptLine,
)

TEXT_LIMIT = 2000
_ACTION_TOOLS: dict[str, NextTool] = {
    "approve": "decide_checkpoint", "reject": "decide_checkpoint", "skip": "decide_checkpoint",
    "cancel": "cancel_run", "resume": "resume_run", "retry": "retry_run",
}


def run_url(public_url: str, run_id: str) -> str:
    return f"{public_url.rstrip('/')}/runs/{run_id}"


def record_url(public_url: str, record_id: str) -> str:
    return f"{public_url.rstrip('/')}/records/{record_id}"


def run_view(run: Run, public_url: str | None, transcript: list[TranscriptLine] | None = None,
             actor: Actor | None = None) -> RunView:
    """The run as an assistant sees it; with `actor`, `next_actions` offers only what they may do.
    `public_url` is where the run pages are served (None: nowhere known, so no `url`)."""
    checkpoint = None
    if run.checkpoint is not None:
        cp = run.checkpoint
        checkpoint = CheckpointView(step_index=cp.step, step=run.steps[cp.step].name, message=cp.message,
                                    previous_summary=cp.previous_summary, reached_at=cp.reached_at)
    blocked = None
    if run.blocked is not None:
        blocked = BlockedView(cause=run.blocked.cause.value, message=run.blocked.message, fix=run.blocked.fix)
    return RunView(
        id=run.id, flow=run.flow.id, flow_name=run.flow.name, status=run.status,
        url=run_url(public_url, run.id) if public_url else None,
        hint=hint(run, actor), next_actions=next_actions(run, actor), started_by=run.started_by, params=run.params,
        execution_mode=run.execution_mode, checkpoint_mode=run.checkpoint_mode, sandbox_profile=run.sandbox_profile,
        steps=[_step_view(run, step) for step in run.steps], checkpoint=checkpoint, blocked=blocked, error=run.error,
        pull_request=run.links.pull_request, launch=run.launch.kind, launch_ref=run.launch.ref,
        plan=run.links.plan, initiative=run.links.initiative,
        record_url=record_url(public_url, run.launch.ref) if public_url and run.launch.ref
        and run.launch.kind == LaunchKind.RECORD else None, retry_of=run.retry_of, retried_as=run.retried_as,
        turns=run.usage.turns, cost_usd=run.usage.cost_usd, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, duration_s=_round(run.duration_s), version=run.version, last_seq=run.last_seq, transcript=transcript,
    )


def _round(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


def _step_view(run: Run, step: StepRun) -> StepView:
    spec = run.flow.steps[step.index]
    decision = None
    if step.decision is not None:
        d = step.decision
        decision = DecisionView(kind=d.kind, actor=d.actor, comment=d.comment, auto=d.auto, at=d.at)
    elapsed = step.elapsed_s
    return StepView(
        index=step.index, name=step.name, skill=step.skill, status=step.status, outcome=step.outcome,
        summary=step.summary, error=step.error,
        checkpoint_message=spec.checkpoint.message if spec.checkpoint else None, decision=decision,
        artifacts=[ArtifactView(kind=a.kind, ref=a.ref, label=a.label) for a in step.artifacts],
        turns=step.usage.turns, cost_usd=step.usage.cost_usd,
        elapsed_s=round(elapsed, 3) if elapsed is not None else None,
    )


def next_actions(run: Run, actor: Actor | None = None) -> list[NextTool]:
    tools: list[NextTool] = ["wait_for_run"] if run.status in (RunStatus.PENDING, RunStatus.RUNNING) else []
    for action in ACTIONS[run.status]:
        if actor is not None and not actor.may(action, run):
            continue
        tool = _ACTION_TOOLS[action]
        if tool not in tools:
            tools.append(tool)
    return tools


def hint(run: Run, actor: Actor | None = None) -> str:
    """One line an assistant can act on (and relay) without reading the whole view; with `actor`,
    it never points at a tool they may not call."""
    n = len(run.steps)
    status = run.status
    if status in (RunStatus.PENDING, RunStatus.RUNNING):
        current = run.current_step
        where = f"step {current.index + 1}/{n} '{current.name}'" if current else "its next step"
        return (f"Running {where}. Call wait_for_run(until='paused') to follow it: it returns when the run "
                "needs a person or ends.")
    if status == RunStatus.PAUSED and run.checkpoint is not None:
        cp = run.checkpoint
        waiting = f"Waiting for sign-off before step {cp.step + 1}/{n} '{run.steps[cp.step].name}': {cp.message} "
        if actor is not None and not actor.may("approve", run):
            return waiting + "Deciding it needs the flows.run scope; wait_for_run follows the run meanwhile."
        return waiting + "Ask the person, then call decide_checkpoint with decision approve, reject or skip."
    if status == RunStatus.COMPLETED:
        pr = f" Pull request: {run.links.pull_request}." if run.links.pull_request else ""
        return f"Completed all {n} steps.{pr}"
    if status == RunStatus.FAILED:
        return f"Failed: {run.error or 'a step failed'}. retry_run continues from the failed step."
    if status == RunStatus.REJECTED:
        return f"Rejected at the checkpoint ({run.error or 'no reason given'}). A rejected run is final."
    if status == RunStatus.CANCELLED:
        return "Cancelled. resume_run continues from the first step that did not complete."
    if status == RunStatus.BLOCKED and run.blocked is not None:
        return f"Blocked ({run.blocked.cause.value}): {run.blocked.message} Fix: {run.blocked.fix} Then call resume_run."
    if status == RunStatus.INTERRUPTED:
        return "Interrupted by a restart. retry_run continues from the first step that did not complete."
    return f"The run is {status.value}."


def transcript_lines(events: Iterable[Event], *, tail: int | None = None, limit: int = TEXT_LIMIT) -> list[TranscriptLine]:
    """Transcript entries as readable lines: streamed pieces joined, shell output deltas dropped
    (the tool's end entry carries the whole output), long texts cut."""
    rows: list[dict[str, Any]] = []
    last_stream: tuple[Any, ...] | None = None
    for event in events:
        entry = event.data
        if not isinstance(entry, TranscriptEntry) or entry.kind == TranscriptKind.TOOL_DELTA:
            continue
        key = (entry.stream, entry.kind, entry.step, entry.subagent)
        if entry.stream is not None and key == last_stream:
            rows[-1]["text"] += entry.text
            continue
        last_stream = key if entry.stream is not None else None
        rows.append({"seq": event.seq, "kind": entry.kind, "step": entry.step, "text": _entry_text(entry),
                     "tool": entry.tool, "subagent": entry.subagent, "is_error": entry.is_error})
    if tail is not None:
        rows = rows[-tail:] if tail > 0 else []
    return [TranscriptLine(**{**row, "text": _cut(row["text"], limit)}) for row in rows]


def _entry_text(entry: TranscriptEntry) -> str:
    if entry.kind != TranscriptKind.TOOL_START:
        return entry.text
    given = entry.data.get("input")
    args = given if isinstance(given, dict) else {}
    for key in ("command", "path", "url", "query", "pattern"):
        if key in args:
            return f"{entry.tool} {str(args[key]).strip()}"
    return entry.tool or entry.text


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def transcript_markdown(run: Run, lines: Sequence[TranscriptLine]) -> str:
    """The whole transcript as plain Markdown, for the `run://{id}/transcript` resource."""
    out = [f"# {run.flow.name} — {run.id} ({run.status.value})", ""]
    step: int | None = -1
    for line in lines:
        if line.step != step:
            step = line.step
            title = "Setup" if step is None else f"Step {step + 1}: {run.steps[step].name}"
            out += ["", f"## {title}", ""]
        who = f"[{line.subagent}] " if line.subagent else ""
        prefix = {TranscriptKind.THINKING: "_thinking:_ ", TranscriptKind.TOOL_START: "▸ ",
                  TranscriptKind.TOOL_END: "  ⮑ ", TranscriptKind.ERROR: "**error:** ",
                  TranscriptKind.SETUP: "⚙ "}.get(line.kind, "")
        text = line.text.rstrip()
        if line.kind == TranscriptKind.TOOL_END and "\n" in text:
            out.append(f"{who}{prefix}{line.tool or 'result'}{' (error)' if line.is_error else ''}:")
            out += ["```", text.replace("```", "ʼʼʼ"), "```"]
        else:
            out.append(f"{who}{prefix}{text}")
    return "\n".join(out).strip() + "\n"


def flow_view(flow: FlowTemplate) -> FlowView:
    return FlowView(
        id=flow.id, name=flow.name, description=flow.description,
        parameters=[ParameterView(name=p.name, type=p.type, required=p.required, default=p.default,
                                  description=p.description, choices=p.choices) for p in flow.parameters],
        steps=[FlowStepView(name=s.name, skill=s.skill, checkpoint_message=s.checkpoint.message if s.checkpoint else None)
               for s in flow.steps],
        default_sandbox_profile=flow.defaults.sandbox_profile,
        default_execution_mode=flow.defaults.execution_mode,
        default_checkpoint_mode=flow.defaults.checkpoint_mode,
    )
