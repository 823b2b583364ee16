"""`open_pull_request`: the repository integration, on the engine's side of the sandbox wall.

The agent commits inside the sandbox; this tool carries the branch out as a git bundle (read
through the sandbox's file API, so it works for every backend) and pushes it to the
repository's origin from the host, where credentials live. Credentials never enter the sandbox.
On a local git remote (the demo's "GitHub") the branch is fetched into it, never forced and
never into the remote's default branch; on GitHub
(`github_pr`) it is pushed with the run's person's token and the PR is opened through the API.
"""

from __future__ import annotations

import re
import secrets
import shlex
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel, Field

from ...flows.errors import SandboxError
from ...flows.profiles import SandboxProfile
from .base import ToolContext, ToolOutput
from .github_pr import GitHubAccess, open_on_github

_BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")


class PullRequestInput(BaseModel):
    repository: str = Field(description="The repository's directory in the workspace, e.g. 'insights'.")
    branch: str = Field(description="The branch, already committed in the sandbox, to open the PR from.")
    title: str
    body: str = ""


def _origin(profile: SandboxProfile | None, repository: str) -> str | None:
    if profile is None:
        return None
    for repo in profile.repositories:
        if repo.path.strip("/") == repository.strip("/"):
            path = Path(repo.url).expanduser()
            if not path.is_absolute() and profile.source_dir:
                path = Path(profile.source_dir) / path
            return str(path) if "://" not in repo.url and not repo.url.startswith("git@") else repo.url
    return None


async def _git(*args: str) -> str:
    done = await anyio.run_process(["git", *args], check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode("utf-8", errors="replace").strip()
        raise SandboxError(f"git {args[2] if args[0] == '--git-dir' else args[0]} failed: {detail}", code="git_failed")
    return done.stdout.decode("utf-8", errors="replace").strip()


async def default_branch(origin: str) -> str | None:
    """The branch a local remote's HEAD points at (its default branch), if it has one."""
    done = await anyio.run_process(["git", "--git-dir", origin, "symbolic-ref", "--short", "HEAD"], check=False)
    name = done.stdout.decode("utf-8", errors="replace").strip()
    return name if done.returncode == 0 and name else None


async def _bundle(ctx: ToolContext, args: PullRequestInput) -> bytes | ToolOutput:
    """The branch as a git bundle, read out of the sandbox through its file API."""
    # a name of its own: a call killed mid-bundle leaves `<name>.lock`, which must not stop the next
    bundle = f".flowrun/pr-{ctx.call_id}-{secrets.token_hex(4)}.bundle"
    repo = shlex.quote(args.repository)
    try:
        result = await ctx.sandbox.exec(
            f"mkdir -p .flowrun && git -C {repo} bundle create ../{bundle} {shlex.quote(args.branch)}", timeout=120)
        if result.exit_code != 0:
            return ToolOutput(f"could not bundle branch {args.branch!r}: {result.stderr or result.stdout}",
                              is_error=True)
        return await ctx.sandbox.read_file(bundle)
    finally:
        with anyio.CancelScope(shield=True):
            await ctx.sandbox.exec(f"rm -f {shlex.quote(bundle)} {shlex.quote(bundle + '.lock')}")


class OpenPullRequest:
    name: ClassVar[str] = "open_pull_request"
    description: ClassVar[str] = (
        "Open a pull request from a branch you committed in the workspace: pushes the branch to the "
        "repository's origin and returns the pull request reference to report as an artifact."
    )
    input_model: ClassVar[type[BaseModel]] = PullRequestInput

    async def preview(self, ctx: ToolContext, args: PullRequestInput) -> dict[str, Any]:
        return {"repository": args.repository, "branch": args.branch, "title": args.title}

    async def run(self, ctx: ToolContext, args: PullRequestInput) -> ToolOutput:
        if not _BRANCH.match(args.branch) or ".." in args.branch:
            return ToolOutput(f"invalid branch name {args.branch!r}", is_error=True)
        origin = _origin(ctx.extras.get("profile"), args.repository)
        if origin is None:
            return ToolOutput(f"{args.repository!r} is not a repository of this sandbox profile", is_error=True)
        access = ctx.extras.get("github")
        hosted = access.github.repository(origin) if isinstance(access, GitHubAccess) else None
        if hosted is not None and isinstance(access, GitHubAccess):
            access.github.require_token(access.actor, f"opening a pull request on {hosted}")  # before any work
            bundled = await _bundle(ctx, args)
            if isinstance(bundled, ToolOutput):
                return bundled
            return await open_on_github(access, hosted, origin, args.branch, args.title, args.body, bundled)
        if not await anyio.Path(origin).is_dir():
            return ToolOutput(
                f"{origin} is not a local git remote nor a repository on the connected GitHub: flowrun cannot "
                "open a pull request there", is_error=True)
        default = await default_branch(origin)
        if args.branch in ("HEAD", default):
            return ToolOutput(
                f"refusing to open a pull request from {args.branch!r}, the default branch of {origin}: commit "
                "to a branch of its own and open the pull request from there", is_error=True)
        data = await _bundle(ctx, args)
        if isinstance(data, ToolOutput):
            return data
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pr.bundle"
            await anyio.Path(path).write_bytes(data)
            ref = f"refs/heads/{args.branch}"
            try:  # never forced: a branch that exists on the origin only moves forward
                await _git("--git-dir", origin, "fetch", str(path), f"{ref}:{ref}")
            except SandboxError as exc:
                if "rejected" not in exc.message:
                    raise
                return ToolOutput(
                    f"branch {args.branch!r} already exists on {origin} with commits your branch does not have; "
                    "pull requests never force-push: open it from a new branch name", is_error=True)
            sha = await _git("--git-dir", origin, "rev-parse", "--short", ref)
        pr = f"{origin}#{args.branch}@{sha}"
        return ToolOutput(
            f"pull request opened: {args.title}\nbranch {args.branch} at {sha} on {origin}\nref: {pr}",
            data={"pull_request": pr, "branch": args.branch, "commit": sha, "origin": origin,
                  "artifact": {"kind": "pull_request", "ref": pr, "label": f"PR: {args.title}"}},
        )
