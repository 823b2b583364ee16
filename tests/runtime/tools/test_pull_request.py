"""`open_pull_request` never force-pushes and never updates the origin's default branch."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowrun.flows.events import TranscriptEntry
from flowrun.flows.profiles import SandboxProfile
from flowrun.runtime.tools.base import ToolContext
from flowrun.runtime.tools.pull_request import OpenPullRequest, PullRequestInput
from flowrun.sandboxes import LocalBackend, LocalSandbox

pytestmark = pytest.mark.anyio

GIT = 'git -c user.name=agent -c user.email=agent@example.com'


def _git(*args: str, cwd: Path) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env, text=True)
    return done.stdout.strip()


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A root the sandbox uid can reach by its absolute path (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="flowrun-test-"))
    root.chmod(0o711)
    yield root / "sandboxes"
    shutil.rmtree(root)


@pytest.fixture
def origin(sandbox_root: Path) -> Path:
    seed = sandbox_root.parent / "seed"
    seed.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=seed)
    (seed / "app.txt").write_text("v1\n")
    _git("add", ".", cwd=seed)
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "v1", cwd=seed)
    bare = sandbox_root.parent / "origin.git"
    _git("clone", "-q", "--bare", str(seed), str(bare), cwd=seed.parent)
    return bare


async def _sandbox(sandbox_root: Path, origin: Path) -> tuple[LocalSandbox, SandboxProfile]:
    profile = SandboxProfile.model_validate(
        {"name": "pr", "repositories": [{"url": str(origin), "path": "repo"}]}
    )
    backend = LocalBackend(sandbox_root, isolation="process-group")
    return await backend.acquire("run_pr", profile), profile


async def _open(sb: LocalSandbox, profile: SandboxProfile, branch: str) -> tuple[bool, str]:
    async def emit(entry: TranscriptEntry) -> None:
        pass

    ctx = ToolContext(run_id="run_pr", step=0, call_id="call_1", sandbox=sb, emit=emit, extras={"profile": profile})
    args = PullRequestInput(repository="repo", branch=branch, title="Change")
    with anyio.fail_after(60):
        output = await OpenPullRequest().run(ctx, args)
    return output.is_error, output.content


async def test_the_default_branch_is_refused_and_left_alone(sandbox_root: Path, origin: Path) -> None:
    before = _git("--git-dir", str(origin), "rev-parse", "main", cwd=origin)
    sb, profile = await _sandbox(sandbox_root, origin)
    # an agent rewrites main's history and asks for a PR from it
    made = await sb.exec(f"cd repo && echo rewritten > app.txt && {GIT} commit -qa --amend -m evil && git log --oneline")
    assert made.exit_code == 0, made.stderr
    is_error, text = await _open(sb, profile, "main")
    assert is_error and "the default branch" in text
    assert _git("--git-dir", str(origin), "rev-parse", "main", cwd=origin) == before


async def test_an_existing_branch_only_moves_forward(sandbox_root: Path, origin: Path) -> None:
    sb, profile = await _sandbox(sandbox_root, origin)
    made = await sb.exec(f"cd repo && git checkout -qb feature && echo one >> app.txt && {GIT} commit -qam one")
    assert made.exit_code == 0, made.stderr
    is_error, text = await _open(sb, profile, "feature")
    assert not is_error, text
    first = _git("--git-dir", str(origin), "rev-parse", "feature", cwd=origin)
    # forward: another commit on top is pushed
    await sb.exec(f"cd repo && echo two >> app.txt && {GIT} commit -qam two")
    is_error, text = await _open(sb, profile, "feature")
    assert not is_error, text
    second = _git("--git-dir", str(origin), "rev-parse", "feature", cwd=origin)
    assert second != first
    # rewritten history is refused, not forced
    await sb.exec(f"cd repo && git reset -q --hard HEAD~2 && echo other >> app.txt && {GIT} commit -qam other")
    is_error, text = await _open(sb, profile, "feature")
    assert is_error and "never force-push" in text
    assert _git("--git-dir", str(origin), "rev-parse", "feature", cwd=origin) == second
