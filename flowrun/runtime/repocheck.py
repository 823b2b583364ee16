"""Pre-flight for a remote repository: a run whose repository does not exist never starts.

`git ls-remote` asks the remote whether the repository is there, before any step runs, so a
missing repository is a start refusal (`preflight_failed`) rather than a failed first step. Only
a definite "not found" refuses: a private repository (its credential is the integration's, and a
missing one blocks the step with its fix), an unreachable network or a slow remote leave the
answer to the step that clones it.
"""

from __future__ import annotations

import logging
import os

import anyio

from ..flows.errors import StartRefused
from ..flows.profiles import RepositorySpec

log = logging.getLogger("flowrun.runtime")

CHECK_TIMEOUT_S = 15.0
_NOT_FOUND = (
    "repository not found",
    "not found",
    "does not appear to be a git repository",
    "does not exist",
    "no such file or directory",
    "returned error: 404",
)


def _env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


async def check_remote(repo: RepositorySpec, profile: str) -> None:
    """Raises StartRefused(`preflight_failed`) when the remote says `repo` does not exist."""
    if repo.private:
        return
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            done = await anyio.run_process(
                ["git", "ls-remote", "--quiet", "--heads", "--", repo.url], env=_env(), check=False
            )
    except TimeoutError:
        log.info("pre-flight: %s did not answer within %.0fs; the step will find out", repo.url, CHECK_TIMEOUT_S)
        return
    except OSError as exc:  # no git here: the step's clone reports it
        log.info("pre-flight: cannot run git for %s: %s", repo.url, exc)
        return
    if done.returncode == 0:
        return
    detail = done.stderr.decode("utf-8", errors="replace").strip()
    if any(marker in detail.lower() for marker in _NOT_FOUND):
        last = detail.splitlines()[-1] if detail else "not found"
        raise StartRefused(
            f"Pre-flight failed: repository {repo.url!r} of sandbox profile {profile!r} is missing ({last}).",
            code="preflight_failed", repository=repo.url,
        )
    log.info("pre-flight: git ls-remote %s failed (%s); the step will find out", repo.url, detail[-300:])
