"""The run's record tells the truth (issue 8 §2): the retry chain, the daily cap, repeated
decisions, usage per model turn, cancels of pending runs and from other processes, pre-flight of
remote repositories, and the scopes as the product document has them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows import machine
from flowrun.flows.enums import (
    CheckpointMode,
    ExecutionMode,
    Plan,
    RunStatus,
    Scope,
    StepStatus,
    TranscriptKind,
)
from flowrun.flows.errors import DecisionConflict, PermissionDenied, StartRefused
from flowrun.flows.profiles import RepositorySpec, SandboxProfile
from flowrun.flows.run import Run
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.engine import Engine
from flowrun.tools.views import next_actions, run_view
from tests.storekinds import StoreKind

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]
ONE_STEP: list[dict[str, Any]] = [{"name": "Plan", "skill": "plan"}]
SIGNED: list[dict[str, Any]] = [{"name": "Plan", "skill": "plan"},
          {"name": "Ship", "skill": "ship", "checkpoint": {"message": "Sign off before the PR opens."}}]


async def settle(engine: Engine, run: Run, actor: Actor = ANA) -> Run:
    return await engine.wait_until(actor, run.id, statuses=PARKED, timeout_s=10)


# -- the retry chain -----------------------------------------------------------------------------


async def test_cloning_the_same_run_twice_keeps_both_clones_in_the_chain(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("boom", outcome="error")])
    async with running_engine(tmp_path, catalog(ONE_STEP), provider) as engine:
        failed = await settle(engine, await engine.start_run(ANA, "test-flow"))
        first = await settle(engine, await engine.retry(ANA, failed.id, clone=True))
        second = await settle(engine, await engine.retry(ANA, failed.id, clone=True))
        original = await engine.get_run(ANA, failed.id)
        assert original.retried_as == [first.id, second.id]  # the chain keeps every clone, oldest first
        assert first.retry_of == second.retry_of == failed.id


# -- the daily cap ---------------------------------------------------------------------------------


async def test_a_clone_counts_against_the_daily_cap_and_is_refused_past_it(tmp_path: Path) -> None:
    config = EngineConfig(plans={"small": Plan.FREE})
    free = Actor("ana", workspace="small")
    async with running_engine(tmp_path, catalog(ONE_STEP), scripts(plan=[submit("boom", outcome="error")]),
                              config=config) as engine:
        failed = await settle(engine, await engine.start_run(free, "test-flow"), free)
        for _ in range(4):
            await settle(engine, await engine.retry(free, failed.id, clone=True), free)
        today = datetime.now(UTC).date()
        assert await engine.deps.store.runs_started("small", today) == 5
        with pytest.raises(StartRefused) as refused:
            await engine.retry(free, failed.id, clone=True)
        assert refused.value.code == "daily_cap_reached"
        assert len(await engine.list_runs(free)) == 5  # nothing was stored
        assert len((await engine.get_run(free, failed.id)).retried_as) == 4
        with pytest.raises(StartRefused):
            await engine.start_run(free, "test-flow")


async def test_business_runs_are_counted_though_uncapped(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(ONE_STEP), scripts(plan=[submit("boom", outcome="error")])) as engine:
        assert engine.deps.config.plan_for("default") == Plan.BUSINESS
        failed = await settle(engine, await engine.start_run(ANA, "test-flow"))
        await settle(engine, await engine.retry(ANA, failed.id, clone=True))
        assert await engine.deps.store.runs_started("default", datetime.now(UTC).date()) == 2


# -- repeated decisions ----------------------------------------------------------------------------


async def test_a_decision_id_repeated_with_another_decision_names_the_first(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("planned")], ship=[submit("shipped")])
    async with running_engine(tmp_path, catalog(SIGNED), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        await engine.decide(ANA, run.id, "approve", comment="ship it", decision_id="d-1")
        again = await engine.decide(ANA, run.id, "approve", comment="ship it", decision_id="d-1")
        assert again.steps[1].decision is not None and again.steps[1].decision.kind == "approve"
        with pytest.raises(DecisionConflict) as other:
            await engine.decide(ANA, run.id, "reject", decision_id="d-1")
        assert other.value.code == "already_decided"
        assert "approve ('ship it') by ana" in other.value.message and "reject was not applied" in other.value.message
        assert other.value.details["decision"]["kind"] == "approve"
        done = await settle(engine, run)
        assert done.status == RunStatus.COMPLETED


async def test_a_second_decision_after_the_run_ended_is_already_decided(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("planned")], ship=[submit("shipped")])
    async with running_engine(tmp_path, catalog(SIGNED), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        await engine.decide(ANA, run.id, "approve")
        assert (await settle(engine, run)).status == RunStatus.COMPLETED
        with pytest.raises(DecisionConflict) as second:
            await engine.decide(Actor("bo"), run.id, "reject")
        assert second.value.code == "already_decided"
        assert "'Ship'" in second.value.message and "approve by ana" in second.value.message


# -- usage per model turn --------------------------------------------------------------------------

SLOW_SECOND_TURN = scripts(plan=[
    {"text": "first", "cost_usd": 0.25, "input_tokens": 100, "output_tokens": 10,
     "tools": [{"name": "todo_write", "input": {"todos": [{"content": "plan it"}]}}]},
    {"delay_s": 60, **submit("never")},
])


async def first_turn_done(engine: Engine, run: Run) -> None:
    """The first turn's tool has ended: its model turn is over (and, now, on the record)."""
    with anyio.fail_after(10):
        async for event in engine.subscribe(ANA, run.id):
            data = event.data
            if data.type == "transcript" and data.kind == TranscriptKind.TOOL_END:
                return


async def test_a_step_cancelled_mid_step_keeps_its_turns_and_cost(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(ONE_STEP), SLOW_SECOND_TURN) as engine:
        run = await engine.start_run(ANA, "test-flow")
        await first_turn_done(engine, run)
        cancelled = await engine.cancel(ANA, run.id)
        step = cancelled.steps[0]
        assert step.status == StepStatus.CANCELLED
        assert (step.usage.turns, step.usage.cost_usd, step.usage.input_tokens) == (1, 0.25, 100)
        assert (cancelled.usage.turns, cancelled.usage.cost_usd) == (1, 0.25)


async def test_a_step_interrupted_by_shutdown_keeps_its_turns_and_cost(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(ONE_STEP), SLOW_SECOND_TURN) as engine:
        run = await engine.start_run(ANA, "test-flow")
        await first_turn_done(engine, run)
    async with running_engine(tmp_path, catalog(ONE_STEP), SLOW_SECOND_TURN) as engine:
        stored = await engine.get_run(ANA, run.id)
        assert stored.status == RunStatus.INTERRUPTED
        assert (stored.steps[0].usage.turns, stored.usage.cost_usd) == (1, 0.25)


# -- cancel ----------------------------------------------------------------------------------------


async def test_a_pending_run_is_offered_cancel_and_cancelling_it_works(tmp_path: Path) -> None:
    async with running_engine(tmp_path, catalog(ONE_STEP), scripts(plan=[submit("planned")])) as engine:
        # queued, and no process has claimed it yet
        queued = machine.create(Run(flow=engine.deps.catalog.flow("test-flow"), started_by="ana",
                                    sandbox_profile="noop", execution_mode=ExecutionMode.INTERACTIVE,
                                    checkpoint_mode=CheckpointMode.TEMPLATE))
        run, _ = await engine.deps.store.create_run(queued, [])
        assert run.status == RunStatus.PENDING and "cancel_run" in next_actions(run, ANA)
        cancelled = await engine.cancel(ANA, run.id)
        assert cancelled.status == RunStatus.CANCELLED
        assert all(s.status == StepStatus.PENDING for s in cancelled.steps)
        resumed = await settle(engine, await engine.resume(ANA, run.id))
        assert resumed.status == RunStatus.COMPLETED and resumed.started_at is not None


async def test_a_cancel_from_another_process_records_the_sandbox_released(tmp_path: Path) -> None:
    provider = scripts(plan=[{"delay_s": 60, **submit("slow")}])
    cat = catalog(ONE_STEP, defaults={"sandbox_profile": "local"})
    async with (
        running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-a:1")) as driving,
        running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-b:2")) as other,
    ):
        run = await driving.start_run(ANA, "test-flow")
        with anyio.fail_after(10):
            async for event in driving.subscribe(ANA, run.id):
                if event.data.type == "sandbox":
                    break
        await other.cancel(ANA, run.id)
        await driving.idle(timeout_s=5)
        stored = await driving.get_run(ANA, run.id)
        assert stored.status == RunStatus.CANCELLED
        assert stored.links.sandbox is not None and stored.links.sandbox.state == "released"


# -- pre-flight of a remote repository -------------------------------------------------------------


@contextmanager
def http_404() -> Iterator[str]:
    """A git host on loopback that knows no repository (every request: 404)."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acme/missing.git"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def with_repository(url: str) -> Catalog:
    profile = SandboxProfile(name="remote", backend="noop", repositories=[RepositorySpec(url=url)])
    return catalog(ONE_STEP, defaults={"sandbox_profile": "remote"}, profiles=[profile])


@pytest.mark.parametrize("where", ["file", "http"])
async def test_a_missing_remote_repository_is_refused_before_the_run_starts(tmp_path: Path, where: str) -> None:
    with http_404() as http_url:
        url = (tmp_path / "missing.git").as_uri() if where == "file" else http_url
        async with running_engine(tmp_path, with_repository(url), scripts(plan=[submit("planned")])) as engine:
            with pytest.raises(StartRefused) as refused:
                await engine.start_run(ANA, "test-flow")
            assert refused.value.code == "preflight_failed" and url in refused.value.message
            assert await engine.list_runs(ANA) == []  # a run that never began: nothing stored


async def test_an_existing_remote_repository_passes_pre_flight(tmp_path: Path) -> None:
    remote = tmp_path / "present.git"
    await anyio.run_process(["git", "init", "-q", "--bare", str(remote)])
    async with running_engine(tmp_path, with_repository(remote.as_uri()), scripts(plan=[submit("planned")])) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED


# -- scopes ----------------------------------------------------------------------------------------

RUNNER = Actor("rob", scopes=frozenset({Scope.RUN}))  # flows.run alone
READER = Actor("rita", scopes=frozenset({Scope.READ}))


async def test_flows_run_alone_starts_resumes_retries_decides_any_run_and_cancels_its_own(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("planned")], ship=[submit("shipped")])
    async with running_engine(tmp_path, catalog(SIGNED), provider) as engine:
        theirs = await settle(engine, await engine.start_run(ANA, "test-flow"), RUNNER)  # reading implied
        assert theirs.status == RunStatus.PAUSED and (await engine.list_runs(RUNNER))
        decided = await engine.decide(RUNNER, theirs.id, "approve")  # any run's checkpoint
        assert decided.steps[1].decision is not None and decided.steps[1].decision.actor == "rob"
        with pytest.raises(PermissionDenied, match="flows.cancel.any"):
            await engine.cancel(RUNNER, (await settle(engine, await engine.start_run(ANA, "test-flow"))).id)
        own = await settle(engine, await engine.start_run(RUNNER, "test-flow"), RUNNER)
        assert (await engine.cancel(RUNNER, own.id)).status == RunStatus.CANCELLED
        resumed = await settle(engine, await engine.resume(RUNNER, own.id), RUNNER)
        assert resumed.status == RunStatus.PAUSED

    provider = scripts(plan=[submit("boom", outcome="error")])
    async with running_engine(tmp_path, catalog(ONE_STEP), provider, db="retry.db") as engine:
        failed = await settle(engine, await engine.start_run(ANA, "test-flow"), RUNNER)
        assert (await engine.retry(RUNNER, failed.id)).status == RunStatus.RUNNING
        failed = await settle(engine, failed, RUNNER)
        assert (await engine.retry(RUNNER, failed.id, clone=True)).retry_of == failed.id


async def test_a_read_only_actor_is_offered_only_what_it_may_do(tmp_path: Path) -> None:
    provider = scripts(plan=[submit("planned")])
    async with running_engine(tmp_path, catalog(SIGNED), provider) as engine:
        paused = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert next_actions(paused, READER) == []
        view = run_view(paused, "http://flowrun.test", actor=READER)
        assert view.next_actions == [] and "decide_checkpoint" not in view.hint and "flows.run" in view.hint
        assert "call decide_checkpoint" in run_view(paused, "http://flowrun.test", actor=ANA).hint
        assert next_actions(paused, ANA) == ["decide_checkpoint", "cancel_run"]
        assert next_actions(paused, RUNNER) == ["decide_checkpoint"]  # not their run to cancel
        cancelled = await engine.cancel(ANA, paused.id)
        assert next_actions(cancelled, READER) == [] and next_actions(cancelled, RUNNER) == ["resume_run"]


async def test_a_paused_run_cancelled_elsewhere_has_its_held_sandbox_released_when_the_holder_stops(
    tmp_path: Path,
) -> None:
    cat = catalog(SIGNED, defaults={"sandbox_profile": "local"})
    provider = scripts(plan=[submit("planned")], ship=[submit("shipped")])
    async with running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-a:1")) as holding:
        paused = await settle(holding, await holding.start_run(ANA, "test-flow"))
        assert paused.status == RunStatus.PAUSED and paused.id in holding.deps.sandboxes  # interactive: held
        async with running_engine(tmp_path, cat, provider, config=EngineConfig(owner="host-b:2")) as other:
            assert (await other.cancel(ANA, paused.id)).status == RunStatus.CANCELLED
    async with running_engine(tmp_path, cat, provider) as later:
        stored = await later.get_run(ANA, paused.id)
        assert stored.links.sandbox is not None and stored.links.sandbox.state == "released"


async def test_a_race_of_callers_sharing_a_decision_id_gets_the_first_answer_or_its_name(
    tmp_path: Path, store_kind: StoreKind,
) -> None:
    provider = scripts(plan=[submit("planned")], ship=[submit("shipped")])
    async with running_engine(tmp_path, catalog(SIGNED), provider, kind=store_kind) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        kinds = ["approve", "reject", "skip"] * 10
        answers: list[tuple[str, Run | DecisionConflict]] = []

        async def caller(kind: str) -> None:
            try:
                answers.append((kind, await engine.decide(ANA, run.id, kind, decision_id="race-1")))
            except DecisionConflict as exc:
                answers.append((kind, exc))

        async with anyio.create_task_group() as tg:
            for kind in kinds:
                tg.start_soon(caller, kind)
        stored = await engine.get_run(ANA, run.id)
        first = stored.steps[1].decision
        assert first is not None and first.decision_id == "race-1"
        for kind, answer in answers:
            if kind == first.kind.value:  # the same decision: the first answer, never an error
                assert isinstance(answer, Run), answer
            else:  # another decision: refused, naming the one that stands
                assert isinstance(answer, DecisionConflict) and answer.code == "already_decided"
                assert f"{first.kind.value} by ana" in answer.message
        await settle(engine, run)
