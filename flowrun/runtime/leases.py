"""Leases: which engine process drives which run.

Who asks is not who drives. A run with work to do (started, approved, resumed, retried) is
claimed by one engine process with a lease in the store, renewed while it drives; any live
engine process may claim a runnable run whose lease is free or expired. Every engine process
also keeps a heartbeat row, so a face can tell whether a worker is alive.

How an engine takes part is its `DriveMode`:
- `always`: `flowrun worker` and `flowrun serve` claim every runnable run they can;
- `auto`: a CLI command or `flowrun mcp` drives the run it touched itself only when no worker is
  alive (as before workers existed); otherwise it writes the command and follows the log;
- `never`: `flowrun serve --no-drive`, a face only.

A lease held by a process on this host whose pid is gone is free at once (no need to wait for
it to expire): that keeps a restart after a crash as quick as before leases.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from ..flows.run import Run, now
from ..storage.base import Store, WorkerRow
from ..storage.errors import StorageError

log = logging.getLogger("flowrun.runtime")


class DriveMode(enum.StrEnum):
    ALWAYS = "always"
    AUTO = "auto"
    NEVER = "never"


def lease_owner() -> str:
    """`host:pid:token`: unique per engine (two engines in one process are two owners)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_gone(owner: str) -> bool:
    """True only when `owner` is a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Leases:
    """This engine's leases and heartbeat. `keep` runs in the engine's task group: it renews
    the held leases and the heartbeat every third of the lease time, and calls `on_lost` for a
    run whose lease another process took (its driver must stop at once)."""

    def __init__(self, store: Store, *, mode: DriveMode, kind: str, lease_s: float,
                 owner: str | None = None) -> None:
        self.store = store
        self.mode = mode
        self.kind = kind
        self.lease_s = lease_s
        self.owner = owner or lease_owner()
        self.held: set[str] = set()
        self._started_at = now().isoformat()
        self._dead: list[str] = []
        self._dead_checked: float | None = None

    @property
    def claims_all(self) -> bool:
        return self.mode is DriveMode.ALWAYS

    async def drives_here(self) -> bool:
        """Should this process drive a run it just wrote a command for?"""
        if self.mode is DriveMode.NEVER:
            return False
        if self.mode is DriveMode.ALWAYS:
            return True
        return not await self.workers_alive()

    async def workers_alive(self) -> bool:
        """Is another process that claims runs alive (`flowrun worker`, `flowrun serve`)?"""
        return any(w.drives and w.id != self.owner for w in await self.store.live_workers())

    async def claim(self, run_ids: Sequence[str] | None = None, *, limit: int = 1,
                    from_dead: bool | None = None) -> list[str]:
        """Claim runnable runs (`run_ids`: only among those; else any). `from_dead` (default:
        when no `run_ids` are named) also takes runs held by processes known to be gone."""
        dead = await self.dead_owners() if (run_ids is None if from_dead is None else from_dead) else []
        claimed = await self.store.claim_runs(self.owner, lease_s=self.lease_s, limit=limit,
                                              run_ids=run_ids, dead_owners=dead)
        self.held.update(claimed)
        return claimed

    async def claim_and_read(self, *, limit: int) -> list[Run]:
        """Claim up to `limit` runnable runs (those of dead processes too) and read them, in
        one round trip where the store can: what a worker's claim loop drives at once."""
        runs = await self.store.claim_and_read_runs(self.owner, lease_s=self.lease_s, limit=limit,
                                                    dead_owners=await self.dead_owners())
        self.held.update(run.id for run in runs)
        return runs

    async def dead_owners(self) -> list[str]:
        """Lease holders on this host whose process is gone. Looked up at most every third of
        the lease time (reading every lease costs a query, and a claim woken by new work does
        not need it): a dead process's runs are taken over within that, well inside its lease."""
        clock = anyio.current_time()
        if self._dead_checked is None or clock - self._dead_checked >= self.lease_s / 3:
            self._dead_checked = clock
            owners = {lease.owner for lease in await self.store.leases() if lease.owner and lease.owner != self.owner}
            self._dead = sorted(owner for owner in owners if owner_gone(owner))
        return self._dead

    async def release(self, run_ids: Sequence[str]) -> None:
        mine = [run_id for run_id in run_ids if run_id in self.held]
        self.held.difference_update(mine)
        if mine:
            await self.store.release_leases(self.owner, mine)

    async def heartbeat(self) -> None:
        await self.store.heartbeat(
            WorkerRow(id=self.owner, kind=self.kind, drives=self.claims_all, started_at=self._started_at),
            ttl_s=self.lease_s,
        )

    async def keep(self, on_lost: Callable[[str], Awaitable[None]], *,
                   task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew the held leases a third of the lease time after the previous round *began*, with
        the heartbeat alongside: on a busy machine each lease write may wait behind other work,
        and renewing only after the heartbeat, a third of the lease after the round ended, let
        the rounds drift a whole lease apart, so another worker took over runs still driven
        here. A failed renewal (the database away for a moment) is tried again after a tenth."""
        try:
            await self.heartbeat()
        except StorageError as exc:  # a full disk: reading still works; the loop tries again
            log.warning("could not record the heartbeat of %s: %s", self.owner, exc.message)
        task_status.started()
        due = anyio.current_time() + self.lease_s / 3
        while True:
            await anyio.sleep(max(0.0, due - anyio.current_time()))
            began = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat)
                renewed = await self._renew(on_lost)
            due = began + self.lease_s / (3 if renewed else 10)

    async def _beat(self) -> None:
        try:
            await self.heartbeat()
        except Exception:  # the database is away for a moment: the next round writes it
            log.warning("could not record the heartbeat of %s", self.owner, exc_info=True)

    async def _renew(self, on_lost: Callable[[str], Awaitable[None]]) -> bool:
        """Renew the held leases; False if the store could not be asked (try again soon)."""
        held = sorted(self.held)
        try:
            kept = set(await self.store.renew_leases(self.owner, held, lease_s=self.lease_s))
        except Exception:  # the database is away for a moment
            log.warning("could not renew %d lease(s) of %s", len(held), self.owner, exc_info=True)
            return False
        for run_id in held:
            if run_id not in kept and run_id in self.held:
                self.held.discard(run_id)
                log.warning("lost the lease of run %s to another process; its driver stops", run_id)
                await on_lost(run_id)
        return True

    async def close(self) -> None:
        """Let go of every lease and of the heartbeat row (shielded: runs at shutdown)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.release(sorted(self.held))
                await self.store.remove_worker(self.owner)
            except StorageError as exc:  # a full disk: the leases and the row expire by themselves
                log.warning("could not release the leases of %s: %s", self.owner, exc.message)
            except Exception:
                log.warning("could not release the leases of %s", self.owner, exc_info=True)
