"""In-process publish/subscribe for committed events.

The store publishes a run's events here right after their transaction commits. Each subscriber
has a bounded mailbox: publishing never waits, so a slow reader cannot hold up the writer. When a
mailbox would overflow, it is emptied and flagged instead; the reader then catches up from the
database, which holds everything that was ever published. The bus keeps subscribers only weakly,
so an iterator that is dropped without being closed does not leak its mailbox.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Sequence

import anyio

from ..flows.events import Event

DEFAULT_CAPACITY = 1024


class Mailbox:
    """One subscriber's buffer of live events for one run."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_capacity",
        "_closed",
        "_overflowed",
        "_wakeup",
        "run_id",
    )

    def __init__(self, run_id: str, capacity: int) -> None:
        self.run_id = run_id
        self._capacity = capacity
        self._buffer: deque[Event] = deque()
        self._overflowed = False
        self._closed = False
        self._wakeup: anyio.Event | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, events: Sequence[Event]) -> None:
        if not self._overflowed:
            if len(self._buffer) + len(events) > self._capacity:
                self._buffer.clear()
                self._overflowed = True
            else:
                self._buffer.extend(events)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def nudge(self) -> None:
        """Events were committed elsewhere (another process): the reader looks in the database."""
        self._overflowed = True
        self._wake()

    def take(self) -> tuple[list[Event], bool]:
        """The buffered events and whether some were dropped since the last take."""
        events = list(self._buffer)
        overflowed = self._overflowed
        self._buffer.clear()
        self._overflowed = False
        return events, overflowed

    async def wait(self, within: float) -> bool:
        """Wait for something to take (or the bus closing); False if `within` seconds passed first."""
        if self._buffer or self._overflowed or self._closed:
            return True
        self._wakeup = wakeup = anyio.Event()
        try:
            with anyio.move_on_after(within):
                await wakeup.wait()
        finally:
            self._wakeup = None
        return wakeup.is_set()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()


class EventBus:
    """Fan-out of committed events to in-process subscribers, by run id."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._mailboxes: dict[str, weakref.WeakSet[Mailbox]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, run_id: str) -> Mailbox:
        mailbox = Mailbox(run_id, self._capacity)
        if self._closed:
            mailbox.close()
        else:
            self._mailboxes.setdefault(run_id, weakref.WeakSet()).add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: Mailbox) -> None:
        boxes = self._mailboxes.get(mailbox.run_id)
        if boxes is not None:
            boxes.discard(mailbox)
            if not boxes:
                del self._mailboxes[mailbox.run_id]

    def publish(self, run_id: str, events: Sequence[Event]) -> None:
        """Hand committed events to every subscriber of the run; never blocks."""
        boxes = self._mailboxes.get(run_id)
        if boxes is None or not events:
            return
        mailboxes = list(boxes)
        if not mailboxes:  # all were collected without unsubscribing
            del self._mailboxes[run_id]
        for mailbox in mailboxes:
            mailbox.put(events)

    def nudge(self, run_id: str | None = None) -> None:
        """Tell the run's subscribers (or everyone's, with None) that another process committed
        events they have not been handed: they read them from the database."""
        boxes = [self._mailboxes.get(run_id, ())] if run_id is not None else list(self._mailboxes.values())
        for group in boxes:
            for mailbox in list(group):
                mailbox.nudge()

    def subscriber_count(self, run_id: str | None = None) -> int:
        if run_id is not None:
            return len(self._mailboxes.get(run_id, ()))
        return sum(len(boxes) for boxes in self._mailboxes.values())

    def close(self) -> None:
        """Wake every subscriber so it can finish; later subscriptions start closed."""
        self._closed = True
        for boxes in list(self._mailboxes.values()):
            for mailbox in list(boxes):
                mailbox.close()
        self._mailboxes.clear()
