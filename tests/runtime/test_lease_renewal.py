"""Lease renewal under load: a live driver keeps its runs when the store's lease writes are slow
(queued behind other work on a busy machine) or away for a moment. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows import machine
from flowrun.runtime.leases import DriveMode, Leases
from flowrun.storage.errors import StorageError
from tests.storage.storekit import created, make_run
from tests.storekinds import AnyStore, StoreKind

pytestmark = pytest.mark.anyio
LEASE_S = 1.0


async def running_run(store: AnyStore) -> str:
    run = make_run()
    run, _ = await store.create_run(run, created(run))
    new, events = machine.start(run)
    run, _ = await store.commit(new, events, expected_version=run.version)
    return run.id


def slowed(call: Callable[..., Awaitable[Any]], delay_s: float) -> Callable[..., Awaitable[Any]]:
    async def slow(*args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(delay_s)  # queued behind other work before it runs
        return await call(*args, **kwargs)
    return slow


async def held_throughout(store: AnyStore, other_store: AnyStore, seconds: float) -> list[str]:
    """Hold one run's lease with `Leases.keep` for `seconds` while another process tries to
    claim it every 20 ms; what the other process got, and runs the keeper was told it lost."""
    run_id = await running_run(store)
    keeper = Leases(store, mode=DriveMode.ALWAYS, kind="worker", lease_s=LEASE_S)
    other = Leases(other_store, mode=DriveMode.ALWAYS, kind="worker", lease_s=LEASE_S)
    lost: list[str] = []

    async def on_lost(lost_id: str) -> None:
        lost.append(lost_id)

    taken: list[str] = []
    async with anyio.create_task_group() as tg:
        await tg.start(keeper.keep, on_lost)  # as an engine does: keeping first, then claiming
        assert await keeper.claim([run_id]) == [run_id]
        with anyio.move_on_after(seconds):
            while not taken:
                taken = await other.claim([run_id])
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    return taken + [f"lost {r}" for r in lost]


async def test_slow_lease_writes_do_not_let_a_live_drivers_lease_lapse(tmp_path: Path, store_kind: StoreKind,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each heartbeat and each renewal waits 0.4 of the lease before it runs: renewing after the
    heartbeat, a third of the lease after the previous round ended, spaced renewals 1.13 leases
    apart, and another worker took the run over from its live driver."""
    path = tmp_path / "s.db"
    async with store_kind.store(path) as store, store_kind.store(path) as other_store:
        for name in ("heartbeat", "renew_leases"):
            monkeypatch.setattr(store, name, slowed(getattr(store, name), 0.4 * LEASE_S))
        assert await held_throughout(store, other_store, 4 * LEASE_S) == []


async def test_a_failed_renewal_is_tried_again_well_before_the_lease_lapses(tmp_path: Path, store_kind: StoreKind,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is away for 0.7 of the lease right after a renewal: tried again only a third
    of a lease later, both tries in the outage failed and the next renewal came a whole lease
    after the last one, as the lease lapsed."""
    path = tmp_path / "s.db"
    async with store_kind.store(path) as store, store_kind.store(path) as other_store:
        renew = store.renew_leases
        renewed_at: list[float] = []
        away_until = [0.0]

        async def flaky(*args: Any, **kwargs: Any) -> list[str]:
            if anyio.current_time() < away_until[0]:
                raise StorageError("the database is away for a moment")
            renewed = await renew(*args, **kwargs)
            if renewed:
                renewed_at.append(anyio.current_time())
                if away_until[0] == 0.0:  # the first renewal that holds a lease: then away
                    away_until[0] = renewed_at[-1] + 0.7 * LEASE_S
            return renewed

        monkeypatch.setattr(store, "renew_leases", flaky)
        assert await held_throughout(store, other_store, 3 * LEASE_S) == []
        gaps = [b - a for a, b in zip(renewed_at, renewed_at[1:], strict=False)]
        assert len(gaps) >= 2 and max(gaps) < 0.9 * LEASE_S, gaps
