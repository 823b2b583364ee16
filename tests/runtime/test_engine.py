"""The engine against the product document's rules, with the scripted model and the no-op sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows.enums import (
    BlockedCause,
    DecisionKind,
    Outcome,
    Plan,
    RunStatus,
    Scope,
    StepStatus,
    TaskState,
    TranscriptKind,
)
from flowrun.flows.errors import (
    DecisionConflict,
    InvalidTransition,
    NotFound,
    ParameterError,
    PermissionDenied,
    StartRefused,
)
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.run import Launch, Run
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.engine import Engine
from flowrun.storage.base import RecordRow
from tests.storekinds import StoreKind

from .harness import catalog, expecting, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]

THREE_STEPS: list[dict[str, Any]] = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"},
               {"name": "Ship", "skill": "ship", "checkpoint": {"message": "Sign off before the PR opens."}}]


def simple_provider(cost: float = 0.01):  # type: ignore[no-untyped-def]
    turn = {"thinking": "hmm", "text": "working", "cost_usd": cost, "input_tokens": 100, "output_tokens": 10}
    return scripts(
        plan=[{**turn, "tools": [{"name": "todo_write", "input": {"todos": [{"content": "plan it"}]}}]}, submit("planned")],
        build=[{**turn, **submit("built")}],
        ship=[submit("shipped")],
    )


async def settle(engine: Engine, run: Run, statuses: list[RunStatus] | None = None) -> Run:
    return await engine.wait_until(ANA, run.id, statuses=statuses or PARKED, timeout_s=10)


async def step_running(engine: Engine, run: Run, index: int = 0) -> None:
    with anyio.fail_after(5):
        async for event in engine.subscribe(ANA, run.id):
            data = event.data
            if data.type == "step_status" and data.step == index and data.status == StepStatus.RUNNING:
                return


async def transcript(engine: Engine, run: Run) -> list[TranscriptEntry]:
    return [e.data for e in await engine.events(ANA, run.id) if isinstance(e.data, TranscriptEntry)]


async def test_template_checkpoint_pauses_before_the_marked_step_and_approve_completes(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.PAUSED
        assert run.checkpoint is not None and run.checkpoint.step == 2
        assert run.checkpoint.message == "Sign off before the PR opens."
        assert run.checkpoint.previous_summary == "built"
        assert run.steps[2].status == StepStatus.PENDING  # decided before the step runs
        run = await engine.decide(ANA, run.id, "approve", comment="Looks good, ship it", step=2)
        run = await settle(engine, run)
        assert run.status == RunStatus.COMPLETED
        assert [s.status for s in run.steps] == [StepStatus.COMPLETED] * 3
        decision = run.steps[2].decision
        assert decision is not None and decision.comment == "Looks good, ship it" and decision.actor == "ana"
        # turns, tokens and dollars per step, rolled up on the run
        assert [s.usage.turns for s in run.steps] == [2, 1, 1]
        assert run.usage.turns == 4 and run.usage.cost_usd == pytest.approx(0.02)
        assert run.usage.input_tokens == sum(s.usage.input_tokens for s in run.steps)
        changes = [(e.data.step, e.data.status) for e in await engine.events(ANA, run.id) if e.data.type == "step_status"]
        assert len(changes) == len(set(changes)) == 6  # running and completed, once each per step that ran
        kinds = {e.kind for e in await transcript(engine, run)}
        assert {TranscriptKind.SETUP, TranscriptKind.TEXT, TranscriptKind.THINKING, TranscriptKind.TOOL_START,
                TranscriptKind.TOOL_END, TranscriptKind.INFO} <= kinds


async def test_reject_stops_the_run_with_the_comment_or_a_default(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        first = await settle(engine, await engine.start_run(ANA, "test-flow"))
        rejected = await engine.decide(ANA, first.id, DecisionKind.REJECT)
        assert rejected.status == RunStatus.REJECTED and rejected.error == "Rejected at the checkpoint."
        second = await settle(engine, await engine.start_run(ANA, "test-flow"))
        rejected = await engine.decide(ANA, second.id, "reject", comment="wrong track")
        assert rejected.error == "wrong track"
        assert rejected.steps[2].status == StepStatus.PENDING  # never ran


async def test_skip_of_the_last_step_completes_the_run(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        run = await settle(engine, await engine.decide(ANA, run.id, "skip", comment="not this time"))
        assert run.status == RunStatus.COMPLETED
        assert run.steps[2].status == StepStatus.SKIPPED and run.steps[2].usage.turns == 0


@pytest.mark.parametrize(("mode", "pauses"), [("template", 1), ("every", 3), ("none", 0)])
async def test_checkpoint_modes(tmp_path: Path, mode: str, pauses: int) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await engine.start_run(ANA, "test-flow", checkpoint_mode=mode)
        seen = 0
        while (run := await settle(engine, run)).status == RunStatus.PAUSED:
            seen += 1
            await engine.decide(ANA, run.id, "approve")
        assert run.status == RunStatus.COMPLETED and seen == pauses


async def test_interactive_pause_holds_the_sandbox(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow", execution_mode="interactive"))
        assert run.task is None
        assert run.links.sandbox is not None and run.links.sandbox.state == "active"
        assert run.id in engine.deps.sandboxes


async def test_background_pause_releases_the_sandbox_and_approve_reacquires_it(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow", execution_mode="background"))
        assert run.status == RunStatus.PAUSED
        assert run.task is not None and run.task.state == TaskState.REVIEW
        assert run.links.sandbox is not None and run.links.sandbox.state == "released"
        assert run.id not in engine.deps.sandboxes
        sandbox_id = run.links.sandbox.id
        run = await settle(engine, await engine.decide(ANA, run.id, "approve"))
        assert run.status == RunStatus.COMPLETED and run.task is not None and run.task.state == TaskState.DONE
        setups = [e for e in await transcript(engine, run) if e.kind == TranscriptKind.SETUP]
        assert any("Reconnecting" in e.text for e in setups)
        assert run.links.sandbox is not None and run.links.sandbox.id == sandbox_id  # the same sandbox
        # the task carries the run's total turns and cost
        assert run.usage.turns == 4


async def test_background_auto_approve_continues_and_is_written_down(tmp_path: Path) -> None:
    steps = [*THREE_STEPS[:2], {"name": "Ship", "skill": "ship",
                                "checkpoint": {"message": "Sign off", "auto_approve_in_background": True}}]
    async with running_engine(tmp_path, catalog(steps), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow", execution_mode="background"))
        assert run.status == RunStatus.COMPLETED
        decision = run.steps[2].decision
        assert decision is not None and decision.auto and decision.kind == DecisionKind.APPROVE
        assert [r.tool for r in run.steps[2].auto_resolved] == ["checkpoint"]
        # the same flag does nothing in interactive mode: it pauses
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.PAUSED


async def test_condition_false_skips_the_step(tmp_path: Path) -> None:
    steps = [{"name": "Plan", "skill": "plan"},
             {"name": "Build", "skill": "build", "when": "params.build and steps.Plan.outcome == 'success'"}]
    async with running_engine(tmp_path, catalog(steps, parameters=[{"name": "build", "type": "boolean"}]),
                              simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow", {"build": "false"}))
        assert [s.status for s in run.steps] == [StepStatus.COMPLETED, StepStatus.SKIPPED]
        run = await settle(engine, await engine.start_run(ANA, "test-flow", {"build": True}))
        assert [s.status for s in run.steps] == [StepStatus.COMPLETED, StepStatus.COMPLETED]


async def test_step_without_a_result_is_partial(tmp_path: Path) -> None:
    provider = scripts(plan=[{"text": "I think I'm done."}])
    async with running_engine(tmp_path, catalog([{"name": "Plan", "skill": "plan"}]), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED
        assert run.steps[0].outcome == Outcome.PARTIAL and "without submitting" in run.steps[0].summary


async def test_turn_budget_ends_the_step_partial(tmp_path: Path) -> None:
    loop = {"tools": [{"name": "todo_write", "input": {"todos": []}}]}
    provider = scripts(plan=[loop, loop])
    steps = [{"name": "Plan", "skill": "plan", "max_turns": 2}]
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.steps[0].outcome == Outcome.PARTIAL and "2 turns" in run.steps[0].summary


SCHEMA = {"output_schema": {"type": "object", "properties": {"files": {"type": "array"}}, "required": ["files"]}}


async def test_invalid_result_goes_back_with_the_errors_then_passes(tmp_path: Path) -> None:
    provider = scripts(plan=[expecting(submit("first try")), submit("second try", files=["a.py"])])
    async with running_engine(tmp_path, catalog([{"name": "Plan", "skill": "plan"}], skills={"plan": SCHEMA}),
                              provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED and run.steps[0].output == {"files": ["a.py"]}
        errors = [e for e in await transcript(engine, run) if e.kind == TranscriptKind.TOOL_END and e.is_error]
        assert "'files' is a required property" in errors[0].text


async def test_result_failing_validation_too_often_fails_the_step_and_retry_continues(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("ok", files=[])], build=[expecting(submit("bad"))] * 3)
    cat = catalog(THREE_STEPS[:2], skills={"build": SCHEMA})
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.FAILED and run.steps[1].status == StepStatus.FAILED
        assert "failed validation 3 times" in run.steps[1].summary
        with pytest.raises(InvalidTransition):
            await engine.resume(ANA, run.id)  # a failed run is retried, not resumed
        provider.scripts["build"] = scripts(build=[submit("fixed", files=["x"])]).scripts["build"]
        run = await settle(engine, await engine.retry(ANA, run.id))
        assert run.status == RunStatus.COMPLETED
        assert run.steps[0].usage.turns == 1  # the completed step was not repeated
        assert run.steps[1].summary == "fixed" and run.steps[1].attempt == 2
        # the prior transcript stays
        assert any(e.kind == TranscriptKind.TOOL_END and e.is_error for e in await transcript(engine, run))


async def test_retry_as_clone_links_the_retry_chain(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("ok")], build=[submit("boom", outcome="error")])
    async with running_engine(tmp_path, catalog(THREE_STEPS[:2]), provider) as engine:
        failed = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert failed.status == RunStatus.FAILED
        provider.scripts["build"] = scripts(build=[submit("fine")]).scripts["build"]
        clone = await engine.retry(ANA, failed.id, clone=True)
        assert clone.id != failed.id and clone.retry_of == failed.id
        clone = await settle(engine, clone)
        assert clone.status == RunStatus.COMPLETED
        original = await engine.get_run(ANA, failed.id)
        assert original.retried_as == [clone.id] and original.status == RunStatus.FAILED


async def test_step_reported_blocked_parks_the_run_and_resume_continues(tmp_path: Path) -> None:
    blocked = {"tools": [{"name": "report_blocked", "input": {"reason": "No deploy key.", "needs": "a deploy key"}}]}
    provider = scripts(plan=[submit("ok")], build=[blocked])
    async with running_engine(tmp_path, catalog(THREE_STEPS[:2]), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.BLOCKED and run.blocked is not None
        assert run.blocked.cause == BlockedCause.STEP_REPORTED_BLOCKED and run.blocked.step == 1
        assert "deploy key" in run.blocked.message and run.blocked.fix
        assert run.steps[1].status == StepStatus.BLOCKED
        with pytest.raises(InvalidTransition):
            await engine.retry(ANA, run.id)  # blocked is resumed
        provider.scripts["build"] = scripts(build=[submit("built")]).scripts["build"]
        run = await settle(engine, await engine.resume(ANA, run.id))
        assert run.status == RunStatus.COMPLETED and run.blocked is None


async def test_cancel_a_running_run_then_resume(tmp_path: Path) -> None:
    provider = scripts(plan=[{"delay_s": 30, **submit("slow")}])
    async with running_engine(tmp_path, catalog([{"name": "Plan", "skill": "plan"}]), provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        await step_running(engine, run)
        run = await engine.cancel(ANA, run.id)
        assert run.status == RunStatus.CANCELLED and run.steps[0].status == StepStatus.CANCELLED
        assert run.links.sandbox is not None and run.links.sandbox.state == "released"
        with pytest.raises(InvalidTransition, match="cancelled"):
            await engine.cancel(ANA, run.id)
        provider.scripts["plan"] = scripts(plan=[submit("quick")]).scripts["plan"]
        run = await settle(engine, await engine.resume(ANA, run.id))
        assert run.status == RunStatus.COMPLETED


async def test_cancel_a_paused_run(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        run = await engine.cancel(ANA, run.id)
        assert run.status == RunStatus.CANCELLED and run.checkpoint is None
        with pytest.raises(InvalidTransition):
            await engine.decide(ANA, run.id, "approve")


async def test_decisions_are_compare_and_set_and_idempotent(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        with pytest.raises(DecisionConflict) as stale:
            await engine.decide(ANA, run.id, "approve", expected_version=run.version - 1)
        assert stale.value.code == "stale_checkpoint"
        first = await engine.decide(ANA, run.id, "approve", decision_id="d-1", expected_version=run.version)
        again = await engine.decide(ANA, run.id, "approve", decision_id="d-1")
        assert again.id == first.id and again.status != RunStatus.REJECTED
        with pytest.raises(DecisionConflict) as second:
            await engine.decide(Actor("bo"), run.id, "reject", step="Ship", decision_id="d-2")
        assert second.value.code == "already_decided" and "approve by ana" in second.value.message


async def test_two_concurrent_decisions_apply_exactly_one(tmp_path: Path, store_kind: StoreKind) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider(), kind=store_kind) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        outcomes: list[str] = []

        async def decide(kind: str) -> None:
            try:
                await engine.decide(ANA, run.id, kind, step=2, expected_version=run.version)
                outcomes.append(kind)
            except DecisionConflict as exc:
                outcomes.append(exc.code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(decide, "approve")
            tg.start_soon(decide, "reject")
        assert len(outcomes) == 2 and sum(o in ("approve", "reject") for o in outcomes) == 1
        decisions = [e for e in await engine.events(ANA, run.id) if e.data.type == "decision"]
        assert len(decisions) == 1


async def test_decision_on_a_run_that_is_not_paused(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS[:2]), simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        with pytest.raises(InvalidTransition, match="completed"):
            await engine.decide(ANA, run.id, "approve")


async def test_unknown_run_and_flow(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        with pytest.raises(NotFound, match="run_nope"):
            await engine.get_run(ANA, "run_nope")
        with pytest.raises(NotFound, match="no flow 'nope'"):
            await engine.start_run(ANA, "nope")


# -- start refusals -------------------------------------------------------------------------------

PARAMS: list[dict[str, Any]] = [{"name": "goal", "type": "string", "required": True}, {"name": "repo", "type": "string", "required": True},
          {"name": "count", "type": "integer"}]


async def test_missing_required_parameters_are_named(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS, parameters=PARAMS), simple_provider()) as engine:
        with pytest.raises(StartRefused) as info:
            await engine.start_run(ANA, "test-flow", {"goal": ""})
        assert info.value.code == "missing_parameters" and info.value.details["missing"] == ["goal", "repo"]
        with pytest.raises(ParameterError, match="'count' must be an integer"):
            await engine.start_run(ANA, "test-flow", {"goal": "g", "repo": "r", "count": "x"})
        assert await engine.list_runs(ANA) == []  # nothing was stored


async def test_daily_cap_per_workspace_and_plan(tmp_path: Path) -> None:
    config = EngineConfig(plans={"free": Plan.FREE, "team": Plan.TEAM})
    async with running_engine(tmp_path, catalog(THREE_STEPS[:1]), simple_provider(), config=config) as engine:
        free, team = Actor("ana", workspace="free"), Actor("bo", workspace="team")
        for _ in range(5):
            await engine.start_run(free, "test-flow")
        with pytest.raises(StartRefused) as info:
            await engine.start_run(free, "test-flow")
        assert info.value.code == "daily_cap_reached" and "resets" in info.value.message
        for _ in range(6):
            await engine.start_run(team, "test-flow")  # another workspace, another allowance
        await engine.idle()
        assert len(await engine.list_runs(free)) == 5


async def test_warming_up_after_a_restart_is_a_retryable_refusal(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        engine._ready = False  # as during recovery at start-up
        with pytest.raises(StartRefused) as info:
            await engine.start_run(ANA, "test-flow")
        assert info.value.code == "warming_up" and info.value.retryable and info.value.details["retry_after"] > 0


async def test_preflight_missing_record_is_a_start_failure(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        with pytest.raises(StartRefused) as info:
            await engine.start_run(ANA, "test-flow", launch=Launch(kind="record", ref="plan_missing"))
        assert info.value.code == "preflight_failed" and "plan_missing" in info.value.message
        await engine.deps.store.put_record(RecordRow(id="plan_1", kind="plan", title="CSV download", body="Add it."))
        run = await engine.start_run(ANA, "test-flow", launch=Launch(kind="record", ref="plan_1"))
        assert run.links.plan == "plan_1"


async def test_repository_id_selects_a_profile_or_fails_preflight(tmp_path: Path) -> None:
    from flowrun.flows.profiles import SandboxProfile

    profile = SandboxProfile(name="insights", backend="noop", repository_id="orcette/insights")
    params = [{"name": "repositoryId", "type": "string"}]
    cat = catalog(THREE_STEPS, parameters=params, profiles=[profile])
    async with running_engine(tmp_path, cat, simple_provider()) as engine:
        run = await engine.start_run(ANA, "test-flow", {"repositoryId": "orcette/insights"})
        assert run.sandbox_profile == "insights"
        run = await engine.start_run(ANA, "test-flow", {"repositoryId": "orcette/insights"}, sandbox_profile="noop")
        assert run.sandbox_profile == "noop"  # an explicit choice wins
        with pytest.raises(StartRefused, match="orcette/other"):
            await engine.start_run(ANA, "test-flow", {"repositoryId": "orcette/other"})


# -- scopes ----------------------------------------------------------------------------------------

READER = Actor("rita", scopes=frozenset({Scope.READ}))
RUNNER = Actor("rob", scopes=frozenset({Scope.READ, Scope.RUN}))
ADMIN = Actor("ada", scopes=frozenset({Scope.READ, Scope.CANCEL_ANY}))


async def test_scopes_are_enforced_in_the_engine(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(THREE_STEPS), simple_provider()) as engine:
        with pytest.raises(PermissionDenied, match="flows.run"):
            await engine.start_run(READER, "test-flow")
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert (await engine.get_run(READER, run.id)).id == run.id
        with pytest.raises(PermissionDenied):
            await engine.decide(READER, run.id, "approve")
        with pytest.raises(PermissionDenied, match="flows.cancel.any"):
            await engine.cancel(RUNNER, run.id)  # not their run
        assert (await engine.cancel(ADMIN, run.id)).status == RunStatus.CANCELLED
        own = await settle(engine, await engine.start_run(RUNNER, "test-flow"))
        assert (await engine.cancel(RUNNER, own.id)).status == RunStatus.CANCELLED
        with pytest.raises(PermissionDenied):
            await engine.get_run(Actor("nobody", scopes=frozenset()), run.id)
        with pytest.raises(NotFound):
            await engine.get_run(Actor("eve", workspace="other"), run.id)


# -- restarts --------------------------------------------------------------------------------------


async def test_a_run_left_running_by_a_dead_process_becomes_interrupted_and_retry_completes(tmp_path: Path) -> None:
    provider = scripts(plan=[{"delay_s": 30, **submit("slow")}])
    cat = catalog([{"name": "Plan", "skill": "plan"}], defaults={"sandbox_profile": "local"})
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        await step_running(engine, run)
        # simulate a process that died: its task stops touching the run, the row still says
        # running, and its owner is a process that no longer exists
        engine._active[run.id].scope.cancel()
        await engine.idle()
        stored = await engine.deps.store.get_run(run.id)
        dead = stored.model_copy(update={"owner": "elsewhere:1"})
        await engine.deps.store.commit(dead, [], expected_version=stored.version)
    provider.scripts["plan"] = scripts(plan=[submit("done")]).scripts["plan"]
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await engine.get_run(ANA, run.id)
        assert run.status == RunStatus.INTERRUPTED and run.steps[0].status == StepStatus.CANCELLED
        run = await settle(engine, await engine.retry(ANA, run.id))
        assert run.status == RunStatus.COMPLETED


async def test_shutdown_mid_step_marks_the_run_interrupted_not_failed(tmp_path: Path) -> None:
    provider = scripts(plan=[{"delay_s": 30, **submit("slow")}])
    cat = catalog([{"name": "Plan", "skill": "plan"}])
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        await step_running(engine, run)
    async with running_engine(tmp_path, cat, provider) as engine:
        assert (await engine.get_run(ANA, run.id)).status == RunStatus.INTERRUPTED


async def test_a_vanished_sandbox_blocks_the_run_as_environment_unhealthy(tmp_path: Path) -> None:
    provider = scripts(plan=[{"text": "working", "tools": [{"name": "todo_write", "input": {"todos": []}}]},
                             {"delay_s": 30, **submit("slow")}])
    steps = [{"name": "Plan", "skill": "plan"}]
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        with anyio.fail_after(5):
            async for event in engine.subscribe(ANA, run.id):
                if isinstance(event.data, TranscriptEntry) and event.data.kind == TranscriptKind.TOOL_END:
                    break  # mid-step, with a sandbox
    # a new process: the no-op backend's sandboxes lived in the old one's memory
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        run = await settle(engine, await engine.retry(ANA, run.id))
        assert run.status == RunStatus.BLOCKED and run.blocked is not None
        assert run.blocked.cause == BlockedCause.ENVIRONMENT_UNHEALTHY and run.blocked.fix
        # the banner links a health event; resolving it and resuming continues in a new sandbox
        [health] = await engine.health_events(ANA)
        assert run.blocked.details["health_event"] == health.id and health.data["run_id"] == run.id
        assert run.links.sandbox is not None and run.links.sandbox.state == "destroyed"
        await engine.resolve_health_event(ANA, health.id)
        assert await engine.health_events(ANA) == []
        provider.scripts["plan"] = scripts(plan=[submit("done")]).scripts["plan"]
        run = await settle(engine, await engine.resume(ANA, run.id))
        assert run.status == RunStatus.COMPLETED


async def test_a_failing_health_check_blocks_with_a_health_event_and_resume_continues(tmp_path: Path) -> None:
    from flowrun.flows.profiles import SandboxProfile

    broken = SandboxProfile(name="tooled", backend="local", tools=["git", "no-such-tool-xyz"])
    cat = catalog([{"name": "Plan", "skill": "plan"}], defaults={"sandbox_profile": "tooled"}, profiles=[broken])
    async with running_engine(tmp_path, cat, scripts(plan=[submit("planned")])) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.BLOCKED and run.blocked is not None
        assert run.blocked.cause == BlockedCause.ENVIRONMENT_UNHEALTHY
        assert "no-such-tool-xyz" in run.blocked.message and "no-such-tool-xyz" in run.blocked.fix
        [event] = await engine.health_events(ANA)
        with pytest.raises(PermissionDenied):
            await engine.resolve_health_event(READER, event.id)
        cat.profiles["tooled"] = broken.model_copy(update={"tools": ["git"]})  # the fix
        await engine.resolve_health_event(ANA, event.id)
        run = await settle(engine, await engine.resume(ANA, run.id))
        assert run.status == RunStatus.COMPLETED and run.steps[0].summary == "planned"


async def test_a_paused_interactive_run_parks_its_sandbox_when_the_engine_stops(tmp_path: Path) -> None:
    cat = catalog(THREE_STEPS, defaults={"sandbox_profile": "local"})
    async with running_engine(tmp_path, cat, simple_provider()) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.links.sandbox is not None and run.links.sandbox.state == "active"
    async with running_engine(tmp_path, cat, simple_provider()) as engine:
        run = await engine.get_run(ANA, run.id)
        assert run.status == RunStatus.PAUSED  # a parked run is data: it survives the restart
        assert run.links.sandbox is not None and run.links.sandbox.state == "released"
        # any process can decide it; the new one reacquires the same workspace and finishes
        run = await settle(engine, await engine.decide(ANA, run.id, "approve", comment="after the restart"))
        assert run.status == RunStatus.COMPLETED


async def test_a_cancel_from_another_process_stops_the_driving_one(tmp_path: Path) -> None:
    provider = scripts(plan=[{"delay_s": 60, **submit("slow")}])
    cat = catalog([{"name": "Plan", "skill": "plan"}], defaults={"sandbox_profile": "local"})
    async with (
        running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-a:1")) as driving,
        running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-b:2")) as other,
    ):
        run = await driving.start_run(ANA, "test-flow")
        await step_running(driving, run)
        cancelled = await other.cancel(ANA, run.id)  # not driven there: recorded directly
        assert cancelled.status == RunStatus.CANCELLED
        await driving.idle(timeout_s=5)  # the driving process noticed and stopped its task
        run = await driving.get_run(ANA, run.id)
        assert run.status == RunStatus.CANCELLED and run.steps[0].status == StepStatus.CANCELLED
        assert run.id not in driving.deps.sandboxes
