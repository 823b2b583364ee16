"""The polled topics of `/ws`: one poller per key however many connections listen.

A `Poller` owns what every polled topic does alike: poll every `interval`, hand each frame the
poll made to every listener's bounded `Outbox`, and stop when the last listener leaves (or when a
poll is refused: the feed ends, is logged, and its listeners hear nothing more). What a poll
reads and which frames it makes are the subclass's: a workspace's `sessions` and `tasks` rows
(`hub.TopicFeed`), a person's `notifications` (`notefeed.NoteFeed`). `Pollers` keeps the running
ones by key (`("sessions", workspace)`, `("notifications", actor)`): the first listener of a key
starts its poller in the hub's task group and waits for its first poll, so what it is sent first
(`snapshot`) is the state as it is.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from ..flows.errors import FlowrunError

if TYPE_CHECKING:
    from .hub import Outbox

log = logging.getLogger("flowrun.web")

POLL_S = 1.0


class Poller(abc.ABC):
    """Polls for its listeners until cancelled (the last one left) or refused."""

    interval: float = POLL_S

    def __init__(self, label: str) -> None:
        self.label = label  # for the log: "the sessions feed of default"
        self.listeners: set[Outbox] = set()
        self.scope = anyio.CancelScope()
        self.started = anyio.Event()  # the first poll is done (or failed)
        self.ended: Callable[[], None] = lambda: None  # set by `Pollers`: forget this poller

    @abc.abstractmethod
    async def poll(self) -> list[str]:
        """Look once; the frames every listener gets, in order.

        Raises FlowrunError: the feed cannot go on (the poller ends)."""

    @abc.abstractmethod
    def snapshot(self) -> list[str]:
        """The frames a listener that joins now is sent first."""

    async def run(self) -> None:
        with self.scope:
            try:
                while True:
                    for frame in await self.poll():
                        for outbox in list(self.listeners):
                            outbox.offer(frame)
                    self.started.set()
                    await anyio.sleep(self.interval)
            except FlowrunError as exc:
                log.info("%s ended: %s", self.label, exc.code)
            finally:
                self.started.set()
                self.ended()


class Pollers:
    """The running pollers, by key."""

    def __init__(self) -> None:
        self._running: dict[Hashable, Poller] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def join(self, key: Hashable, make: Callable[[], Poller], outbox: Outbox, group: TaskGroup) -> list[str]:
        """Register `outbox` with the key's poller (made and started in `group` if none runs);
        returns the frames to send it first."""
        poller = self._running.get(key)
        if poller is None:
            poller = self._running[key] = make()
            poller.ended = lambda: self._forget(key, poller)
            group.start_soon(poller.run)
        await poller.started.wait()
        poller.listeners.add(outbox)
        return poller.snapshot()

    def leave(self, key: Hashable, outbox: Outbox) -> None:
        """The last listener to leave stops the poller."""
        poller = self._running.get(key)
        if poller is None:
            return
        poller.listeners.discard(outbox)
        if not poller.listeners:
            del self._running[key]
            poller.scope.cancel()

    def _forget(self, key: Hashable, poller: Poller) -> None:
        if self._running.get(key) is poller:
            del self._running[key]
