"""The engine: starts, decides, cancels, resumes and retries runs; one task per active run.

Every public method takes the `Actor` asking and enforces its scopes, so the CLI, the MCP server
and the web get the same answers. Runs are driven by tasks owned by the engine's task group;
nothing is fire-and-forget. A parked run has no task at all: it is a row in the store. What
becomes of a run whose driver is gone or going (recovery at start-up, a lease lost, a graceful
drain, the hand-over at shutdown) lives in `recovery`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..flows import machine
from ..flows.enums import CheckpointMode, DecisionKind, ExecutionMode, RunStatus, Scope
from ..flows.errors import ConcurrentUpdate, DecisionConflict, FlowrunError, NotFound, StartRefused
from ..flows.events import Event, RunCreated
from ..flows.run import Decision, Launch, Run
from ..flows.template import FlowTemplate, bind_parameters
from ..storage.base import RecordRow, RunFilter
from ..storage.errors import StorageError
from . import deciding
from .access import Actor
from .context import EngineDeps
from .continuation import Continuation
from .driver import RunDriver
from .health import HEALTH_EVENT, get_health_event, resolve_health_event
from .leases import DriveMode, Leases
from .parking import release_and_record
from .preflight import launch_record, preflight, select_profile_name
from .recovery import Active, Recovery
from .snapshots import Snapshots
from .step import release_sandbox

log = logging.getLogger("flowrun.runtime")
CANCEL_WATCH_DELAY_S = 0.5


class Engine:
    def __init__(self, deps: EngineDeps) -> None:
        self.deps = deps
        self._tg: TaskGroup | None = None
        self._active: dict[str, Active] = {}
        self.halted: dict[str, FlowrunError] = {}  # runs this process stopped driving: the store failed
        self._halt_changed = anyio.Event()
        self._ready = False
        config = deps.config
        self.leases = Leases(deps.store, mode=DriveMode(config.drive), kind=config.kind, lease_s=config.lease_s)
        self.recovery = Recovery(deps, self.leases, self._active, self._spawn)
        self._closing = False

    # lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self.leases.keep, self.recovery.lost_lease)
            await self.recover()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        if self.leases.claims_all:
            self._tg.start_soon(self._claim_loop, name="claim runs")
        self._ready = True
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._ready = False
        self._closing = True
        self._tg.cancel_scope.cancel()
        try:
            # the body's own exception propagates as it is (not wrapped in an ExceptionGroup with
            # the cancelled run tasks): callers catch FlowrunError, not groups
            await self._tg.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.recovery.interrupt_active()
                finally:
                    await self.leases.close()

    async def recover(self) -> list[str]:
        """Take over runs whose driver is gone; the ids of those parked as interrupted (see
        `Recovery.recover`: a worker drives them on, a lone CLI parks them)."""
        return await self.recovery.recover()

    async def _take(self, run: Run, *, park_idle: bool = False) -> bool:
        """Drive a run just claimed here, or park it (see `Recovery.take`)."""
        return await self.recovery.take(run, park_idle=park_idle)

    @property
    def _draining(self) -> bool:
        """A graceful stop has begun (`stop_claiming`): the claim path claims nothing more."""
        return self.recovery.draining

    async def _hand_over(self, run: Run) -> None:
        """A command made `run` runnable: drive it here, or leave it to a live worker."""
        if not self._draining and await self.leases.drives_here() and await self.leases.claim([run.id]):
            await self._take(run)
        else:
            await self.deps.store.announce_work(run.id)

    async def _claim_loop(self) -> None:
        """A worker's loop: claim runnable runs with a free or expired lease, as many as it has
        room for; woken by announced work, else every third of the lease time."""
        while True:
            room = self.deps.config.max_active_runs - len(self._active)
            if not self._draining and room > 0:
                try:
                    for run in await self.leases.claim_and_read(limit=room):
                        await self._take(run)
                except FlowrunError as exc:  # the database is away for a moment: next round
                    log.warning("claiming runs failed: %s", exc.message)
            await self.deps.store.wait_for_work(self.leases.lease_s / 3)

    def stop_claiming(self) -> None:
        """A graceful stop has begun: claim no more runs, and stop each run driven here at its
        next step boundary (`drain` then waits for them)."""
        self.recovery.stop_claiming()

    async def drain(self, grace_s: float) -> None:
        """A graceful stop (SIGTERM to a worker or to `serve`): let each run stop at its next
        step boundary for up to `grace_s`, claiming nothing more; leaving the engine then hands
        the runs over (see `Recovery.drain`)."""
        await self.recovery.drain(grace_s)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def active_runs(self) -> int:
        """How many runs this process is driving right now."""
        return len(self._active)

    # starting -----------------------------------------------------------------------------------

    async def start_run(
        self,
        actor: Actor,
        flow: str | FlowTemplate,
        params: Mapping[str, Any] | None = None,
        *,
        sandbox_profile: str | None = None,
        execution_mode: ExecutionMode | str | None = None,
        checkpoint_mode: CheckpointMode | str | None = None,
        launch: Launch | None = None,
    ) -> Run:
        """Start a run and return at once; its task drives it.

        Raises:
            PermissionDenied: without flows.run.
            NotFound: unknown flow or profile.
            ParameterError: unknown parameters or wrong types.
            StartRefused: `missing_parameters`, `warming_up`, `preflight_failed`, `daily_cap_reached`.
        """
        actor.require(Scope.RUN, "start a run")
        if not self._ready:
            wait = self.deps.config.warmup_retry_after_s
            raise StartRefused(
                f"The orchestrator is still coming up after a restart; retry in {wait:.0f} seconds.",
                code="warming_up", retryable=True, retry_after=wait,
            )
        template = self.deps.catalog.flow(flow) if isinstance(flow, str) else flow
        bound, missing = bind_parameters(template, params or {})
        if missing:
            raise StartRefused(
                f"Fill in the required parameter{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} to start {template.name!r}.",
                code="missing_parameters", missing=missing,
            )
        launch = launch or Launch()
        record = await launch_record(self.deps, actor.workspace, launch)
        profile = select_profile_name(self.deps.catalog, sandbox_profile, bound, template.defaults.sandbox_profile,
                                      record)
        await preflight(self.deps, template, profile, bound, record)
        run = Run(
            workspace=actor.workspace, flow=template, params=bound, started_by=actor.id, launch=launch,
            sandbox_profile=profile,
            execution_mode=ExecutionMode(execution_mode or template.defaults.execution_mode),
            checkpoint_mode=CheckpointMode(checkpoint_mode or template.defaults.checkpoint_mode),
            owner=self.deps.config.owner,
        )
        if record is not None:
            run = run.model_copy(update={"links": run.links.model_copy(update={record.kind: record.id})})
        run = machine.create(run)
        created = RunCreated(
            flow=template.id, params=bound, started_by=actor.id, execution_mode=run.execution_mode.value,
            checkpoint_mode=run.checkpoint_mode.value, sandbox_profile=profile,
        )
        cap = self.deps.config.plan_for(actor.workspace).daily_runs
        run, _ = await self.deps.store.create_run(run, [created], daily_cap=cap, day=datetime.now(UTC).date())
        await self._hand_over(run)
        return run

    def start_background(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, name: str) -> None:
        """A task that lives as long as the engine (a face's follower, e.g. a resource
        subscription): cancelled when the engine stops."""
        assert self._tg is not None, "the engine is not running (use `async with engine`)"
        self._tg.start_soon(fn, *args, name=name)

    def _spawn(self, run: Run, resume_step: Continuation | None = None) -> None:
        assert self._tg is not None, "the engine is not running (use `async with engine`)"
        if run.id in self._active:
            return
        active = Active()
        self._active[run.id] = active
        self._tg.start_soon(self._drive, run, active, resume_step, name=f"run {run.id}")

    async def _drive(self, run: Run, active: Active, resume_step: Continuation | None = None) -> None:
        try:
            with active.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_for_cancel, run, active)
                    try:
                        driver = RunDriver(self.deps, run, resume_step, fence=self.leases.owner)
                        driver.should_stop = lambda: self._draining
                        parked = await driver.drive()
                        active.lease_lost = active.lease_lost or driver.lease_lost
                        active.parked = parked.status.finished
                    except StorageError as exc:  # the store failed (a full disk): stop, say so, keep reading
                        log.error("run %s stopped: %s", run.id, exc.message)
                        self.halted[run.id] = exc
                        with anyio.CancelScope(shield=True):
                            await self._park_after_store_error(run.id)
                    except Exception as exc:  # a bug must fail this run, not the engine and every other run
                        log.exception("the task of run %s crashed", run.id)
                        with anyio.CancelScope(shield=True):
                            await self._fail_crashed(run.id, exc)
                    tg.cancel_scope.cancel()
            if active.scope.cancelled_caught:
                with anyio.CancelScope(shield=True):
                    if active.cancelled_by is not None:  # cancelled here
                        await self._commit_cancel(run.id, active.cancelled_by)
                    elif active.cancelled_elsewhere:  # already recorded: let go of the sandbox, say so
                        await release_and_record(self.deps, run.id, keep=True)
        finally:
            if active.lease_lost:  # another process drives it now: let go of it without a word
                self.leases.held.discard(run.id)
                self.deps.sandboxes.pop(run.id, None)
            if not self._closing:  # at shutdown, `Recovery.interrupt_active` decides what happens to it
                with anyio.CancelScope(shield=True):
                    try:
                        await self.leases.release([run.id])
                    except StorageError as exc:  # a full disk: the lease expires by itself
                        log.warning("run %s: its lease was not released: %s", run.id, exc.message)
            self._active.pop(run.id, None)  # only now: a claim made meanwhile found it still driven
            active.done.set()
            if run.id in self.halted:
                self._halt_changed.set()
                self._halt_changed = anyio.Event()
            elif active.parked and not (self._closing or self._draining or active.lease_lost):
                await self._look_again(run.id)

    async def _look_again(self, run_id: str) -> None:
        """A run's task has parked it and let go of the lease. A command may have made the run
        runnable again meanwhile (a decision taken the moment it paused): its claim then found
        the run still driven here (and left it to this task), or this task's release undid it.
        So look once more, and drive it on or tell the workers."""
        try:
            lease = await self.deps.store.lease(run_id)
            if lease.status in (RunStatus.PENDING, RunStatus.RUNNING) and lease.owner in (None, self.leases.owner):
                await self._hand_over(await self.deps.store.get_run(run_id))
        except FlowrunError as exc:  # the store is away for a moment: a worker's claim loop finds it
            log.warning("run %s: could not look at it again after its task ended: %s", run_id, exc.message)

    async def _watch_for_cancel(self, run: Run, active: Active) -> None:
        """A run cancelled by another process (its CLI, another server) stops here too: the log
        is shared, so this task sees the `cancelled` status and stops the driver. It starts
        reading after a moment (from where the run was, so it misses nothing): a run that parks
        quickly never pays for it, and the driver's own compare-and-set catches it then."""
        await anyio.sleep(CANCEL_WATCH_DELAY_S)
        async for event in self.deps.store.subscribe(run.id, run.last_seq):
            data = event.data
            if data.type == "run_status" and data.status == RunStatus.CANCELLED and active.cancelled_by is None:
                active.cancelled_elsewhere = True
                active.scope.cancel()
                return

    async def _park_after_store_error(self, run_id: str) -> None:
        """The run stops where it is: recorded as interrupted if the store takes that write (else
        the next process to start records it, its owner being gone), its sandbox kept."""
        try:
            run = await self.deps.store.get_run(run_id)
        except FlowrunError as again:
            log.warning("run %s stays as stored until the store can be read: %s", run_id, again.message)
            return
        await release_sandbox(self.deps, run, keep=True)
        if run.status == RunStatus.RUNNING:
            await self.recovery.mark_interrupted(run, "Interrupted: the store could not record the run; retry continues it.")

    async def wait_halted(self, run_id: str) -> FlowrunError:
        """Wait until this process stops driving the run because the store failed; the error."""
        while run_id not in self.halted:
            await self._halt_changed.wait()
        return self.halted[run_id]

    async def _fail_crashed(self, run_id: str, exc: Exception) -> None:
        run = await self.deps.store.get_run(run_id)
        if run.status != RunStatus.RUNNING:
            return
        new, events = machine.interrupt(run, f"Internal error ({type(exc).__name__}: {exc}); retry continues the run.")
        try:
            await self.deps.store.commit(new, events, expected_version=new.version, lease_owner=self.leases.owner)
        except ConcurrentUpdate:
            log.info("run %s changed while recording its crash", run_id)
        except StorageError as again:
            log.warning("run %s: its crash could not be recorded: %s", run_id, again.message)

    async def _commit_cancel(self, run_id: str, actor_id: str) -> Run:
        """Cancelled runs keep their sandbox parked, so a resume continues in the same workspace."""
        for attempt in range(3):
            run = await self.deps.store.get_run(run_id)
            new, events = machine.cancel(run, actor_id)
            link = await release_sandbox(self.deps, new, keep=True)
            if link is not None and link != new.links.sandbox:
                new, more = machine.link_sandbox(new, link)
                events = [*events, *more]
            try:
                run, _ = await self.deps.store.commit(new, events, expected_version=new.version)
                return run
            except ConcurrentUpdate:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # deciding and steering ----------------------------------------------------------------------

    async def decide(
        self,
        actor: Actor,
        run_id: str,
        decision: DecisionKind | str,
        *,
        comment: str = "",
        step: int | str | None = None,
        expected_version: int | None = None,
        decision_id: str | None = None,
        auto_reason: str | None = None,
    ) -> Run:
        """Approve, reject or skip the checkpoint a paused run waits at (compare-and-set).

        `auto_reason`: nobody decided; a policy did (a checkpoint's wait policy), for this reason.

        Raises:
            DecisionConflict: `already_decided` naming the first decision, `stale_checkpoint`.
            InvalidTransition: the run is not paused.
        """
        actor.require(Scope.RUN, "decide a checkpoint")
        run = await self.get_run(actor, run_id)
        kind = DecisionKind(decision)
        if decision_id is not None:
            prior = await self.deps.store.get_decision(decision_id)
            if prior is not None and prior.run_id == run_id:
                return deciding.answer_repeat(run, prior, kind)  # the first answer stands
        index = run.flow.step_index(step) if step is not None else None
        record = Decision(kind=kind, comment=(auto_reason or comment).strip(), actor=actor.id,
                          decision_id=decision_id, auto=auto_reason is not None)
        new, events = machine.decide(run, record, step=index, expected_version=expected_version)
        if kind != DecisionKind.REJECT:  # this process drives it from here
            new = new.model_copy(update={"owner": self.deps.config.owner})
        try:
            run, _ = await self.deps.store.commit(new, events, expected_version=new.version, decision_id=decision_id)
        except (ConcurrentUpdate, DecisionConflict) as exc:
            # someone decided (or cancelled) between our read and write: answer as the second one
            prior = await self.deps.store.get_decision(decision_id) if decision_id is not None else None
            if prior is not None and prior.run_id == run_id:
                return deciding.answer_repeat(await self.deps.store.get_run(run_id), prior, kind)
            if isinstance(exc, DecisionConflict):
                raise
            target = index if index is not None else (run.checkpoint.step if run.checkpoint else None)
            machine.decide(await self.deps.store.get_run(run_id), record, step=target)
            raise
        if run.status == RunStatus.REJECTED:
            link = await release_sandbox(self.deps, run, keep=False)
            if self.deps.config.snapshot_dir is not None:  # nothing of it will start again
                await Snapshots(self.deps.config.snapshot_dir).forget(run.id)
            if link is not None and link != run.links.sandbox:
                new, events = machine.link_sandbox(run, link)
                run, _ = await self.deps.store.commit(new, events, expected_version=new.version)
        elif run.status == RunStatus.RUNNING:
            await self._hand_over(run)
        return run

    async def cancel(self, actor: Actor, run_id: str) -> Run:
        """Stop a running or paused run, mark it cancelled and release its sandbox (kept, so a
        resume can continue). Raises InvalidTransition in any other state."""
        run = await self.get_run(actor, run_id)
        actor.require_cancel(run)
        machine.run_transition(run, machine.RunCommand.CANCEL)
        active = self._active.get(run_id)
        if active is not None:
            active.cancelled_by = actor.id
            active.scope.cancel()
            with anyio.fail_after(30):
                await active.done.wait()
            return await self.deps.store.get_run(run_id)
        return await self._commit_cancel(run_id, actor.id)

    async def resume(self, actor: Actor, run_id: str) -> Run:
        """Blocked or cancelled: continue from the first step not completed or skipped."""
        actor.require(Scope.RUN, "resume a run")
        run = await self.get_run(actor, run_id)
        new, events = machine.resume(run)
        new = new.model_copy(update={"owner": self.deps.config.owner})
        run, _ = await self.deps.store.commit(new, events, expected_version=new.version)
        await self._hand_over(run)
        return run

    async def retry(self, actor: Actor, run_id: str, *, clone: bool = False) -> Run:
        """Failed or interrupted: reset the first unfinished step and the ones after it, then
        continue. With `clone`, a fresh run linked both ways by the retry chain is started
        (and returned) instead; the original keeps its state and transcript."""
        actor.require(Scope.RUN, "retry a run")
        run = await self.get_run(actor, run_id)
        if not clone:
            new, events = machine.retry(run)
            new = new.model_copy(update={"owner": self.deps.config.owner})
            run, _ = await self.deps.store.commit(new, events, expected_version=new.version)
            await self._hand_over(run)
            return run
        original, fresh, original_events, fresh_events = machine.clone_for_retry(run, actor.id)
        fresh = fresh.model_copy(update={"owner": self.deps.config.owner})
        created = RunCreated(
            flow=fresh.flow.id, params=fresh.params, started_by=actor.id, execution_mode=fresh.execution_mode.value,
            checkpoint_mode=fresh.checkpoint_mode.value, sandbox_profile=fresh.sandbox_profile, retry_of=run.id,
        )
        _, fresh = await self.deps.store.commit_pair(  # a clone is a run started: it counts
            (original, original_events, original.version), (fresh, [created, *fresh_events]),
            daily_cap=self.deps.config.plan_for(fresh.workspace).daily_runs, day=datetime.now(UTC).date(),
        )
        await self._hand_over(fresh)
        return fresh

    # reading ------------------------------------------------------------------------------------

    async def get_run(self, actor: Actor, run_id: str) -> Run:
        actor.require(Scope.READ, "view runs")
        run = await self.deps.store.get_run(run_id)
        actor.require_workspace(run)
        return run

    async def list_runs(self, actor: Actor, *, status: Sequence[RunStatus] | None = None,
                        flow: str | None = None, limit: int = 50, before: str | None = None) -> list[Run]:
        """Newest first; `before` (a run id) pages on: only runs listed after it."""
        actor.require(Scope.READ, "view runs")
        return await self.deps.store.list_runs(
            RunFilter(status=list(status) if status else None, flow=flow, workspace=actor.workspace, limit=limit,
                      before=before)
        )

    def list_flows(self, actor: Actor) -> list[FlowTemplate]:
        actor.require(Scope.READ, "view flows")
        return sorted(self.deps.catalog.flows.values(), key=lambda f: f.id)

    async def events(self, actor: Actor, run_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        await self.get_run(actor, run_id)
        return await self.deps.store.events(run_id, after_seq, limit)

    async def subscribe(self, actor: Actor, run_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        await self.get_run(actor, run_id)
        async for event in self.deps.store.subscribe(run_id, after_seq):
            yield event

    async def wait_until(self, actor: Actor, run_id: str, *, statuses: Sequence[RunStatus] | None = None,
                         timeout_s: float = 30.0, after_seq: int | None = None) -> Run:
        """Wait (bounded) until the run reaches one of `statuses` (default: parked), or, with
        `after_seq`, until anything happens after that seq. Returns the run as it is then."""
        run = await self.get_run(actor, run_id)
        wanted = set(statuses) if statuses else {s for s in RunStatus if s.finished}
        if after_seq is None and run.status in wanted:
            return run
        start = run.last_seq if after_seq is None else after_seq
        with anyio.move_on_after(timeout_s):
            async for event in self.deps.store.subscribe(run_id, start):
                if after_seq is not None:
                    break
                if event.data.type == "run_status" and event.data.status in wanted:
                    break
        return await self.deps.store.get_run(run_id)

    async def health_events(self, actor: Actor, *, open_only: bool = True) -> list[RecordRow]:
        """Health events of this workspace's runs (the link a blocked run's banner shows)."""
        actor.require(Scope.READ, "view health events")
        events = await self.deps.store.list_records(HEALTH_EVENT)
        mine = []
        for event in events:
            run_id = str(event.data.get("run_id", ""))
            try:
                await self.get_run(actor, run_id)
            except NotFound:
                continue
            if not open_only or event.data.get("status") == "open":
                mine.append(event)
        return mine

    async def resolve_health_event(self, actor: Actor, event_id: str) -> RecordRow:
        """Mark a health event resolved; resume the run it blocked to continue."""
        actor.require(Scope.RUN, "resolve a health event")
        record = await get_health_event(self.deps.store, event_id)
        await self.get_run(actor, str(record.data.get("run_id", "")))
        return await resolve_health_event(self.deps.store, event_id, actor.id)

    async def idle(self, timeout_s: float = 30.0) -> None:
        """Wait until no run has an active task (tests, the CLI before it exits)."""
        with anyio.fail_after(timeout_s):
            while self._active:
                await next(iter(self._active.values())).done.wait()
