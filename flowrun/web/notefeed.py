"""The `notifications` topic of `/ws`: one person's new notifications and unread count, live.

One `NoteFeed` per person (the actor: id, workspace and scopes) however many tabs they have open: it polls the
person's inbox (`runtime.inbox`, so only notifications about runs they may see) and sends every
listener a `notification` message with the new notification and the unread count, or with just
the count when it changed otherwise (marked read in another tab). A listener that joins first
gets the count as it is (`notification: null`): what to show on the badge, no desktop popup.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from ..flows.errors import FlowrunError
from ..runtime.access import Actor
from ..runtime.inbox import NoteView, inbox
from .protocol import NotificationMessage

if TYPE_CHECKING:
    from .hub import Hub, Outbox

log = logging.getLogger("flowrun.web")

NOTE_POLL_S = 1.0


def note_frame(unread: int, note: NoteView | None) -> str:
    return NotificationMessage(unread=unread, notification=note).model_dump_json()


class NoteFeed:
    def __init__(self, hub: Hub, actor: Actor) -> None:
        self.hub = hub
        self.actor = actor
        self.listeners: set[Outbox] = set()
        self.seen: set[str] | None = None  # ids known at the last poll (None: not polled yet)
        self.unread = 0
        self.scope = anyio.CancelScope()
        self.started = anyio.Event()

    async def run(self) -> None:
        with self.scope:
            try:
                while True:
                    await self._poll()
                    self.started.set()
                    await anyio.sleep(NOTE_POLL_S)
            except FlowrunError as exc:
                log.info("the notifications feed of %s ended: %s", self.actor.id, exc.code)
            finally:
                self.started.set()
                if self.hub.notes.get(self.actor) is self:
                    del self.hub.notes[self.actor]

    async def _poll(self) -> None:
        box = await inbox(self.hub.slot.get(), self.actor)
        ids = {n.id for n in box.notifications}
        fresh = [n for n in reversed(box.notifications) if self.seen is not None and n.id not in self.seen]
        frames = [note_frame(box.unread, n) for n in fresh]  # oldest first
        if not frames and self.seen is not None and box.unread != self.unread:
            frames.append(note_frame(box.unread, None))
        self.seen = ids if self.seen is None else self.seen | ids
        self.unread = box.unread
        for frame in frames:
            for outbox in list(self.listeners):
                outbox.offer(frame)


async def join_notes(hub: Hub, actor: Actor, outbox: Outbox) -> list[str]:
    """Register `outbox` for `actor`'s notifications; returns the frame to send first (the count)."""
    feed = hub.notes.get(actor)
    if feed is None:
        feed = hub.notes[actor] = NoteFeed(hub, actor)
        hub._group().start_soon(feed.run)
    await feed.started.wait()
    feed.listeners.add(outbox)
    return [note_frame(feed.unread, None)]


def leave_notes(hub: Hub, actor: Actor, outbox: Outbox) -> None:
    feed = hub.notes.get(actor)
    if feed is None:
        return
    feed.listeners.discard(outbox)
    if not feed.listeners:
        hub.notes.pop(actor, None)
        feed.scope.cancel()
