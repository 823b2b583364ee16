"""Advancing one run: conditions, checkpoints, steps, and where the sandbox goes in between.

`drive` is the body of the one task an active run has. It returns when the run parks (paused,
blocked, failed, completed...): a parked run is a row in the store, not a waiting coroutine,
so any process can pick it up again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from ..flows import machine
from ..flows.enums import CheckpointMode, ExecutionMode, Outcome, RunStatus, TranscriptKind
from ..flows.errors import ConcurrentUpdate, FlowrunError, LeaseLost
from ..flows.events import AgentMessages, EventData, TranscriptEntry
from ..flows.run import Run, SandboxLink, Usage
from ..llm.base import Message
from ..sandboxes.base import Sandbox
from ..storage.base import RecordRow
from .conditions import evaluate_when
from .context import EngineDeps, RunStopped, step_context
from .continuation import Continuation
from .parking import release_and_record
from .snapshots import Snapshots
from .step import acquire_sandbox, execute_step, release_sandbox
from .transcript import TranscriptSink
from .usage import record_usage_anyway

log = logging.getLogger("flowrun.runtime")


def checkpoint_message(run: Run, index: int) -> str | None:
    """The checkpoint message if the checkpoint mode pauses before this step, else None."""
    spec = run.flow.steps[index]
    if run.checkpoint_mode == CheckpointMode.NONE:
        return None
    if spec.checkpoint is not None:
        return spec.checkpoint.message
    if run.checkpoint_mode == CheckpointMode.EVERY:
        return f"Approve to run step {index + 1}, {spec.name!r}."
    return None


class RunDriver:
    def __init__(self, deps: EngineDeps, run: Run, continuation: Continuation | None = None, *,
                 fence: str | None = None) -> None:
        self.deps = deps
        self.run = run
        self.continuation = continuation
        # the lease owner driving: every write is fenced by it, so a driver that stalled past its
        # lease (and was taken over) writes nothing more, whatever it was in the middle of
        self.fence = fence
        self.lease_lost = False
        self.sink = TranscriptSink(deps.store, run.id, redactor=deps.redactor, fence=fence)
        self._usage_step: int | None = None
        self._usage_lock = anyio.Lock()  # sub-agents report usage concurrently
        self._deferred: list[EventData] = []
        snapshot_dir = deps.config.snapshot_dir
        self.snapshots = Snapshots(snapshot_dir) if snapshot_dir is not None else None
        # a graceful stop: the run goes no further than the step boundary it is at
        self.should_stop: Callable[[], bool] = lambda: False

    def defer(self, transition: machine.Transition) -> Run:
        """Hold a transition for the next commit. A finished step is committed together with
        whatever comes next (the next step starting, a pause, the run completing), which is
        immediate: one transaction per step instead of two."""
        self.run, events = transition
        self._deferred += events
        return self.run

    async def apply(self, transition: machine.Transition) -> Run:
        """Commit a transition, with the buffered transcript and any deferred events before it,
        in one transaction (so the log keeps them in order)."""
        new, events = transition
        try:
            async with self.sink.taken() as entries:
                deferred, self._deferred = self._deferred, []
                self.run, _ = await self.deps.store.commit(
                    new, [*entries, *deferred, *events], expected_version=new.version, lease_owner=self.fence
                )
        except LeaseLost:
            self._lost()
            raise RunStopped from None
        except ConcurrentUpdate:
            current = await self.deps.store.get_run(self.run.id)
            log.info("run %s changed under its driver (now %s); stopping", self.run.id, current.status)
            self.run = current
            raise RunStopped from None
        return self.run

    async def _on_link(self, link: SandboxLink) -> None:
        if self.run.links.sandbox != link:
            await self.apply(machine.link_sandbox(self.run, link))

    def _lost(self) -> None:
        if not self.lease_lost:
            self.lease_lost = True
            log.warning("lost the lease of run %s to another process; its driver stops here, writing nothing more",
                        self.run.id)

    async def _stop_if_not_ours(self) -> None:
        """Read the stored status and lease before a tool call starts: a cancel another process
        committed stops the run here, not only when the engine's watcher notices it a moment
        later; and a run another process took over (this one stalled past its lease) gets no
        further tool call from this one."""
        lease = await self.deps.store.lease(self.run.id)
        if self.sink.lost or (self.fence is not None and lease.owner != self.fence):
            self._lost()
            raise RunStopped
        if lease.status == RunStatus.CANCELLED:
            log.info("run %s was cancelled elsewhere; no further tool call starts", self.run.id)
            self.run = await self.deps.store.get_run(self.run.id)
            raise RunStopped

    async def _on_usage(self, usage: Usage) -> None:
        """Store a model turn's usage as soon as the turn is over, so a step cancelled or
        interrupted mid-step keeps its turns and cost. Shielded: a turn that was paid for is on
        the record even if the run is cancelled at that moment (by anyone, anywhere)."""
        async with self._usage_lock:
            with anyio.CancelScope(shield=True):
                try:
                    await self.apply(machine.record_usage(self.run, self._usage_step, usage))
                except RunStopped:
                    if not self.lease_lost:  # the run is someone else's now: nothing more from here
                        await record_usage_anyway(self.deps.store, self.run.id, self._usage_step, usage)
                    raise

    async def park(self, transition: machine.Transition, *, keep: bool) -> Run:
        """Park the run and release (keep) or destroy its sandbox.

        Kept: released first, then committed with the sandbox's new state in the same commit, so
        whoever sees the run parked also sees where its sandbox went. Destroyed: the run's end
        is recorded *first* and only then is its workspace destroyed (and the link's new state
        committed): a kill in between leaves a finished run and a leftover workspace, never an
        unfinished run whose workspace is gone."""
        new, events = transition
        if not keep:
            run = await self.apply((new, events))
            link = await release_sandbox(self.deps, run, keep=False)
            if self.snapshots is not None:
                with anyio.CancelScope(shield=True):  # recorded: a shutdown now only leaves litter
                    await self.snapshots.forget(run.id)
            if link is not None and link != run.links.sandbox:
                run = await self.apply(machine.link_sandbox(run, link))
            return run
        link = await release_sandbox(self.deps, new, keep=keep)
        if link is not None and link != new.links.sandbox:
            new, more = machine.link_sandbox(new, link)
            events = [*events, *more]
        return await self.apply((new, events))

    async def drive(self) -> Run:
        async with self.sink:
            try:
                await self._advance()
                if self._deferred:  # pragma: no cover - every path out of _advance applies
                    await self.apply((self.run, []))
            except RunStopped:
                if self.lease_lost:
                    return self.run
                if self.run.status.finished and self.run.status != RunStatus.PAUSED:
                    await release_and_record(self.deps, self.run.id, keep=True)
                    self.run = await self.deps.store.get_run(self.run.id)
        return self.run

    async def _record(self) -> RecordRow | None:
        if self.run.launch.ref and self.run.launch.kind.value == "record":
            return await self.deps.store.get_record(self.run.launch.ref)
        return None

    async def _advance(self) -> None:
        run = self.run
        if run.status == RunStatus.PENDING:
            run = await self.apply(machine.start(run))
        record = await self._record()
        if self.continuation is not None:  # a step that was streaming when the process died
            continuation, self.continuation = self.continuation, None
            run = await self._run_step(continuation.step, record, continuation)
        while run.status == RunStatus.RUNNING:
            if self.should_stop():  # handed over: the finished step is committed, no next one
                if self._deferred:
                    await self.apply((run, []))
                return
            index = machine.first_unfinished(run)
            if index is None:
                await self.park(machine.complete(run), keep=False)
                return
            spec = run.flow.steps[index]
            if spec.when is not None:
                try:
                    go = await evaluate_when(spec.when, step_context(run, record))
                except FlowrunError as exc:
                    reason = f"Step {index + 1} {spec.name!r}: its condition failed: {exc.message}"
                    await self.park(machine.fail(run, reason), keep=True)
                    return
                if not go:
                    run = await self.apply(machine.skip_step(run, index, f"condition {spec.when!r} is false"))
                    continue
            message = checkpoint_message(run, index)
            decision = run.steps[index].decision
            if message is not None and decision is not None and run.steps[index].attempt > 0:
                await self.sink.emit(TranscriptEntry(  # a retry after the sign-off: it still stands
                    kind=TranscriptKind.INFO, step=index, data={"decision": decision.model_dump(mode="json")},
                    text=f"The approval {decision.actor} gave for step {index + 1} at {decision.at:%Y-%m-%d %H:%M:%S} "
                         "UTC still stands: the step runs again without asking.",
                ))
            if message is not None and decision is None:
                background = run.execution_mode == ExecutionMode.BACKGROUND
                if background and spec.checkpoint is not None and spec.checkpoint.auto_approve_in_background:
                    run = await self.apply(machine.auto_approve(run, index))
                elif background:  # release the environment rather than hold it idle
                    await self.park(machine.pause_at(run, index, message), keep=True)
                    return
                else:  # interactive: hold the sandbox while the person decides
                    await self.apply(machine.pause_at(run, index, message))
                    return
            run = await self._run_step(index, record)

    async def _run_step(self, index: int, record: RecordRow | None, continuation: Continuation | None = None) -> Run:
        if continuation is None:
            run = await self.apply(machine.begin_step(self.run, index))
        else:
            run = self.run
            await self.sink.emit(TranscriptEntry(
                kind=TranscriptKind.INFO, step=index,
                text=f"The engine restarted; step {index + 1} continues where it was, re-attached to its running command.",
            ))
        self._usage_step = index
        step_for_setup = None if all(s.started_at is None for s in run.steps if s.index != index) else index
        attempt = run.steps[index].attempt

        async def acquire() -> Sandbox:
            sandbox = await acquire_sandbox(self.deps, self.run, self.sink, step_for_setup, self._on_link)
            if continuation is None and self.snapshots is not None:
                await self.snapshots.at_step_start(sandbox, self.run, index, self.sink)
            return sandbox

        async def persist(messages: list[Message], before_tools: bool) -> None:
            dumped = [m.model_dump(mode="json") for m in messages]
            await self.sink.log(AgentMessages(step=index, attempt=attempt, messages=dumped))
            if before_tools:
                await self.sink.flush()

        outcome = await execute_step(self.deps, run, index, acquire, self.sink, record, self._on_usage,
                                     persist=persist, continuation=continuation, before_tool=self._stop_if_not_ours)
        run, transition_events = machine.finish_step(self.run, index, outcome.result, error=outcome.error)
        if outcome.blocked is not None:
            run, events = machine.block(run, outcome.blocked)
            lost = run.links.sandbox
            if outcome.blocked.details.get("sandbox_lost") and lost is not None:
                self.deps.sandboxes.pop(run.id, None)
                run, more = machine.link_sandbox(run, lost.model_copy(update={"state": "destroyed"}))
                events = [*events, *more]
        elif outcome.result.outcome == Outcome.ERROR:
            run, events = machine.fail(run, f"Step {index + 1} {run.steps[index].name!r} failed: {outcome.result.summary}")
        else:
            return self.defer((run, transition_events))
        # failed or blocked: park the sandbox, kept for a retry or resume
        return await self.park((run, transition_events + events), keep=True)
