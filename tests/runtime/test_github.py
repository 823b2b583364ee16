"""The GitHub integration: connecting a token, a missing one blocking the run with its fix, and
`open_pull_request` pushing the branch and opening the PR through GitHub's REST API (respx)."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx

from flowrun.flows.enums import BlockedCause, RunStatus
from flowrun.flows.errors import UsageError
from flowrun.flows.profiles import RepositorySpec, SandboxProfile
from flowrun.runtime.access import Actor
from flowrun.runtime.integrations import GitHub, whoami

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
TOKEN = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP"
API = "https://api.github.com"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


def git(*args: str) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


def hosted_repository(root: Path) -> Path:
    """A bare repository at <root>/orcette/insights.git with one commit on main: our "GitHub"."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    git("init", "--quiet", "-b", "main", str(seed))
    (seed / "README.md").write_text("insights\n")
    git("-C", str(seed), "add", ".")
    git("-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "-m", "init")
    bare = root / "orcette" / "insights.git"
    git("clone", "--quiet", "--bare", str(seed), str(bare))
    return bare


async def test_connecting_checks_the_token_and_stores_it_privately(tmp_path: Path, mock: respx.MockRouter) -> None:
    github = GitHub(home=tmp_path)
    mock.get(f"{API}/user").mock(side_effect=lambda request: httpx.Response(
        200 if request.headers["authorization"] == f"Bearer {TOKEN}" else 401, json={"login": "octocat"}))
    assert await whoami(github, TOKEN) == "octocat"
    with pytest.raises(UsageError, match="refused that token"):
        await whoami(github, "ghp_wrong")
    github.connect("ana", "octocat", TOKEN)
    assert stat.S_IMODE(github.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(github.path.parent.stat().st_mode) == 0o700
    assert github.token_for("ana") == TOKEN
    assert github.token_for("bob") is None  # nobody else's, no operator's, no GITHUB_TOKEN
    github.connect("local", "ops", "ghp_operator")
    assert github.token_for("bob") == "ghp_operator"  # the operator's, for runs of people without one
    assert github.disconnect("ana") and github.token_for("ana") == "ghp_operator"
    assert GitHub(home=tmp_path / "x", env_token="ghp_env").token_for("ana") == "ghp_env"
    assert github.repository("https://github.com/orcette/insights.git") == "orcette/insights"
    assert github.repository("https://gitlab.com/orcette/insights.git") is None


def pr_setup(tmp_path: Path) -> tuple[GitHub, SandboxProfile, Path]:
    hosted = tmp_path / "gh"
    bare = hosted_repository(hosted)
    github = GitHub(home=tmp_path / "home", url=f"file://{hosted}")
    profile = SandboxProfile(name="insights", backend="local", repository_id="orcette/insights",
                             repositories=[RepositorySpec(url=f"file://{bare}", path="insights")])
    return github, profile, bare


SHIP = [
    {"tools": [{"name": "shell", "input": {"command": (
        "cd insights && git checkout -q -B csv-export && echo 'def to_csv(): ...' > export.py && git add . && "
        "git -c user.name=Agent -c user.email=agent@example.org commit -q -m 'Add a CSV export'")}}]},
    {"tools": [{"name": "open_pull_request", "input": {
        "repository": "insights", "branch": "csv-export", "title": "Add a CSV export", "body": "Closes #3."}}]},
    submit("Opened the pull request."),
]


async def test_a_missing_token_blocks_then_connecting_and_resuming_opens_the_pr(
        tmp_path: Path, mock: respx.MockRouter) -> None:
    github, profile, bare = pr_setup(tmp_path)
    cat = catalog([{"name": "Create PR", "skill": "ship"}],
                  skills={"ship": {"allowed_tools": ["shell", "open_pull_request"], "output_schema": {"type": "object"}}},
                  defaults={"sandbox_profile": "insights"}, profiles=[profile])
    repo = mock.get(f"{API}/repos/orcette/insights").respond(200, json={"default_branch": "main"})
    create = mock.post(f"{API}/repos/orcette/insights/pulls").respond(
        201, json={"number": 7, "html_url": "https://github.com/orcette/insights/pull/7"})
    async with running_engine(tmp_path, cat, scripts(ship=SHIP), github=github) as engine:
        run = await engine.start_run(ANA, "test-flow")
        run = await engine.wait_until(ANA, run.id, timeout_s=60)
        assert run.status == RunStatus.BLOCKED, run.error
        assert run.blocked is not None and run.blocked.cause == BlockedCause.CREDENTIAL_NEEDED
        assert "GitHub is not connected" in run.blocked.message
        assert "flowrun integrations connect github" in run.blocked.fix
        assert not create.called

        github.connect("ana", "octocat", TOKEN)  # what `flowrun integrations connect github` does
        run = await engine.resume(ANA, run.id)
        run = await engine.wait_until(ANA, run.id, timeout_s=60)
        assert run.status == RunStatus.COMPLETED, run.error
    assert repo.called and create.call_count == 1
    request = create.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"  # as the person who started the run
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert json.loads(request.content) == {"title": "Add a CSV export", "head": "csv-export", "base": "main",
                                           "body": "Closes #3."}
    assert git("--git-dir", str(bare), "log", "--format=%s", "csv-export") == "Add a CSV export\ninit"
    assert git("--git-dir", str(bare), "log", "--format=%s", "main") == "init"  # untouched
    [artifact] = run.steps[0].artifacts
    assert artifact.ref == "https://github.com/orcette/insights/pull/7" and artifact.label.startswith("PR #7")
    assert run.links.pull_request == "https://github.com/orcette/insights/pull/7"
    stored = (tmp_path / "flowrun.db").read_bytes()
    assert TOKEN.encode() not in stored


async def test_an_existing_pr_is_reported_and_the_default_branch_refused(
        tmp_path: Path, mock: respx.MockRouter) -> None:
    from flowrun.runtime.tools.github_pr import GitHubAccess, open_on_github

    github, _, bare = pr_setup(tmp_path)
    github.connect("ana", "octocat", TOKEN)
    access = GitHubAccess(github, "ana")
    mock.get(f"{API}/repos/orcette/insights").respond(200, json={"default_branch": "main"})
    refused = await open_on_github(access, "orcette/insights", f"file://{bare}", "main", "x", "", b"")
    assert refused.is_error and "default branch" in refused.content
    mock.post(f"{API}/repos/orcette/insights/pulls").respond(
        422, json={"message": "Validation Failed", "errors": [{"message": "A pull request already exists for orcette:csv."}]})
    mock.get(f"{API}/repos/orcette/insights/pulls", params={"head": "orcette:csv", "state": "open"}).respond(
        200, json=[{"number": 5, "html_url": "https://github.com/orcette/insights/pull/5"}])
    seed = tmp_path / "gh" / "seed"
    git("-C", str(seed), "checkout", "--quiet", "-b", "csv")
    git("-C", str(seed), "bundle", "create", "--quiet", str(tmp_path / "csv.bundle"), "csv")
    again = await open_on_github(access, "orcette/insights", f"file://{bare}", "csv", "CSV", "",
                                 (tmp_path / "csv.bundle").read_bytes())
    assert not again.is_error and again.data["pull_request"].endswith("/pull/5")
    assert TOKEN not in again.content
