"""The `notifications` topic of `/ws`: one person's new notifications and unread count, live.

One `NoteFeed` per person (the actor: id, workspace and scopes) however many tabs they have open:
a poller (`poller.Poller`, like the `sessions` and `tasks` feeds) that follows the person's inbox
(`runtime.inbox.InboxFollower`, so only notifications about runs they may see, and each poll reads
only what changed since the last) and sends every listener a `notification` message with the new
notification and the unread count, or with just the count when it changed otherwise (marked read
in another tab). A listener that joins gets the count as it is (`notification: null`): what to
show on the badge, no desktop popup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..runtime.access import Actor
from ..runtime.inbox import InboxFollower, NoteView
from .poller import Poller
from .protocol import NotificationMessage

if TYPE_CHECKING:
    from .hub import Hub


def note_frame(unread: int, note: NoteView | None) -> str:
    return NotificationMessage(unread=unread, notification=note).model_dump_json()


class NoteFeed(Poller):
    def __init__(self, hub: Hub, actor: Actor) -> None:
        super().__init__(f"the notifications feed of {actor.id}")
        self.hub = hub
        self.inbox = InboxFollower(actor)
        self.unread: int | None = None  # None: not polled yet

    async def poll(self) -> list[str]:
        arrived = await self.inbox.poll(self.hub.slot.get())  # oldest first; none on the first poll
        unread = self.inbox.inbox().unread
        frames = [note_frame(unread, note) for note in arrived]
        if not frames and self.unread is not None and unread != self.unread:
            frames.append(note_frame(unread, None))
        self.unread = unread
        return frames

    def snapshot(self) -> list[str]:
        return [note_frame(self.unread or 0, None)]
