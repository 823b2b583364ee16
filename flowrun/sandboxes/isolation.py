"""How a local command is confined: bubblewrap where it works, a process group otherwise.

Both modes give the command a minimal clean environment (never the server's: it holds API keys)
and resource limits set with `ulimit` in the command's own shell, so they apply to the whole tree
and cannot be raised again. When the server runs as root the command always runs as an
unprivileged uid: root could read root-only files, and `RLIMIT_NPROC` is ignored for root.

Under bubblewrap the command sees the system directories read-only, its workspace read-write at
`/workspace`, a private `/tmp`, `/proc` and `/dev`, no other part of the host, no network unless
the profile allows it, and its own PID namespace. Dropping root is done *inside* bwrap: as root,
`bwrap --unshare-user` maps to host root, and a bwrap started as the unprivileged uid could not
bind a workspace that lies under a directory only root may enter (the default `~/.flowrun` of
root). In process-group mode the process is simply started as that uid; it then reaches its
workspace through its working directory even where the absolute path is not searchable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..flows.profiles import ResourceLimits

logger = logging.getLogger("flowrun.sandboxes")

Isolation = Literal["bubblewrap", "process-group"]
IsolationChoice = Literal["auto", "bubblewrap", "process-group"]

SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the sandbox may see of the system, read-only. `/etc` holds no secret readable by an
# unprivileged uid on a sane host (shadow and keys are root-only), and tools need it.
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")

SANDBOX_WORKSPACE = "/workspace"
REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
_SETPRIV = "/usr/bin/setpriv"

_warned_reduced = False


@dataclass(frozen=True, slots=True)
class Confinement:
    """The decided isolation mode and the identity commands run as."""

    isolation: Isolation
    uid: int | None  # None: run as the server's own (unprivileged) user
    gid: int | None
    reason: str = ""  # why bubblewrap is not used, when it is not
    bwrap: str = "bwrap"

    @property
    def supervised(self) -> bool:
        """Whether commands run under the `reaper` supervisor (process-group mode)."""
        return self.isolation == "process-group"

    def for_uid(self, uid: int, gid: int) -> Confinement:
        """The same confinement, running commands as `uid`/`gid` (a sandbox of its own)."""
        return dataclasses.replace(self, uid=uid, gid=gid)

    @property
    def sandbox_workspace(self) -> str | None:
        """Where the workspace appears inside the sandbox; None: at its host path."""
        return SANDBOX_WORKSPACE if self.isolation == "bubblewrap" else None

    def argv(
        self,
        command: str,
        *,
        workspace: str,
        cwd: str,
        limits: ResourceLimits,
        network: bool,
    ) -> list[str]:
        """The argv that runs `command`; `workspace` is the host path, `cwd` a sandbox path."""
        shell = ["/bin/bash", "-c", limit_prefix(limits, drop=self.uid is not None)]
        shell += ["flowrun", command]
        if self.isolation == "process-group":
            ids = ["--uid", str(self.uid), "--gid", str(self.gid)] if self.uid is not None else []
            return [sys.executable, "-I", "-S", REAPER, *ids, "--", *shell]  # -S: stdlib only, faster
        args = [self.bwrap, "--die-with-parent", "--new-session"]
        if self.uid is None:
            args += ["--unshare-all"] + (["--share-net"] if network else [])
        else:
            # As root, bwrap sets the sandbox up with root's rights (so it can bind a workspace
            # under a 0700 home) but without a user namespace, which would map to host root.
            # It keeps only the two capabilities setpriv needs to become the sandbox uid;
            # no_new_privs (always set by bwrap) stops anything regaining them.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
            args += [] if network else ["--unshare-net"]
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        for name in _SYSTEM_DIRS:
            host = f"/{name}"
            if os.path.islink(host):
                args += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host):
                args += ["--ro-bind", host, host]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        args += ["--bind", workspace, SANDBOX_WORKSPACE, "--chdir", cwd]
        args.append("--")  # the environment is already clean: bwrap passes on what it gets
        if self.uid is not None:
            args += [
                _SETPRIV,
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ]
        return args + shell


def limit_prefix(limits: ResourceLimits, *, drop: bool) -> str:
    """A shell prologue that sets hard and soft limits, then runs the command as `bash -c`.

    Memory is `RLIMIT_DATA` rather than `RLIMIT_AS`: runtimes such as V8 and Go reserve large
    address ranges they never touch, and an address-space limit kills them at start."""
    parts = [
        f"-t {limits.cpu_seconds + 1}",  # hard; the soft limit below sends SIGXCPU first
        f"-d {limits.memory_mb * 1024}",
        f"-f {limits.file_size_mb * 1024}",
    ]
    if drop:
        parts.append(f"-u {limits.max_processes}")  # ignored for root, so only when dropped
    return (
        f"ulimit {' '.join(parts)} && ulimit -S -t {limits.cpu_seconds} || exit 125; "
        'exec /bin/bash -c "$1"'
    )


def clean_env(
    *, workspace: str, profile_env: Mapping[str, str], extra: Mapping[str, str] | None
) -> dict[str, str]:
    """The whole environment a command gets: nothing inherited from the server."""
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": workspace,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
        "FLOWRUN_WORKSPACE": workspace,
    }
    env.update(profile_env)
    if extra:
        env.update(extra)
    return env


def decide(choice: IsolationChoice, *, uid: int, gid: int) -> Confinement:
    """Probe bubblewrap once and settle the mode. Blocking (~20 ms): call it off the event loop.

    Raises:
        RuntimeError: `choice` is "bubblewrap" and bubblewrap does not work here.
    """
    drop = os.geteuid() == 0
    run_uid, run_gid = (uid, gid) if drop else (None, None)
    if choice == "process-group":
        return Confinement(
            "process-group", run_uid, run_gid, reason="process-group isolation was chosen"
        )
    candidate = Confinement("bubblewrap", run_uid, run_gid, bwrap=shutil.which("bwrap") or "")
    reason = _probe_bwrap(candidate)
    if not reason:
        return candidate
    if choice == "bubblewrap":
        raise RuntimeError(f"bubblewrap isolation was required but is unavailable: {reason}")
    return Confinement("process-group", run_uid, run_gid, reason=reason)


def warn_reduced_once(confinement: Confinement) -> None:
    global _warned_reduced
    if confinement.isolation == "bubblewrap" or _warned_reduced:
        return
    _warned_reduced = True
    logger.warning(
        "local sandbox isolation is REDUCED (%s): commands run under a supervisor that kills "
        "their whole process tree, with rlimits%s, but can see the host filesystem and network. "
        "Install bubblewrap (apt-get install bubblewrap) for full isolation.",
        confinement.reason,
        " as an unprivileged uid" if confinement.uid is not None else "",
    )


def _probe_bwrap(candidate: Confinement) -> str:
    """Why bubblewrap cannot be used here, or "" if it can: runs `true` exactly as a command
    would be run, in a throwaway workspace."""
    if not os.path.exists(candidate.bwrap):
        return "bwrap is not installed"
    if candidate.uid is not None and not os.path.exists(_SETPRIV):
        return f"{_SETPRIV} is missing (needed to drop root)"
    with tempfile.TemporaryDirectory(prefix="flowrun-probe-") as workspace:
        argv = candidate.argv(
            "true",
            workspace=workspace,
            cwd=SANDBOX_WORKSPACE,
            limits=ResourceLimits(),
            network=False,
        )
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=10, check=False, env={"PATH": DEFAULT_PATH}
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap failed to start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip() or f"exit {done.returncode}"
        return f"bwrap does not work here: {detail}"
    return ""
