"""Timers: Flows on a cron schedule, and checkpoints that decide themselves when nobody does.

Each firing is a claim in the store (`schedule:<flow>:<slot>`, `timeout:<run>:<step>:<reached>`),
taken by exactly one process, so a slot fires at most once across restarts and with several
processes running. A start the engine refuses (the daily cap, a failed pre-flight) is recorded on
the claim, not lost. The clock is injectable, so tests move time instead of waiting for it.

Pausing a schedule stores its state; resuming sets `since` to now, so the slots missed while it
was paused never fire (no burst) and the cadence goes on from the next slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio
from anyio.abc import TaskStatus
from croniter import croniter
from pydantic import BaseModel

from ..flows.enums import DecisionKind, LaunchKind, RunStatus, Scope
from ..flows.errors import DecisionConflict, FlowrunError, InvalidTransition, NotFound, StartRefused
from ..flows.run import Launch, Run, now
from ..flows.template import FlowTemplate, ScheduleTrigger
from ..storage.base import ClaimRow, RecordRow
from .access import Actor

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flowrun.runtime")

SCHEDULE_KIND = "schedule"
CATCH_UP_S = 3600.0  # a slot missed while no process ran still fires if it is this recent
MAX_SLEEP_S = 5.0  # checkpoint timeouts are noticed within this


class ScheduleState(BaseModel):
    """What the store keeps of a schedule: paused or not, and since when slots count."""

    flow_id: str
    paused: bool
    since: datetime


class ScheduleStatus(BaseModel):
    flow_id: str
    cron: str
    timezone: str
    paused: bool
    next_fires: list[datetime]
    recent: list[ClaimRow]


def trigger_actor(workspace: str = "default") -> Actor:
    return Actor(id="trigger", workspace=workspace, scopes=frozenset({Scope.READ, Scope.RUN}))


def slots_after(trigger: ScheduleTrigger, start: datetime, count: int) -> list[datetime]:
    """The next `count` slots strictly after `start`, in UTC (cron read in the trigger's zone)."""
    it = croniter(trigger.cron, start.astimezone(ZoneInfo(trigger.timezone)))
    return [it.get_next(datetime).astimezone(UTC) for _ in range(count)]


def last_slot(trigger: ScheduleTrigger, at: datetime) -> datetime:
    """The latest slot at or before `at`, in UTC."""
    local = at.astimezone(ZoneInfo(trigger.timezone))
    it = croniter(trigger.cron, local + timedelta(microseconds=1))
    slot: datetime = it.get_prev(datetime)
    return slot.astimezone(UTC)


class Triggers:
    """Fires due schedule slots and checkpoint timeouts; `run` loops, `tick` fires once."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = now) -> None:
        self.engine = engine
        self.clock = clock

    @property
    def _store(self) -> Any:
        return self.engine.deps.store

    def _scheduled(self) -> list[tuple[FlowTemplate, ScheduleTrigger]]:
        return [(f, f.triggers.schedule) for f in self.engine.deps.catalog.flows.values()
                if f.triggers.schedule is not None]

    def _flow(self, flow_id: str) -> tuple[FlowTemplate, ScheduleTrigger]:
        for flow, trigger in self._scheduled():
            if flow.id == flow_id:
                return flow, trigger
        known = ", ".join(f.id for f, _ in self._scheduled()) or "none"
        raise NotFound(f"flow {flow_id!r} has no schedule (scheduled flows: {known})", flow=flow_id)

    # -- schedule state ------------------------------------------------------------------------

    async def _state(self, flow: FlowTemplate, trigger: ScheduleTrigger) -> ScheduleState:
        """The stored state; first seen, it starts now (a slot before a schedule existed never fires)."""
        record = await self._store.get_record(f"{SCHEDULE_KIND}:{flow.id}")
        if record is not None:
            return ScheduleState.model_validate(record.data)
        state = ScheduleState(flow_id=flow.id, paused=trigger.paused, since=self.clock())
        await self._put(state)
        return state

    async def _put(self, state: ScheduleState) -> None:
        await self._store.put_record(RecordRow(
            id=f"{SCHEDULE_KIND}:{state.flow_id}", kind=SCHEDULE_KIND, title=state.flow_id,
            data=state.model_dump(mode="json"),
        ))

    async def pause(self, actor: Actor, flow_id: str) -> ScheduleStatus:
        actor.require(Scope.RUN, "pause a schedule")
        flow, trigger = self._flow(flow_id)
        state = await self._state(flow, trigger)
        await self._put(state.model_copy(update={"paused": True}))
        return await self.status(actor, flow_id)

    async def resume(self, actor: Actor, flow_id: str) -> ScheduleStatus:
        """Slots missed while paused never fire: the cadence goes on from the next one."""
        actor.require(Scope.RUN, "resume a schedule")
        flow, trigger = self._flow(flow_id)
        state = await self._state(flow, trigger)
        if state.paused:
            await self._put(state.model_copy(update={"paused": False, "since": self.clock()}))
        return await self.status(actor, flow_id)

    async def status(self, actor: Actor, flow_id: str, count: int = 3) -> ScheduleStatus:
        actor.require(Scope.READ, "read schedules")
        flow, trigger = self._flow(flow_id)
        state = await self._state(flow, trigger)
        start = max(self.clock(), state.since)
        return ScheduleStatus(
            flow_id=flow.id, cron=trigger.cron, timezone=trigger.timezone, paused=state.paused,
            next_fires=[] if state.paused else slots_after(trigger, start, count),
            recent=await self._store.list_claims(f"{SCHEDULE_KIND}:{flow.id}:", limit=5),
        )

    async def statuses(self, actor: Actor) -> list[ScheduleStatus]:
        return [await self.status(actor, flow.id) for flow, _ in self._scheduled()]

    # -- firing --------------------------------------------------------------------------------

    async def tick(self) -> list[ClaimRow]:
        """Fire every due slot and checkpoint timeout once; returns what this process fired."""
        fired: list[ClaimRow] = []
        at = self.clock()
        for flow, trigger in self._scheduled():
            state = await self._state(flow, trigger)
            if state.paused:
                continue
            slot = last_slot(trigger, at)
            if slot <= state.since or (at - slot).total_seconds() > CATCH_UP_S:
                continue
            key = f"{SCHEDULE_KIND}:{flow.id}:{slot.isoformat()}"
            if await self._store.claim(key, {"flow": flow.id, "slot": slot.isoformat()}):
                fired.append(await self._start(key, flow, trigger, slot))
        fired += await self._timeouts(at)
        return fired

    async def _start(self, key: str, flow: FlowTemplate, trigger: ScheduleTrigger, slot: datetime) -> ClaimRow:
        data: dict[str, Any] = {"flow": flow.id, "slot": slot.isoformat()}
        try:
            run = await self.engine.start_run(
                trigger_actor(), flow.id, trigger.params,
                launch=Launch(kind=LaunchKind.TRIGGER, ref=f"schedule:{flow.id}"),
            )
        except StartRefused as exc:
            log.warning("the schedule of %s could not start a run at %s: %s", flow.id, slot, exc.message)
            data |= {"code": exc.code, "message": exc.message}
            await self._store.settle_claim(key, "refused", data)
            return ClaimRow(key=key, status="refused", data=data)
        except FlowrunError as exc:
            log.warning("the schedule of %s failed at %s: %s", flow.id, slot, exc.message)
            data |= {"code": exc.code, "message": exc.message}
            await self._store.settle_claim(key, "failed", data)
            return ClaimRow(key=key, status="failed", data=data)
        data["run_id"] = run.id
        await self._store.settle_claim(key, "done", data)
        return ClaimRow(key=key, status="done", data=data)

    async def _timeouts(self, at: datetime) -> list[ClaimRow]:
        fired: list[ClaimRow] = []
        for run in await self._store.runs_with_status([RunStatus.PAUSED]):
            due = timeout_due(run, at)
            if due is None:
                continue
            kind, reason = due
            assert run.checkpoint is not None
            key = f"timeout:{run.id}:{run.checkpoint.step}:{run.checkpoint.reached_at.isoformat()}"
            if not await self._store.claim(key, {"run_id": run.id, "decision": kind.value}):
                continue
            data: dict[str, Any] = {"run_id": run.id, "step": run.checkpoint.step, "decision": kind.value}
            try:
                await self.engine.decide(
                    trigger_actor(run.workspace), run.id, kind, step=run.checkpoint.step, auto_reason=reason,
                )
            except (DecisionConflict, InvalidTransition) as exc:  # a person was quicker: theirs stands
                data["superseded"] = exc.message
            await self._store.settle_claim(key, "done", data)
            fired.append(ClaimRow(key=key, status="done", data=data))
        return fired

    def next_wake(self, at: datetime) -> float:
        """Seconds until the next schedule slot, capped so checkpoint timeouts are seen soon."""
        wait = MAX_SLEEP_S
        for _, trigger in self._scheduled():
            wait = min(wait, (slots_after(trigger, at, 1)[0] - at).total_seconds())
        return max(wait, 0.01)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fire what is due, forever. A failing tick is logged and retried, never fatal."""
        task_status.started()
        while True:
            try:
                await self.tick()
            except FlowrunError as exc:
                log.warning("triggers: %s", exc.message)
            await anyio.sleep(self.next_wake(self.clock()))


def timeout_due(run: Run, at: datetime) -> tuple[DecisionKind, str] | None:
    """The decision a paused run's checkpoint wait policy takes at `at`, with its reason."""
    if run.checkpoint is None:
        return None
    spec = run.flow.steps[run.checkpoint.step].checkpoint
    policy = spec.on_timeout if spec else None
    if policy is None or policy.then == "wait":
        return None
    if (at - run.checkpoint.reached_at).total_seconds() < policy.after_s:
        return None
    kind = DecisionKind.APPROVE if policy.then == "approve" else DecisionKind.REJECT
    verb = "approved" if kind == DecisionKind.APPROVE else "rejected"
    return kind, f"No decision within {_human(policy.after_s)}: the checkpoint's wait policy {verb} it."


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"
