"""`open_pull_request` on GitHub: push the branch with the person's token, then open the PR
through the REST API, as the person who started the run (their token) where they connected one.

The branch is pushed without force, and never to the repository's default branch. Opening is
idempotent: when GitHub answers that a pull request for this branch already exists (a retried
step), that one is reported. The token travels in an HTTP header given to git through
`GIT_CONFIG_*` variables, never on a command line, never into the sandbox.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ...sandboxes.provision import git_env
from ..integrations import GitHub
from .base import ToolOutput

GIT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class GitHubAccess:
    """What the tool gets from the step: where GitHub is and whom the run acts for."""

    github: GitHub
    actor: str


async def _git(args: list[str], env: dict[str, str], token: str) -> str:
    with anyio.fail_after(GIT_TIMEOUT_S):
        done = await anyio.run_process(["git", *args], env=env, check=False)
    out = (done.stderr or done.stdout).decode("utf-8", errors="replace").replace(token, "***").strip()
    if done.returncode != 0:
        raise RuntimeError(out.splitlines()[-1] if out else f"git {args[0]} failed")
    return done.stdout.decode().strip()


async def push_branch(github: GitHub, token: str, url: str, bundle: bytes, branch: str) -> str:
    """Push `branch` from the bundle to `url` (no force); returns the pushed commit."""
    env = git_env(token, github.url)
    ref = f"refs/heads/{branch}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pr.bundle"
        await anyio.Path(path).write_bytes(bundle)
        repo = str(Path(tmp) / "repo.git")
        await _git(["init", "--quiet", "--bare", repo], env, token)
        await _git(["--git-dir", repo, "fetch", "--quiet", str(path), f"{ref}:{ref}"], env, token)
        sha = await _git(["--git-dir", repo, "rev-parse", "--short", ref], env, token)
        await _git(["--git-dir", repo, "push", "--quiet", url, f"{ref}:{ref}"], env, token)
    return sha


async def open_on_github(access: GitHubAccess, name: str, url: str, branch: str, title: str, body: str,
                         bundle: bytes) -> ToolOutput:
    """Raises BlockedError (`credential_needed`) when nobody connected GitHub."""
    import httpx2

    github = access.github
    token = github.require_token(access.actor, f"opening a pull request on {name}")
    headers = github.headers(token)
    async with httpx2.AsyncClient(base_url=github.api_url, headers=headers, timeout=30.0) as api:
        repo = await api.get(f"/repos/{name}")
        if repo.status_code in (401, 403, 404):
            from ...flows.errors import BlockedError
            from ..integrations import CONNECT_FIX

            raise BlockedError("credential_needed", f"GitHub refused access to {name} ({repo.status_code}).",
                               fix=CONNECT_FIX, integration="github", repository=name)
        if repo.status_code != 200:
            return ToolOutput(f"GitHub answered {repo.status_code} for {name}: {repo.text[:300]}", is_error=True)
        base = str(repo.json().get("default_branch") or "main")
        if branch == base:
            return ToolOutput(f"refusing to open a pull request from {base!r}, the default branch of {name}: "
                              "commit to a branch of its own", is_error=True)
        try:
            sha = await push_branch(github, token, url, bundle, branch)
        except (RuntimeError, TimeoutError) as exc:
            return ToolOutput(f"could not push {branch!r} to {name}: {exc or 'timed out'}", is_error=True)
        created = await api.post(f"/repos/{name}/pulls", json={"title": title, "head": branch, "base": base,
                                                               "body": body})
        pr: dict[str, Any]
        if created.status_code == 201:
            pr = created.json()
        elif created.status_code == 422 and "already exists" in created.text:
            owner = name.split("/", 1)[0]
            found = await api.get(f"/repos/{name}/pulls", params={"head": f"{owner}:{branch}", "state": "open"})
            pulls = found.json() if found.status_code == 200 else []
            if not pulls:
                return ToolOutput(f"GitHub says a pull request for {branch!r} exists but lists none", is_error=True)
            pr = pulls[0]
        else:
            return ToolOutput(f"GitHub refused the pull request ({created.status_code}): {created.text[:300]}",
                              is_error=True)
    link = str(pr["html_url"])
    return ToolOutput(
        f"pull request #{pr.get('number')} opened: {title}\nbranch {branch} at {sha} into {base}\n{link}",
        data={"pull_request": link, "branch": branch, "commit": sha, "origin": url, "number": pr.get("number"),
              "artifact": {"kind": "pull_request", "ref": link, "label": f"PR #{pr.get('number')}: {title}"}},
    )
