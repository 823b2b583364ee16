"""A person's notifications: the ones they may see, newest first, and which they have read.

Notifications are recorded per workspace by the notifier (`runtime.notify`). A person sees one
only when they may see its run: the `flows.read` scope (or `flows.run`, which implies it) and the
run's workspace, exactly the engine's rule for `get_run`. Read state is per person (workspace and
actor id) in the store's `notification_reads`; marking is idempotent. An `InboxFollower` keeps
one person's inbox for whoever polls it (the web's `notifications` topic, every second): after its
first look, each poll reads only the notifications written since and the read state of the ones
it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ..flows.enums import Scope
from .access import Actor
from .notify import NOTIFICATION, Notification

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


def newest(note: Notification) -> tuple[datetime, str]:
    return note.at, note.id


class InboxFollower:
    """One person's inbox, kept up to date by reading only what changed since the last look.

    The first `poll` reads every notification once; each later one reads only the notification
    records written since (`Store.records_changed`, a cursor that misses none, even two written in
    the same instant) and the read state of the ones it holds (`notes_read(among=...)`), so a poll
    costs what changed and the inbox's size, not the history. It holds the person's newest
    `limit` notifications, which the unread count is about."""

    def __init__(self, actor: Actor, limit: int = INBOX_LIMIT) -> None:
        self.actor = actor
        self.limit = limit
        self.cursor: int | None = None  # None: not polled yet
        self.notes: list[Notification] = []  # newest first
        self.read: set[str] = set()

    async def poll(self, engine: Engine) -> list[NoteView]:
        """Catch up. Returns the notifications that arrived since the last poll, oldest first
        (none on the first poll: what was there before is not news).

        Raises PermissionDenied without `flows.read`."""
        self.actor.require(Scope.READ, "read notifications")
        store = engine.deps.store
        first = self.cursor is None
        changes = await store.records_changed(NOTIFICATION, self.cursor or 0)
        held = {note.id: note for note in self.notes}
        arrived: list[Notification] = []
        for row in changes.records:
            note = Notification.model_validate(row.data)
            if not may_see(self.actor, note):
                continue
            if note.id not in held:
                arrived.append(note)
            held[note.id] = note  # a newer write of one held (delivered, say) replaces it
        self.notes = sorted(held.values(), key=newest, reverse=True)[: self.limit]
        kept = [note.id for note in self.notes]
        self.read = await store.notes_read(self.actor.workspace, self.actor.id, among=kept) if kept else set()
        self.cursor = changes.cursor
        if first:
            return []
        within = set(kept)  # one older than all the inbox holds (written again, say) is not news
        return [self.view(note) for note in sorted(arrived, key=newest) if note.id in within]

    def view(self, note: Notification) -> NoteView:
        return NoteView(**note.model_dump(), read=note.id in self.read)

    def inbox(self, limit: int = 50) -> Inbox:
        views = [self.view(note) for note in self.notes]
        return Inbox(notifications=views[:limit], unread=sum(1 for v in views if not v.read))


async def inbox(engine: Engine, actor: Actor, limit: int = 50) -> Inbox:
    """Raises PermissionDenied without `flows.read`."""
    follower = InboxFollower(actor)
    await follower.poll(engine)
    return follower.inbox(limit)


async def mark_read(engine: Engine, actor: Actor, ids: Sequence[str] | None) -> Inbox:
    """Mark `ids` read for this person (None: every notification they see). Ids they may not see
    are ignored, so nobody learns of another workspace's notifications by guessing."""
    follower = InboxFollower(actor)
    await follower.poll(engine)
    visible = {note.id for note in follower.notes}
    chosen = sorted(visible if ids is None else visible.intersection(ids))
    if chosen:
        await engine.deps.store.mark_notes_read(actor.workspace, actor.id, chosen)
    await follower.poll(engine)  # reads the new read state (and whatever arrived meanwhile)
    return follower.inbox()
