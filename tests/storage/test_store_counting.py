"""Every run started counts against its workspace's day, capped or not; a clone created with
`commit_pair` counts (and is capped) like a run created on its own."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flowrun.flows import machine
from flowrun.flows.enums import RunStatus
from flowrun.flows.errors import StartRefused

from .storekit import created, make_run, store_at

pytestmark = pytest.mark.anyio
DAY = date(2025, 3, 1)


async def test_an_uncapped_start_counts_and_keeps_the_count(tmp_path: Path) -> None:
    async with store_at(tmp_path / "s.db") as store:
        for _ in range(3):
            run = make_run(workspace="big")
            await store.create_run(run, created(run), daily_cap=None, day=DAY)  # Business: no cap
        assert await store.runs_started("big", DAY) == 3  # counted one by one, never reset to 1


async def test_a_clone_counts_and_is_refused_past_the_cap(tmp_path: Path) -> None:
    async with store_at(tmp_path / "s.db") as store:
        run = make_run(workspace="acme")
        stored, _ = await store.create_run(run, created(run), daily_cap=2, day=DAY)
        failed = stored.model_copy(update={"status": RunStatus.FAILED})
        original, clone, first_events, clone_events = machine.clone_for_retry(failed, "ana")
        first, _ = await store.commit_pair((original, first_events, stored.version),
                                           (clone, [*created(clone), *clone_events]), daily_cap=2, day=DAY)
        assert await store.runs_started("acme", DAY) == 2 and first.retried_as == [clone.id]
        again, second, more_events, second_events = machine.clone_for_retry(first, "ana")
        with pytest.raises(StartRefused) as refused:
            await store.commit_pair((again, more_events, first.version),
                                    (second, [*created(second), *second_events]), daily_cap=2, day=DAY)
        assert refused.value.code == "daily_cap_reached"
        assert await store.runs_started("acme", DAY) == 2
        assert (await store.get_run(run.id)).retried_as == [clone.id]  # neither half was written
