"""The poller every polled `/ws` topic runs on: one per key however many listen, each poll's
frames to every listener, stopped by the last one leaving, forgotten when a poll is refused."""

from __future__ import annotations

import anyio
import pytest

from flowrun.flows.errors import PermissionDenied
from flowrun.web.hub import Outbox
from flowrun.web.poller import Poller, Pollers

pytestmark = pytest.mark.anyio


class Counting(Poller):
    interval = 0.01

    def __init__(self, refuse_at: int | None = None) -> None:
        super().__init__("the counting feed")
        self.polls = 0
        self.refuse_at = refuse_at
        self.polled = anyio.Event()

    async def poll(self) -> list[str]:
        self.polls += 1
        if self.polls == self.refuse_at:
            raise PermissionDenied("no longer allowed")
        self.polled.set()
        self.polled = anyio.Event()
        return [f"poll {self.polls}"] if self.polls > 1 else []

    def snapshot(self) -> list[str]:
        return [f"as of poll {self.polls}"]


async def test_one_poller_per_key_fans_out_and_stops_with_the_last_listener() -> None:
    pollers = Pollers()
    made: list[Counting] = []

    def make() -> Counting:
        made.append(Counting())
        return made[-1]

    one, two = Outbox(), Outbox()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            assert await pollers.join("k", make, one, tg) == ["as of poll 1"]  # waited for the first poll
            await pollers.join("k", make, two, tg)
            [poller] = made
            assert len(pollers) == 1 and poller.listeners == {one, two}
            while len(one) < 2:
                await poller.polled.wait()
            first, second = one.take(), two.take()
            assert first[:2] == ["poll 2", "poll 3"] and second[:2] == first[:2]  # the same frames, in order
            pollers.leave("k", one)
            assert len(pollers) == 1 and not poller.scope.cancel_called
            pollers.leave("k", two)  # the last one: stopped and forgotten
            assert len(pollers) == 0 and poller.scope.cancel_called
        # the task group ended: the poller's loop returned (else `fail_after` would say so)


async def test_a_refused_poll_ends_the_feed_and_a_new_listener_starts_afresh() -> None:
    pollers = Pollers()
    made: list[Counting] = []

    def make() -> Counting:
        made.append(Counting(refuse_at=2 if not made else None))
        return made[-1]

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await pollers.join("k", make, Outbox(), tg)
            ended, forget = anyio.Event(), made[0].ended

            def forgotten() -> None:
                forget()
                ended.set()

            made[0].ended = forgotten
            await ended.wait()  # the second poll is refused: the feed ends and is forgotten
            assert made[0].polls == 2 and len(pollers) == 0
            await pollers.join("k", make, Outbox(), tg)
            assert len(made) == 2 and len(pollers) == 1
            tg.cancel_scope.cancel()

