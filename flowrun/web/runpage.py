"""What the run detail page shows, derived from the run row and its event log (pure).

The header offers the action that fits the status, as the product document has it: Resume for a
blocked or cancelled run, Retry for a failed one, Retry Flow for one interrupted by a deploy,
Cancel while it is running or paused (and pending: it is about to run). A paused run is decided
on the inline checkpoint card. Actions appear only for the scopes the viewer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..flows.enums import RunStatus, Scope, StepStatus
from ..flows.run import Artifact, Run, StepRun
from ..runtime.access import Actor
from .markdown import safe_link
from .transcript_view import Section

ARTIFACT_LABELS = {"initiative": "View Initiative", "plan": "View Plan", "pull_request": "View PR", "url": "Open link"}
BLOCKED_TITLES = {
    "credential_needed": "A credential is needed",
    "environment_unhealthy": "The environment has an open issue",
    "integration_unavailable": "An integration is unavailable",
    "step_reported_blocked": "A step reported itself blocked",
}


@dataclass(frozen=True)
class Action:
    name: str  # resume | retry | cancel (the API verb)
    label: str
    clone: bool = False
    style: str = "primary"


@dataclass
class ArtifactButton:
    label: str
    ref: str
    href: str | None  # only an http(s) link is ever a link


@dataclass
class StepCard:
    step: StepRun
    number: int
    checkpoint_message: str | None
    buttons: list[ArtifactButton] = field(default_factory=list)
    files: list[Artifact] = field(default_factory=list)
    running: bool = False
    waiting: bool = False  # the run is paused at this step's checkpoint


def header_actions(run: Run, actor: Actor) -> list[Action]:
    can_run = Scope.RUN in actor.scopes
    can_cancel = Scope.CANCEL_ANY in actor.scopes or (can_run and run.started_by == actor.id)
    status = run.status
    actions: list[Action] = []
    if status in (RunStatus.BLOCKED, RunStatus.CANCELLED) and can_run:
        actions.append(Action("resume", "Resume"))
    if status == RunStatus.FAILED and can_run:
        actions += [Action("retry", "Retry"), Action("retry", "Retry as a new run", clone=True, style="secondary")]
    if status == RunStatus.INTERRUPTED and can_run:
        actions += [Action("retry", "Retry Flow"),
                    Action("retry", "Retry as a new run", clone=True, style="secondary")]
    if status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED) and can_cancel:
        actions.append(Action("cancel", "Cancel", style="danger"))
    return actions


def artifact_buttons(artifacts: Sequence[Artifact]) -> tuple[list[ArtifactButton], list[Artifact]]:
    buttons, files = [], []
    for artifact in artifacts:
        if artifact.kind == "file":
            files.append(artifact)
            continue
        label = ARTIFACT_LABELS.get(artifact.kind, "View")
        buttons.append(ArtifactButton(label, artifact.ref, artifact.ref if safe_link(artifact.ref) else None))
    return buttons, files


def step_cards(run: Run) -> list[StepCard]:
    cards = []
    for step in run.steps:
        spec = run.flow.steps[step.index] if step.index < len(run.flow.steps) else None
        buttons, files = artifact_buttons(step.artifacts)
        waiting = run.status == RunStatus.PAUSED and run.checkpoint is not None and run.checkpoint.step == step.index
        cards.append(StepCard(step=step, number=step.index + 1,
                              checkpoint_message=spec.checkpoint.message if spec and spec.checkpoint else None,
                              buttons=buttons, files=files, running=step.status == StepStatus.RUNNING,
                              waiting=waiting))
    return cards


def previous_artifacts(run: Run) -> list[ArtifactButton]:
    """The completed step's artifacts, for the checkpoint dialog (files included, as paths)."""
    if run.checkpoint is None:
        return []
    done = [s for s in run.steps[: run.checkpoint.step] if s.status == StepStatus.COMPLETED]
    if not done:
        return []
    out = []
    for artifact in done[-1].artifacts:
        label = ARTIFACT_LABELS.get(artifact.kind, artifact.label or artifact.ref)
        out.append(ArtifactButton(label, artifact.ref, artifact.ref if safe_link(artifact.ref) else None))
    return out


def param_preview(params: dict[str, Any], limit: int = 3) -> list[tuple[str, Any]]:
    return list(params.items())[:limit]


def run_duration(run: Run) -> float | None:
    if run.started_at is None:
        return None
    from ..flows.run import now

    return ((run.finished_at or now()) - run.started_at).total_seconds()


def page_context(run: Run, sections: list[Section], actor: Actor) -> dict[str, Any]:
    """What the run page's templates need: the run row and its transcript folded into sections
    (`runfolds.RunFolds` keeps them up to date)."""
    return {
        "run": run, "actor": actor, "actions": header_actions(run, actor), "cards": step_cards(run),
        "sections": sections, "can_decide": Scope.RUN in actor.scopes, "duration_s": run_duration(run),
        "blocked_title": BLOCKED_TITLES.get(run.blocked.cause.value, "Blocked") if run.blocked else "",
        "params_preview": param_preview(run.params), "running": run.status == RunStatus.RUNNING,
        "seq": run.last_seq,
    }


def progress_view(run: Run, actor: Actor) -> dict[str, Any]:
    """What the Flow progress overlay shows, as plain JSON."""
    checkpoint = None
    if run.status == RunStatus.PAUSED and run.checkpoint is not None:
        cp = run.checkpoint
        checkpoint = {
            "key": f"{cp.step}:{cp.reached_at.isoformat()}", "step": cp.step, "step_name": run.steps[cp.step].name,
            "message": cp.message, "previous_summary": cp.previous_summary,
            "artifacts": [{"label": b.label, "ref": b.ref, "href": b.href} for b in previous_artifacts(run)],
        }
    decided = [s for s in run.steps if s.decision is not None]
    last = max(decided, key=lambda s: s.decision.at if s.decision else 0) if decided else None
    decision = None
    if last is not None and last.decision is not None:
        d = last.decision
        decision = {"step": last.index, "step_name": last.name, "kind": d.kind.value, "actor": d.actor,
                    "comment": d.comment, "auto": d.auto, "at": d.at.isoformat()}
    return {
        "run_id": run.id, "flow_name": run.flow.name, "status": run.status.value, "seq": run.last_seq,
        "version": run.version, "can_decide": Scope.RUN in actor.scopes, "retried_as": run.retried_as,
        "steps": [{"index": s.index, "name": s.name, "skill": s.skill, "status": s.status.value,
                   "turns": s.usage.turns} for s in run.steps],
        "checkpoint": checkpoint, "decision": decision, "error": run.error,
    }
