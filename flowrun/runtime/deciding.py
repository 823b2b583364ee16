"""A decision sent again under the same `decision_id`: the first answer stands, and says so.

A client repeats a `decision_id` when it is not sure its first call arrived. Repeating the same
decision returns the run as the first call left it (idempotent). A *different* decision under the
same id is not applied, and the caller is told which one stands, rather than hearing that its
second decision was recorded.
"""

from __future__ import annotations

from ..flows.enums import DecisionKind
from ..flows.errors import DecisionConflict
from ..flows.run import Run
from ..storage.base import DecisionRow


def same_decision(first: DecisionRow, kind: DecisionKind) -> bool:
    """The same decision is the same kind: a repeat that only words its comment differently
    still gets the first answer (whose comment is the one on the record)."""
    return first.decision.kind == kind


def answer_repeat(run: Run, first: DecisionRow, kind: DecisionKind) -> Run:
    """The run, if this repeats the first decision under its id.

    Raises:
        DecisionConflict: `already_decided`, naming the decision that stands, when this one differs.
    """
    if same_decision(first, kind):
        return run
    d = first.decision
    who = "automatically" if d.auto else f"by {d.actor}"
    step = run.steps[first.step].name if 0 <= first.step < len(run.steps) else str(first.step)
    said = f" ({d.comment!r})" if d.comment else ""
    raise DecisionConflict(
        f"decision id {first.decision_id!r} was already used: {d.kind.value}{said} {who} at "
        f"{d.at.isoformat(timespec='seconds')} on step {step!r} of run {first.run_id} stands; "
        f"this {kind.value} was not applied",
        code="already_decided", decision_id=first.decision_id, run_id=first.run_id, step=first.step,
        decision=d.model_dump(mode="json"),
    )
