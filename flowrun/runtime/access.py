"""Who is asking, and what they may do. Enforced in the engine so every face gets one answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..flows.enums import Scope
from ..flows.errors import PermissionDenied
from ..flows.run import Run

ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    workspace: str = "default"
    scopes: frozenset[Scope] = field(default=ALL_SCOPES)

    def require(self, scope: Scope, action: str) -> None:
        """flows.run implies flows.read: whoever may start and decide runs may watch them."""
        if scope not in self.scopes and not (scope == Scope.READ and Scope.RUN in self.scopes):
            raise PermissionDenied(
                f"{self.id} may not {action}: that needs the {scope.value} scope",
                actor=self.id, scope=scope.value,
            )

    def require_cancel(self, run: Run) -> None:
        """flows.run cancels your own run; flows.cancel.any cancels anyone's."""
        if Scope.CANCEL_ANY in self.scopes:
            return
        if Scope.RUN in self.scopes and run.started_by == self.id:
            return
        needed = Scope.RUN if run.started_by == self.id else Scope.CANCEL_ANY
        raise PermissionDenied(
            f"{self.id} may not cancel run {run.id} (started by {run.started_by}): that needs the "
            f"{needed.value} scope",
            actor=self.id, scope=needed.value, run_id=run.id,
        )

    def may(self, action: str, run: Run) -> bool:
        """Whether a run's action (`approve`, `reject`, `skip`, `resume`, `retry`, `cancel`) is
        this actor's to take, as the engine would answer it: faces offer only these."""
        if action == "cancel":
            return Scope.CANCEL_ANY in self.scopes or (Scope.RUN in self.scopes and run.started_by == self.id)
        return Scope.RUN in self.scopes

    def require_workspace(self, run: Run) -> None:
        if run.workspace != self.workspace:
            # Not "forbidden": a run in another workspace does not exist for this actor.
            from ..flows.errors import NotFound

            raise NotFound(f"no run {run.id!r}", run_id=run.id)


LOCAL_OPERATOR = Actor(id="local", workspace="default")
