"""A person's notifications: the ones they may see, newest first, and which they have read.

Notifications are recorded per workspace by the notifier (`runtime.notify`). A person sees one
only when they may see its run: the `flows.read` scope (or `flows.run`, which implies it) and the
run's workspace, exactly the engine's rule for `get_run`. Read state is per person (workspace and
actor id) in the store's `notification_reads`; marking is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ..flows.enums import Scope
from .access import Actor
from .notify import Notification, list_notifications

if TYPE_CHECKING:
    from .engine import Engine

INBOX_LIMIT = 200
"""The newest notifications a person's inbox looks at (the page, the badge, mark all read)."""


class NoteView(Notification):
    """A notification as one person sees it."""

    read: bool = Field(default=False, description="this person has marked it read")


class Inbox(BaseModel):
    notifications: list[NoteView]
    unread: int = Field(description="unread notifications among the newest the inbox holds")


def may_see(actor: Actor, note: Notification) -> bool:
    """The engine's rule for seeing a run, applied to the notification about it."""
    return (Scope.READ in actor.scopes or Scope.RUN in actor.scopes) and note.workspace == actor.workspace


async def inbox(engine: Engine, actor: Actor, limit: int = 50) -> Inbox:
    """Raises PermissionDenied without `flows.read`."""
    actor.require(Scope.READ, "read notifications")
    notes = [n for n in await list_notifications(engine, actor.workspace, limit=INBOX_LIMIT) if may_see(actor, n)]
    read = await engine.deps.store.notes_read(actor.workspace, actor.id)
    views = [NoteView(**n.model_dump(), read=n.id in read) for n in notes]
    return Inbox(notifications=views[:limit], unread=sum(1 for v in views if not v.read))


async def mark_read(engine: Engine, actor: Actor, ids: Sequence[str] | None) -> Inbox:
    """Mark `ids` read for this person (None: every notification they see). Ids they may not see
    are ignored, so nobody learns of another workspace's notifications by guessing."""
    actor.require(Scope.READ, "read notifications")
    visible = {n.id for n in await list_notifications(engine, actor.workspace, limit=INBOX_LIMIT) if may_see(actor, n)}
    chosen = sorted(visible if ids is None else visible.intersection(ids))
    if chosen:
        await engine.deps.store.mark_notes_read(actor.workspace, actor.id, chosen)
    return await inbox(engine, actor)
