"""A push that failed is never reported as opened: the step fails, naming what git said. A stale
lock a killed bundle left in the workspace does not stop the next push."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from flowrun.flows.enums import RunStatus
from flowrun.flows.profiles import RepositorySpec, SandboxProfile
from flowrun.runtime.access import Actor

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
ANA = Actor("ana")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]


def bare_origin(tmp: Path) -> Path:
    seed = tmp / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("hello\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run([*GIT, *args], cwd=seed, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(tmp / "origin.git")], check=True)
    return tmp / "origin.git"


def ship(stale_bundle_lock: bool) -> Any:
    stale = "mkdir -p .flowrun && touch .flowrun/pr-toolu_0_1_0.bundle.lock && " if stale_bundle_lock else ""
    commit = (f"{stale}cd repo && git checkout -q -b feature && echo change >> README.md && "
              "git -c user.name=t -c user.email=t@t commit -qam change")
    return scripts(ship=[
        {"tools": [{"name": "shell", "input": {"command": commit}}]},
        {"tools": [{"name": "open_pull_request", "input": {"repository": "repo", "branch": "feature", "title": "T"}}]},
        submit("opened"),
    ])


async def ship_run(tmp: Path, origin: Path, stale_bundle_lock: bool = False) -> tuple[RunStatus, str]:
    profile = SandboxProfile(name="repo", backend="local", repositories=[RepositorySpec(url=str(origin), path="repo")])
    cat = catalog([{"name": "Ship", "skill": "ship"}], defaults={"sandbox_profile": "repo"}, profiles=[profile],
                  skills={"ship": {"allowed_tools": ["shell", "open_pull_request"]}})
    async with running_engine(tmp, cat, ship(stale_bundle_lock)) as engine:
        run = await engine.start_run(ANA, "test-flow")
        run = await engine.wait_until(ANA, run.id, timeout_s=30)
    return run.status, run.steps[0].summary or ""


def branch(origin: Path) -> str:
    done = subprocess.run(["git", "--git-dir", str(origin), "log", "--format=%s", "-1", "feature"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


async def test_a_push_that_failed_fails_the_step(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path)
    (origin / "refs" / "heads" / "feature.lock").write_text("")  # someone's stale ref lock
    status, summary = await ship_run(tmp_path, origin)
    assert status == RunStatus.FAILED
    assert "(open_pull_request): expected it to succeed, but it failed" in summary
    assert "feature.lock" in summary  # what git said
    assert branch(origin) == ""  # and indeed nothing was pushed


async def test_a_stale_bundle_lock_in_the_workspace_does_not_stop_the_push(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path)
    status, summary = await ship_run(tmp_path, origin, stale_bundle_lock=True)
    assert status == RunStatus.COMPLETED, summary
    assert branch(origin) == "change"
