"""Schedules and checkpoint wait policies, with a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowrun.flows.enums import DecisionKind, LaunchKind, Plan, RunStatus, StepStatus
from flowrun.flows.errors import DecisionConflict, NotFound, TemplateError
from flowrun.flows.template import FlowTemplate
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.engine import Engine
from flowrun.runtime.triggers import Triggers, last_slot, slots_after

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
START = datetime(2026, 12, 3, 8, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def move(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def scheduled_catalog(cron: str = "*/5 * * * *", *, timezone: str = "UTC", checkpoint: dict[str, Any] | None = None,
                      paused: bool = False) -> Catalog:
    step: dict[str, Any] = {"name": "Ship", "skill": "ship"}
    if checkpoint is not None:
        step["checkpoint"] = checkpoint
    cat = catalog([step], parameters=[{"name": "goal", "default": "nightly"}])
    flow = cat.flows.pop("test-flow")
    cat.add_flow(FlowTemplate.model_validate({
        **flow.model_dump(), "id": "nightly",
        "triggers": {"schedule": {"cron": cron, "timezone": timezone, "paused": paused, "params": {"goal": "tidy"}}},
    }))
    return cat


def provider() -> ScriptedProvider:
    return scripts(ship=[submit("shipped")])  # every conversation replays the script


async def trigger_runs(engine: Engine) -> list[str]:
    runs = await engine.list_runs(ANA)
    return [r.id for r in runs if r.launch.kind == LaunchKind.TRIGGER]


def test_slots_in_a_timezone() -> None:
    from flowrun.flows.template import ScheduleTrigger

    nine_paris = ScheduleTrigger(cron="0 9 * * *", timezone="Europe/Paris")
    # 08:00:30 UTC is 09:00:30 in Paris (UTC+1 in December): the next 9 o'clock is tomorrow's
    assert slots_after(nine_paris, START, 2) == [datetime(2026, 12, 4, 8, 0, tzinfo=UTC),
                                                 datetime(2026, 12, 5, 8, 0, tzinfo=UTC)]
    assert last_slot(nine_paris, datetime(2026, 12, 3, 8, 0, tzinfo=UTC)) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("trigger", "problem"), [
    ({"cron": "every day"}, "not a valid cron expression"),
    ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
])
def test_bad_schedules_are_named(trigger: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FlowTemplate.model_validate({"id": "x", "name": "x", "steps": [{"name": "a", "skill": "a"}],
                                     "triggers": {"schedule": trigger}})


async def test_cadence_one_run_per_slot(tmp_path: Path) -> None:
    clock = Clock(START)
    async with running_engine(tmp_path, scheduled_catalog(), provider()) as engine:
        triggers = Triggers(engine, clock)
        assert await triggers.tick() == []  # first sight: the slot at 08:00 was before the schedule existed
        clock.move(minutes=4, seconds=30)  # 08:05:00
        fired = await triggers.tick()
        assert [c.status for c in fired] == ["done"]
        assert await triggers.tick() == []  # the same slot again: nothing
        clock.move(minutes=2)
        assert await triggers.tick() == []
        clock.move(minutes=3)  # 08:10:00
        assert len(await triggers.tick()) == 1
        ids = await trigger_runs(engine)
        assert len(ids) == 2
        run = await engine.get_run(ANA, ids[0])
        assert run.launch.ref == "schedule:nightly" and run.params == {"goal": "tidy"} and run.started_by == "trigger"
        run = await engine.wait_until(ANA, run.id, timeout_s=10)
        assert run.status == RunStatus.COMPLETED
        status = await triggers.status(ANA, "nightly")
        assert status.next_fires[0] == datetime(2026, 12, 3, 8, 15, tzinfo=UTC)
        assert [c.data["run_id"] for c in status.recent] == ids  # newest first, as runs are


async def test_pause_and_resume_fire_no_burst(tmp_path: Path) -> None:
    clock = Clock(START)
    async with running_engine(tmp_path, scheduled_catalog(), provider()) as engine:
        triggers = Triggers(engine, clock)
        await triggers.tick()
        paused = await triggers.pause(ANA, "nightly")
        assert paused.paused and paused.next_fires == []
        clock.move(minutes=30)
        assert await triggers.tick() == []  # six slots pass while paused
        resumed = await triggers.resume(ANA, "nightly")
        assert not resumed.paused
        assert await triggers.tick() == []  # resuming fires none of the missed slots
        assert resumed.next_fires[0] == datetime(2026, 12, 3, 8, 35, tzinfo=UTC)  # the cadence goes on
        clock.move(minutes=5)
        assert len(await triggers.tick()) == 1
        assert len(await trigger_runs(engine)) == 1


async def test_a_slot_fires_once_across_a_restart_and_two_processes(tmp_path: Path) -> None:
    clock = Clock(START)
    cat = scheduled_catalog()
    async with running_engine(tmp_path, cat, provider()) as engine:
        await Triggers(engine, clock).tick()
        clock.move(minutes=4, seconds=31)
        assert len(await Triggers(engine, clock).tick()) == 1
    # a restart (a new engine on the same database) does not fire that slot again
    async with running_engine(tmp_path, cat, provider()) as engine:
        assert await Triggers(engine, clock).tick() == []
        clock.move(minutes=5)
        # two processes' schedulers on one database: one slot, one run
        async with running_engine(tmp_path, cat, provider()) as other:
            import anyio

            results: list[int] = []

            async def tick(e: Engine) -> None:
                results.append(len(await Triggers(e, clock).tick()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(tick, engine)
                tg.start_soon(tick, other)
            assert sorted(results) == [0, 1]
        assert len(await trigger_runs(engine)) == 2


async def test_a_refused_start_is_recorded(tmp_path: Path) -> None:
    clock = Clock(START)
    config = EngineConfig(default_plan=Plan.FREE)
    async with running_engine(tmp_path, scheduled_catalog("* * * * *"), provider(), config=config) as engine:
        triggers = Triggers(engine, clock)
        await triggers.tick()
        outcomes = []
        for _ in range(6):
            clock.move(minutes=1)
            outcomes += await triggers.tick()
        assert [c.status for c in outcomes] == ["done"] * 5 + ["refused"]
        assert outcomes[-1].data["code"] == "daily_cap_reached"
        recent = (await triggers.status(ANA, "nightly")).recent
        assert recent[0].status == "refused" and "cap" in recent[0].data["message"]


async def test_unknown_schedule_is_named(tmp_path: Path) -> None:
    async with running_engine(tmp_path, scheduled_catalog(), provider()) as engine:
        with pytest.raises(NotFound, match="no schedule.*nightly"):
            await Triggers(engine).pause(ANA, "test-flow")


# -- checkpoint wait policy ------------------------------------------------------------------


def waiting_catalog(then: str, after: str = "30m") -> Catalog:
    return catalog([{"name": "Plan", "skill": "plan"},
                    {"name": "Ship", "skill": "ship",
                     "checkpoint": {"message": "Sign off.", "on_timeout": {"after_s": after, "then": then}}}])


def two_steps() -> ScriptedProvider:
    return scripts(plan=[submit("planned")], ship=[submit("shipped")])


async def paused_run(engine: Engine) -> str:
    run = await engine.start_run(ANA, "test-flow")
    run = await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=10)
    return run.id


@pytest.mark.parametrize(("then", "status", "step_status"), [
    ("approve", RunStatus.COMPLETED, StepStatus.COMPLETED),
    ("reject", RunStatus.REJECTED, StepStatus.PENDING),
])
async def test_wait_policy_decides_after_the_time(tmp_path: Path, then: str, status: RunStatus,
                                                  step_status: StepStatus) -> None:
    async with running_engine(tmp_path, waiting_catalog(then), two_steps()) as engine:
        run_id = await paused_run(engine)
        reached = (await engine.get_run(ANA, run_id)).checkpoint
        assert reached is not None
        clock = Clock(reached.reached_at)
        triggers = Triggers(engine, clock)
        clock.move(minutes=29)
        assert await triggers.tick() == []
        clock.move(minutes=1)
        assert len(await triggers.tick()) == 1
        run = await engine.wait_until(ANA, run_id, statuses=[s for s in RunStatus if s.finished], timeout_s=10)
        assert run.status == status
        ship = run.steps[1]
        assert ship.decision is not None and ship.decision.auto
        assert ship.decision.kind == DecisionKind(then)
        assert "No decision within 30m" in ship.decision.comment
        assert any("No decision within 30m" in c.detail for c in ship.auto_resolved)
        if step_status == StepStatus.COMPLETED:
            assert ship.status == StepStatus.COMPLETED


async def test_wait_policy_survives_a_restart_and_a_person_first_wins(tmp_path: Path) -> None:
    cat = waiting_catalog("reject", after="1h")
    async with running_engine(tmp_path, cat, two_steps()) as engine:
        run_id = await paused_run(engine)
        reached = (await engine.get_run(ANA, run_id)).checkpoint
        assert reached is not None
    async with running_engine(tmp_path, cat, two_steps()) as engine:  # restarted: the timer is data
        clock = Clock(reached.reached_at + timedelta(hours=1))
        assert len(await Triggers(engine, clock).tick()) == 1
        run = await engine.wait_until(ANA, run_id, statuses=[RunStatus.REJECTED], timeout_s=10)
        with pytest.raises(DecisionConflict, match="already decided: reject automatically"):
            await engine.decide(ANA, run_id, "approve", step=1)
        assert run.error and "wait policy rejected it" in run.error
    # and a person who decided in time is never overruled
    cat2 = waiting_catalog("reject", after="1m")
    (tmp_path / "b").mkdir()
    async with running_engine(tmp_path / "b", cat2, two_steps()) as engine:
        run_id = await paused_run(engine)
        await engine.decide(ANA, run_id, "approve", comment="ship it")
        run = await engine.wait_until(ANA, run_id, statuses=[RunStatus.COMPLETED], timeout_s=10)
        assert await Triggers(engine, Clock(datetime.now(UTC) + timedelta(hours=2))).tick() == []
        assert run.steps[1].decision is not None and not run.steps[1].decision.auto


def test_wait_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        waiting_catalog("approve", after="soon")
    with pytest.raises((ValueError, TemplateError)):
        waiting_catalog("maybe")
