"""Leases, live engine processes and claims: the at-most-once parts of the contract, both stores."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from flowrun.flows import machine
from flowrun.flows.chat import Chat
from flowrun.flows.enums import DecisionKind, RunStatus
from flowrun.flows.errors import NotFound, UsageError
from flowrun.flows.run import Decision
from flowrun.storage import WorkerRow
from tests.storekinds import AnyStore, StoreKind

from .storekit import WAIT, created, make_run

pytestmark = pytest.mark.anyio


async def eventually(check: Callable[[], Awaitable[object]]) -> None:
    """Poll `check` until it is truthy (time-based state: a lease or a heartbeat lapsing)."""
    with anyio.fail_after(WAIT):
        for _ in itertools.count():
            if await check():
                return
            await anyio.sleep(0.05)


async def has_one(items: Awaitable[list[WorkerRow]]) -> bool:
    return len(await items) == 1


async def runnable(store: AnyStore, started: bool = True) -> str:
    run = make_run()
    run, _ = await store.create_run(run, created(run))
    if started:
        new, events = machine.start(run)
        run, _ = await store.commit(new, events, expected_version=run.version)
    return run.id


async def test_a_run_is_claimed_by_one_process(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        ids = [await runnable(one) for _ in range(6)]
        got: dict[str, set[str]] = {"a": set(), "b": set()}

        async def claim(name: str, store: AnyStore) -> None:
            for _ in range(6):  # its own leases come back too: a re-claim renews them
                got[name] |= set(await store.claim_runs(name, lease_s=30, limit=2))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim, "a", one)
                tg.start_soon(claim, "b", two)
        assert not got["a"] & got["b"] and got["a"] | got["b"] == set(ids)  # each by one process
        leases = {lease.run_id: lease.owner for lease in await one.leases()}
        assert all(leases[run_id] == "a" for run_id in got["a"])
        assert all(leases[run_id] == "b" for run_id in got["b"])


async def test_only_runs_with_work_to_do_are_claimed(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        pending = await runnable(store, started=False)
        running = await runnable(store)
        run = await store.get_run(running)
        new, events = machine.pause_at(run, 0, "Look first.")
        await store.commit(new, events, expected_version=run.version)  # parked: nothing to do
        assert await store.claim_runs("a", lease_s=30, limit=10) == [pending]
        assert await store.claim_runs("a", lease_s=30, run_ids=[running]) == []
        assert [lease.run_id for lease in await store.leases()] == [pending]


async def test_claim_and_read_gives_the_runs_as_stored(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        ids = [await runnable(one) for _ in range(5)]
        run = await one.get_run(ids[0])
        new, events = machine.pause_at(run, 0, "Look first.")
        await one.commit(new, events, expected_version=run.version)  # parked: not claimed
        got: dict[str, list[str]] = {"a": [], "b": []}

        async def claim(name: str, store: AnyStore) -> None:
            for _ in range(4):
                for claimed in await store.claim_and_read_runs(name, lease_s=30, limit=2):
                    assert claimed.model_dump_json() == (await store.get_run(claimed.id)).model_dump_json()
                    got[name].append(claimed.id)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim, "a", one)
                tg.start_soon(claim, "b", two)
        assert sorted(got["a"] + got["b"]) == sorted(ids[1:])  # each once, by one process
        leases = {lease.run_id: lease.owner for lease in await one.leases()}
        assert {run_id: owner for run_id, owner in leases.items()} == {
            **{run_id: "a" for run_id in got["a"]}, **{run_id: "b" for run_id in got["b"]}}
        assert await one.claim_and_read_runs("c", lease_s=30, limit=10) == []  # all held
        taken = await one.claim_and_read_runs("c", lease_s=30, limit=10, dead_owners=["a"])
        assert sorted(r.id for r in taken) == sorted(got["a"])  # a process known to be gone


async def test_an_expired_lease_is_for_another_process_to_take(tmp_path: Path, store_kind: StoreKind) -> None:
    """A process whose renewals are late does not claim its own run back among all runs (its
    driver still runs; renewing is how it keeps the run): another process takes it over."""
    async with store_kind.store(tmp_path / "s.db") as store:
        run_id = await runnable(store)
        assert await store.claim_runs("a", lease_s=0.3, run_ids=[run_id]) == [run_id]
        await anyio.sleep(0.5)  # expired
        assert await store.claim_runs("a", lease_s=30, limit=10) == []
        assert await store.claim_and_read_runs("a", lease_s=30, limit=10) == []
        assert [r.id for r in await store.claim_and_read_runs("b", lease_s=30, limit=10)] == [run_id]


async def test_a_chat_is_hosted_by_one_process(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        chat, _ = await one.create_chat(Chat(owner="ana", workspace="default"))
        assert await one.host_chat(chat.id, "a", lease_s=0.3)
        assert not await two.host_chat(chat.id, "b", lease_s=30)  # held
        assert await one.host_chat(chat.id, "a", lease_s=0.3)  # its own again: renewed
        assert await one.renew_chat_hosts("a", [chat.id], lease_s=0.3) == [chat.id]
        await eventually(lambda: two.host_chat(chat.id, "b", lease_s=30))  # expired: taken
        assert await one.renew_chat_hosts("a", [chat.id], lease_s=30) == []  # a lost it
        await one.release_chat_hosts("a", [chat.id])  # not a's: nothing changes
        assert not await one.host_chat(chat.id, "c", lease_s=30)
        assert await one.host_chat(chat.id, "c", lease_s=30, dead_owners=["b"])  # b is known to be gone
        await one.release_chat_hosts("c", [chat.id])
        assert await two.host_chat(chat.id, "d", lease_s=30)  # let go: free at once
        with pytest.raises(NotFound):
            await one.host_chat("chat_nope", "a", lease_s=30)
        with pytest.raises(UsageError, match="lease"):
            await one.host_chat(chat.id, "a", lease_s=0)


async def test_renew_release_and_expiry(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run_id = await runnable(store)
        assert await store.claim_runs("a", lease_s=0.3, run_ids=[run_id]) == [run_id]
        assert await store.claim_runs("b", lease_s=30, run_ids=[run_id]) == []  # held
        assert await store.renew_leases("a", [run_id], lease_s=0.3) == [run_id]
        assert await store.claim_runs("a", lease_s=0.3, run_ids=[run_id]) == [run_id]  # its own again
        await eventually(lambda: store.claim_runs("b", lease_s=30, run_ids=[run_id]))  # expired: taken
        assert await store.renew_leases("a", [run_id], lease_s=30) == []  # a lost it
        await store.release_leases("a", [run_id])  # not a's: nothing changes
        assert [(lease.owner) for lease in await store.leases()] == ["b"]
        await store.release_leases("b", [run_id])
        assert [(lease.owner) for lease in await store.leases()] == [None]
        assert await store.claim_runs("c", lease_s=30, run_ids=[run_id]) == [run_id]
        # a process known to be gone loses its lease at once
        assert await store.claim_runs("d", lease_s=30, run_ids=[run_id], dead_owners=["c"]) == [run_id]
        with pytest.raises(UsageError, match="lease"):
            await store.claim_runs("d", lease_s=0)


async def test_live_workers_and_announcements(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        before = await one.store_time()
        await one.heartbeat(WorkerRow(id="h:1:a", kind="worker", drives=True), ttl_s=30)
        await two.heartbeat(WorkerRow(id="h:2:b", kind="serve", drives=False), ttl_s=0.2)
        workers = {w.id: w for w in await two.live_workers()}
        assert set(workers) == {"h:1:a", "h:2:b"} and workers["h:1:a"].drives
        assert workers["h:1:a"].expires >= before + 29
        await eventually(lambda: has_one(one.live_workers()))  # b's heartbeat lapsed
        await one.remove_worker("h:1:a")
        assert await two.live_workers() == []
        with anyio.fail_after(WAIT):  # announced here: woken here at once
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.announce_work, "run_x")
                await one.wait_for_work(WAIT)


async def test_claims_are_taken_once(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        results: list[bool] = []

        async def take(store: AnyStore) -> None:
            results.append(await store.claim("schedule:nightly:09:00", {"by": "x"}))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(take, one if i % 2 else two)
        assert sorted(results) == [False] * 9 + [True]
        await one.settle_claim("schedule:nightly:09:00", "failed", {"error": "boom"})
        assert await two.claim("schedule:nightly:09:00", {}) is False
        assert await two.claim("schedule:nightly:09:00", {}, retry_failed=True) is True
        await one.claim("schedule:night_ly", {})
        assert [c.key for c in await two.list_claims("schedule:nightly")] == ["schedule:nightly:09:00"]
        assert [c.status for c in await two.list_claims("schedule:night_")] == ["taken"]


async def test_postgres_announces_new_work_in_the_commit_that_made_it(tmp_path: Path, postgres_kind: StoreKind) -> None:
    """A decision that makes a paused run runnable wakes other processes' `wait_for_work` by
    itself (NOTIFY in its transaction); the engine's own `announce_work` then sends nothing more."""
    path = tmp_path / "s.db"
    async with postgres_kind.store(path) as one, postgres_kind.store(path) as two:
        run = await one.get_run(await runnable(one))
        new, events = machine.pause_at(run, 0, "Look first.")
        run, _ = await one.commit(new, events, expected_version=run.version)
        with anyio.fail_after(WAIT):  # the creation was announced: let that pass
            while await two.wait_for_work(0.3):
                pass
        new, events = machine.decide(run, Decision(kind=DecisionKind.APPROVE, actor="ana"), step=0)
        run, _ = await one.commit(new, events, expected_version=run.version)
        assert run.status == RunStatus.RUNNING
        assert await two.wait_for_work(WAIT)
        await one.announce_work(run.id)  # already announced by the commit: no second wake-up
        assert not await two.wait_for_work(0.5)
        await one.announce_work(run.id)  # a second announcement of the same run is sent
        assert await two.wait_for_work(WAIT)


async def test_postgres_stores_in_two_schemas_do_not_wake_each_other(tmp_path: Path, postgres_kind: StoreKind) -> None:
    """NOTIFY channels belong to the database, not to a schema: each schema has its own."""
    async with postgres_kind.store(tmp_path / "a.db") as one, postgres_kind.store(tmp_path / "b.db") as other:
        with anyio.fail_after(WAIT):
            while await other.wait_for_work(0.3):  # whatever came before
                pass
        await runnable(one)
        assert not await other.wait_for_work(0.5)
