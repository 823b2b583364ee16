"""The supervisor of one sandboxed command without bubblewrap: its whole process tree dies.

Without bubblewrap there is no PID namespace to tear down, and a process group is no fence: a
command can `setsid` (or double-fork) out of it. So the engine starts this small program
instead (by path, standard library only: `python -I -S reaper.py [--uid U --gid G] -- argv...`).
It marks itself a *child subreaper* (`PR_SET_CHILD_SUBREAPER`), so every orphaned descendant of
the command, however it detached, is re-parented to it rather than to init; then it starts the
command (dropping to the sandbox uid and gid when given) and waits. When the command exits, or
when the engine sends SIGTERM (a timeout or a cancel), or when the engine dies
(`PR_SET_PDEATHSIG`), it SIGKILLs every process below it, reaps them, and exits with the
command's status (`128 + signal` if a signal ended it). It runs as the engine's user, so a
sandbox that dropped to its own uid cannot signal it; the engine SIGKILLs the process group
as a last resort if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_SWEEP_ROUNDS = 200


class _Stop(Exception):
    pass


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def _descendants(root: int) -> list[int]:
    children = _children_map()
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep() -> None:
    """SIGKILL every descendant until none is left (a fork racing the kill is caught next round)."""
    me = os.getpid()
    for _ in range(_SWEEP_ROUNDS):
        alive = _descendants(me)
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
        _reap()
    _reap()


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: list[str]) -> int:
    uid = gid = None
    while argv and argv[0] != "--":
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--uid":
            uid = int(value)
        elif flag == "--gid":
            gid = int(value)
    command = argv[1:]
    engine = os.getppid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != engine:  # the engine died before the line above (it may itself be pid 1)
        return 125
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    status: int | None = None
    try:
        child = os.fork()
        if child == 0:
            _exec_child(command, uid, gid)
        while True:
            pid, waited = os.waitpid(-1, 0)  # reaps orphans re-parented here as well
            if pid == child:
                status = waited
                break
    except _Stop:
        status = None  # the engine stopped it: reported as killed
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sweep()
    if status is None:
        return 128 + signal.SIGKILL
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _exec_child(command: list[str], uid: int | None, gid: int | None) -> None:
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        if gid is not None:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
        if uid is not None:
            os.setresuid(uid, uid, uid)
        os.execv(command[0], command)
    except BaseException as exc:  # never return into the supervisor's code
        os.write(2, f"flowrun: cannot start the command: {exc}\n".encode())
    os._exit(126)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
