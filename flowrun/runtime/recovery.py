"""Recovery and hand-over: what becomes of a run whose driver is gone, or is going.

A run is driven by the engine process that holds its lease (see `leases`). This module decides
what happens at the edges of that: on start-up, runs left behind by a process that died are taken
over (driven on, re-attached to a step still streaming, or parked as interrupted); a run whose
lease another process took stops here at once; a graceful stop claims nothing more and lets runs
reach a step boundary; and at shutdown the runs still driven here are handed to a live worker or,
with nobody to take them, parked as interrupted (a deploy, not a failure).

The engine owns the tasks that drive runs; `Recovery` shares its table of active runs and starts
a driver through the `spawn` callback it is given, so it never reaches into the engine itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from ..flows import machine
from ..flows.enums import RunStatus
from ..flows.errors import ConcurrentUpdate, FlowrunError
from ..flows.run import Run
from ..sandboxes.base import Sandbox
from ..storage.errors import StorageError
from . import continuation
from .context import EngineDeps
from .continuation import Continuation
from .leases import DriveMode, Leases
from .parking import release_and_record
from .step import release_sandbox

log = logging.getLogger("flowrun.runtime")


@dataclass
class Active:
    """A run this process drives: the scope its task runs in, and why it stopped."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    cancelled_by: str | None = None
    cancelled_elsewhere: bool = False
    lease_lost: bool = False  # another process took the run over: stop, record nothing
    parked: bool = False  # the driver brought the run to rest (paused, completed, failed...)


Spawn = Callable[[Run, Continuation | None], None]


class Recovery:
    """Takes over runs left behind, parks what cannot go on, and lets go of runs at a stop.

    `active` is the engine's own table of runs driven here (shared, not copied); `spawn` starts
    a driver task for a run (with the step to re-attach to, if any)."""

    def __init__(self, deps: EngineDeps, leases: Leases, active: dict[str, Active], spawn: Spawn) -> None:
        self.deps = deps
        self.leases = leases
        self.active = active
        self.spawn = spawn
        self.draining = False  # a graceful stop: claim nothing more, stop at step boundaries

    # start-up -----------------------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Take over runs whose driver is gone (its lease expired, or its process on this host
        died). A worker (`always`) drives them on; a step that was in flight re-attaches to its
        streaming command when the sandbox outlived the process (see `continuation`), else the
        run is parked as interrupted, its sandbox kept so a retry continues. A lone CLI (`auto`,
        no worker alive) parks them all as interrupted, as a restart does. Returns the ids of
        the runs it interrupted.

        A lone CLI leaves `pending` runs alone: nothing of them ran, and a face that only writes
        commands (`serve --no-drive`) created them for a worker to claim when one comes."""
        if self.leases.mode is DriveMode.NEVER or (
            self.leases.mode is DriveMode.AUTO and await self.leases.workers_alive()
        ):
            return []
        interrupted: list[str] = []
        seen: set[str] = set()
        try:
            while claimed := [r for r in await self._claim_left_behind() if r not in seen]:
                seen.update(claimed)
                for run_id in claimed:
                    if await self.take(await self.deps.store.get_run(run_id), park_idle=not self.leases.claims_all):
                        interrupted.append(run_id)
        except StorageError as exc:  # a full disk: reading must still work; the next start tries again
            log.warning("runs left as stored: %s", exc.message)
        if interrupted:
            log.info("marked %d run(s) interrupted after their driver stopped: %s", len(interrupted),
                     ", ".join(interrupted))
        return interrupted

    async def _claim_left_behind(self) -> list[str]:
        """A worker claims any runnable run it may; a lone CLI only `running` ones (to park them)."""
        if self.leases.claims_all:
            return await self.leases.claim(limit=100)
        running = [lease.run_id for lease in await self.deps.store.leases() if lease.status == RunStatus.RUNNING]
        return await self.leases.claim(running, limit=len(running), from_dead=True) if running else []

    # taking a claimed run -----------------------------------------------------------------------

    async def take(self, run: Run, *, park_idle: bool = False) -> bool:
        """Drive a run this process has just claimed; True if it was parked as interrupted
        instead (a step in flight that cannot re-attach; with `park_idle`, any running run:
        a pending one is left pending, for a worker)."""
        if run.id in self.active:
            return False
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) or (park_idle and run.status == RunStatus.PENDING):
            await self.leases.release([run.id])  # parked meanwhile, or not ours to park: nothing to do
            return False
        planned = await self._continuation(run) if continuation.in_flight(run) is not None else None
        if planned is not None:
            self.spawn(run, planned)
            return False
        if continuation.in_flight(run) is not None or park_idle:
            await self.mark_interrupted(run, "Interrupted: the process driving it stopped while the run was in flight.")
            await self.leases.release([run.id])
            return True
        self.spawn(run, None)
        return False

    async def _continuation(self, run: Run) -> Continuation | None:
        link = run.links.sandbox
        if link is None or link.state != "active":
            return None
        connected: list[Sandbox] = []

        async def connect() -> Sandbox | None:
            try:
                sandbox = await self.deps.backend_for(link.backend).acquire(run.id, self.deps.profile(run), link=link)
            except FlowrunError as exc:
                log.info("run %s: its sandbox cannot be reconnected (%s); parking it", run.id, exc.message)
                return None
            connected.append(sandbox)
            return sandbox

        planned = await continuation.plan(self.deps.store, run, connect)
        if planned is not None:
            self.deps.sandboxes[run.id] = connected[0]  # the driver goes on with it
        return planned

    async def mark_interrupted(self, run: Run, reason: str) -> bool:
        """Whether it was recorded: a store that cannot be written (a full disk) leaves the run as it
        is, for the next process to start to record."""
        new, events = machine.interrupt(run, reason)
        try:  # fenced: only while this process holds the run's lease
            await self.deps.store.commit(new, events, expected_version=new.version, lease_owner=self.leases.owner)
        except ConcurrentUpdate:  # LeaseLost included
            log.info("run %s changed (or was taken over) while being marked interrupted", run.id)
        except StorageError as exc:
            log.warning("run %s left as stored: %s", run.id, exc.message)
            return False
        return True

    async def lost_lease(self, run_id: str) -> None:
        """Another process took the run over: its driver here stops at once and records nothing."""
        active = self.active.get(run_id)
        if active is not None:
            active.lease_lost = True
            active.scope.cancel()

    # stopping -----------------------------------------------------------------------------------

    def stop_claiming(self) -> None:
        """A graceful stop has begun: claim no more runs, and stop each run driven here at its
        next step boundary (`drain` then waits for them)."""
        self.draining = True

    async def drain(self, grace_s: float) -> None:
        """A graceful stop (SIGTERM to a worker or to `serve`): claim nothing more, let each run
        stop at its next step boundary for up to `grace_s`; leaving the engine then releases the
        leases, so another worker takes the runs over. Steps still running after the grace are
        cancelled."""
        self.stop_claiming()
        with anyio.move_on_after(grace_s):
            while self.active:
                await next(iter(self.active.values())).done.wait()

    async def interrupt_active(self) -> None:
        """On shutdown, the runs this process still drives are handed over: to another live
        worker, which continues them (or parks a step it cannot re-attach to), by releasing
        their leases; with nobody to take them, runs that were in flight become interrupted
        (a deploy, not a failure)."""
        try:
            handover = await self.leases.workers_alive()
        except Exception:
            handover = False
        for run_id in sorted(self.leases.held):
            run = await self.deps.store.get_run(run_id)
            if run.status in (RunStatus.RUNNING, RunStatus.PENDING) and not handover:
                await self.mark_interrupted(run, "The engine shut down while the run was in flight.")
        for run_id in list(self.deps.sandboxes):
            run = await self.deps.store.get_run(run_id)
            if run.status in (RunStatus.INTERRUPTED, RunStatus.RUNNING, RunStatus.PENDING):
                # interrupted: its sandbox is kept as it is, so a retry continues in it
                self.deps.sandboxes.pop(run_id, None)
                continue
            if run.status != RunStatus.PAUSED:  # stopped by another process while held here
                await release_and_record(self.deps, run_id, keep=True)
                continue
            # an interactive run waiting for a person: nobody holds it now, so park it
            link = await release_sandbox(self.deps, run, keep=True)
            if link is not None and link != run.links.sandbox:
                new, events = machine.link_sandbox(run, link)
                try:
                    await self.deps.store.commit(new, events, expected_version=new.version)
                except ConcurrentUpdate:
                    log.info("run %s changed while its sandbox was parked", run_id)
