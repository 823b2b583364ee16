"""`Store.subscribe`: a run's stored events after a seq, then live ones, exactly once, in order.

The subscription registers its mailbox on the bus *before* it reads the stored events, so an
event committed while the backlog is being read is either in the backlog or in the mailbox (or
both: duplicates are dropped by seq). A gap in the live events (a mailbox overflow, or events
written by another process, which never reach this bus) sends it back to the database. So does
a quiet spell of `poll_interval`: that is how events from other processes arrive.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from ..flows.events import Event
from .bus import EventBus, Mailbox
from .errors import StorageCorrupt, StoreClosed

Fetch = Callable[[str, int, int, bool], Awaitable[list[Event]]]
"""`(run_id, after_seq, limit, must_exist) -> events`: a page of stored events."""


class SubscriptionState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Subscription(AsyncIterator[Event]):
    """An async iterator over one run's events. Use it with `async with` (or call `aclose`) so
    its mailbox is released at once; one that is merely dropped is released when collected.

    Iteration ends (StopAsyncIteration) when the subscription or the store is closed.

    Raises (from iteration):
        NotFound: the run does not exist (checked on the first read).
        StorageCorrupt: the stored log has a gap or an unreadable event.
    """

    def __init__(
        self,
        bus: EventBus,
        fetch: Fetch,
        run_id: str,
        after_seq: int,
        *,
        poll_interval: float,
        page_size: int = 500,
    ) -> None:
        self.run_id = run_id
        self._bus = bus
        self._fetch = fetch
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._tail = after_seq  # highest seq handed out or queued in `_ready`
        self._ready: deque[Event] = deque()
        self._mailbox: Mailbox | None = None
        self._catch_up = True
        self._checked = False
        self.state = SubscriptionState.NEW

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._mailbox is not None:
            self._bus.unsubscribe(self._mailbox)
            self._mailbox = None
        self._ready.clear()
        self.state = SubscriptionState.CLOSED

    async def __anext__(self) -> Event:
        if self.state is SubscriptionState.CLOSED:
            raise StopAsyncIteration
        if self._mailbox is None:
            self._mailbox = self._bus.subscribe(self.run_id)
            self.state = SubscriptionState.OPEN
        mailbox = self._mailbox
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._catch_up:
                await self._read_stored()
                if self._ready:
                    continue
            live, overflowed = mailbox.take()
            if overflowed:
                self._catch_up = True
                continue
            for event in live:
                if event.seq <= self._tail:
                    continue  # already read from the database
                if event.seq != self._tail + 1:
                    self._catch_up = True  # the missing ones are stored: read them there
                    break
                self._ready.append(event)
                self._tail = event.seq
            if self._ready or self._catch_up:
                continue
            if mailbox.closed:
                await self.aclose()
                raise StopAsyncIteration
            if not await mailbox.wait(self._poll_interval):
                self._catch_up = True  # quiet for a while: another process may have written

    async def _read_stored(self) -> None:
        try:
            page = await self._fetch(self.run_id, self._tail, self._page_size, not self._checked)
        except StoreClosed:
            await self.aclose()
            raise StopAsyncIteration from None
        self._checked = True
        self._catch_up = len(page) == self._page_size
        for event in page:
            if event.seq != self._tail + 1:
                raise StorageCorrupt(
                    f"the event log of run {self.run_id} has a gap: seq {self._tail + 1} is missing "
                    f"(next stored is {event.seq})",
                    table="events",
                    key=f"run {self.run_id}",
                )
            self._ready.append(event)
            self._tail = event.seq
