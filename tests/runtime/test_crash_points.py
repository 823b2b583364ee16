"""Crashes and retries neither repeat nor lose work: a child engine is SIGKILLed at a named point
(see crash_points_child.py), then a fresh engine on the same store recovers and retries. On SQLite
and on PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from flowrun.flows.enums import RunStatus, StepStatus, TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine
from tests.storekinds import StoreKind

from .crash_points_child import EDIT, STEPS, config, repo_profile
from .harness import catalog, run_child_until, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
CHILD = Path(__file__).with_name("crash_points_child.py")
ANA = Actor("ana")


def origin(tmp: Path) -> None:
    repo = tmp / "origin"
    repo.mkdir()
    (repo / "README.md").write_text("hello\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)


async def crash_at(tmp: Path, point: str, marker: str, kind: StoreKind) -> str:
    origin(tmp)
    run_id, _ = await run_child_until([str(CHILD), str(tmp), point, kind.name, kind.token], marker)
    return run_id


async def transcript(engine: Engine, run_id: str) -> list[TranscriptEntry]:
    return [e.data for e in await engine.events(ANA, run_id) if isinstance(e.data, TranscriptEntry)]


def build_again(**extra: Any) -> Any:
    return scripts(plan=[submit("planned")], build=[{"tools": [{"name": "shell", "input": {"command": EDIT}}]},
                                                   submit("built")], **extra)


async def test_a_retried_step_starts_from_its_snapshot_not_from_its_half_done_work(tmp_path: Path, store_kind: StoreKind) -> None:
    run_id = await crash_at(tmp_path, "mid-step", "MIDSTEP", store_kind)  # Build appended a line and left a lock
    steps = [STEPS[0], {**STEPS[1], "checkpoint": None}]
    cat = catalog(steps, defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp_path)])
    async with running_engine(tmp_path, cat, build_again(), config=config(tmp_path), kind=store_kind) as engine:
        assert (await engine.get_run(ANA, run_id)).status == RunStatus.INTERRUPTED
        await engine.retry(ANA, run_id)
        run = await engine.wait_until(ANA, run_id, timeout_s=30)
        # the edit ran once on the workspace of the step's start: one line, no stale lock
        assert run.status == RunStatus.COMPLETED, run.error
        assert [s.attempt for s in run.steps] == [1, 2]
        said = [e.text for e in await transcript(engine, run_id) if e.kind == TranscriptKind.INFO]
        assert any("starts again from the workspace as it was when it first started" in t for t in said)
        await engine.idle()
    assert not (tmp_path / "snapshots" / run_id).exists()  # the run completed: its snapshots went


async def test_the_end_of_a_run_is_recorded_before_its_workspace_is_destroyed(tmp_path: Path, store_kind: StoreKind) -> None:
    run_id = await crash_at(tmp_path, "destroying", "DESTROYING", store_kind)
    cat = catalog([STEPS[0]], defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp_path)])
    async with running_engine(tmp_path, cat, scripts(plan=[submit("planned")]), config=config(tmp_path), kind=store_kind) as engine:
        run = await engine.get_run(ANA, run_id)
        assert run.status == RunStatus.COMPLETED  # not interrupted with its workspace gone


async def test_a_kill_mid_clone_leaves_no_half_repository_behind(tmp_path: Path, store_kind: StoreKind) -> None:
    run_id = await crash_at(tmp_path, "cloning", "CLONING", store_kind)
    check = {"tools": [{"name": "shell", "input": {"command": "git -C repo log --oneline && ls -A"}, "expect_output": "initial"}]}
    cat = catalog([STEPS[0]], defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp_path)])
    async with running_engine(tmp_path, cat, scripts(plan=[check, submit("planned")]), config=config(tmp_path), kind=store_kind) as engine:
        assert (await engine.get_run(ANA, run_id)).status == RunStatus.INTERRUPTED
        await engine.retry(ANA, run_id)
        run = await engine.wait_until(ANA, run_id, timeout_s=30)
        assert run.status == RunStatus.COMPLETED, run.error
        entries = await transcript(engine, run_id)
    setups = [e.text for e in entries if e.kind == TranscriptKind.SETUP]
    assert not any("already present" in t for t in setups)
    [listing] = [e.text for e in entries if e.kind == TranscriptKind.TOOL_END and e.tool == "shell"]
    assert ".flowrun-partial" not in listing  # the interrupted clone's leftovers were removed


async def test_an_approval_still_stands_when_its_step_is_retried_after_a_crash(tmp_path: Path, store_kind: StoreKind) -> None:
    run_id = await crash_at(tmp_path, "approved", "APPROVED", store_kind)
    cat = catalog(STEPS, defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp_path)])
    provider = scripts(plan=[submit("planned")], build=[submit("built")])
    async with running_engine(tmp_path, cat, provider, config=config(tmp_path), kind=store_kind) as engine:
        run = await engine.get_run(ANA, run_id)
        assert run.status == RunStatus.INTERRUPTED and run.steps[1].decision is not None
        await engine.retry(ANA, run_id)
        run = await engine.wait_until(ANA, run_id, timeout_s=30)
        assert run.status == RunStatus.COMPLETED, run.error  # not paused at the checkpoint again
        assert run.steps[1].status == StepStatus.COMPLETED and run.steps[1].decision is not None
        assert run.steps[1].decision.comment == "go"
        said = [e.text for e in await transcript(engine, run_id) if e.kind == TranscriptKind.INFO]
    assert any("The approval ana gave for step 2" in t and "still stands" in t for t in said)


async def test_a_clone_starts_from_the_source_runs_workspace_at_the_step_it_continues_from(tmp_path: Path, store_kind: StoreKind) -> None:
    origin(tmp_path)
    plan = {"tools": [{"name": "shell", "input": {"command": "echo planned > repo/plan.txt"}}]}
    build = {"tools": [{"name": "shell", "input": {"command": "test ! -e build.txt && touch build.txt && cat repo/plan.txt"},
                        "expect_output": "planned"}]}
    provider = scripts(plan=[plan, submit("planned")], build=[build, submit("broke", outcome="error")])
    steps = [STEPS[0], {**STEPS[1], "checkpoint": None}]
    cat = catalog(steps, defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp_path)])
    async with running_engine(tmp_path, cat, provider, config=config(tmp_path), kind=store_kind) as engine:
        failed = await engine.wait_until(ANA, (await engine.start_run(ANA, "test-flow")).id, timeout_s=30)
        assert failed.status == RunStatus.FAILED and failed.steps[1].status == StepStatus.FAILED
        provider.scripts["build"] = scripts(build=[build, submit("built")]).scripts["build"]
        clone = await engine.retry(ANA, failed.id, clone=True)
        clone = await engine.wait_until(ANA, clone.id, timeout_s=30)
        # Plan's change is there, the failed Build attempt's is not (build.txt would fail the call)
        assert clone.status == RunStatus.COMPLETED, clone.error
        assert clone.steps[0].attempt == 1 and clone.steps[1].attempt == 1
        said = [e.text for e in await transcript(engine, clone.id) if e.kind == TranscriptKind.INFO]
    assert any(f"clone of {failed.id}: step 2 starts from that run's workspace" in t for t in said)
