"""Running one sandboxed process: streaming, output cap, timeout, and killing the whole tree.

The process is started in its own session (`start_new_session=True`) so its process group can be
signalled as a unit. Under bubblewrap the process we start is bwrap itself, whose child is the
init of a private PID namespace with `--die-with-parent`: killing bwrap kills that init and with
it every process in the namespace, including ones that called `setsid`. Without bubblewrap the
process we start is the `reaper` supervisor (`supervised=True`), a child subreaper that every
escaped descendant is re-parented to: asked with SIGTERM, it kills and reaps them all.
"""

from __future__ import annotations

import codecs
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress

import anyio
from anyio.abc import ByteReceiveStream, Process

from .base import ExecResult, OutputCallback
from .output import OutputCollector, StreamName

logger = logging.getLogger("flowrun.sandboxes")


TIMEOUT_EXIT_CODE = 124
# After the main process exits we kill what is left of its tree; output still buffered in the
# pipes is drained for at most this long (a `setsid` escapee may hold a pipe open forever).
_DRAIN_GRACE_S = 2.0
_REAP_TIMEOUT_S = 5.0


async def _pump(stream: ByteReceiveStream, name: StreamName, output: OutputCollector) -> None:
    """Read one pipe to its end (even past the output budget, so the process never blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    async for chunk in stream:
        if not output.truncated:
            await output.feed(name, decoder.decode(chunk))
    await output.feed(name, decoder.decode(b"", final=True))


def kill_tree(process: Process) -> None:
    """SIGKILL the process group and, while it is unreaped, the process itself.

    An unreaped pid cannot be reused, so signalling it is safe; a group id stays reserved while
    any member lives, so signalling the group of leftovers after the leader exited is safe too."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGKILL)


async def stop_tree(process: Process, *, supervised: bool) -> None:
    """End the command's whole tree. A supervised command (see `reaper`) is asked with SIGTERM,
    and its supervisor kills and reaps every descendant, escaped sessions included; it gets
    `_REAP_TIMEOUT_S` before the group is SIGKILLed anyway. Shielded: runs on cancellation."""
    if supervised and process.returncode is None:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGTERM)
        with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_TIMEOUT_S):
            await process.wait()
    kill_tree(process)


def _exit_code(returncode: int | None) -> int:
    if returncode is None:
        return -1
    return 128 - returncode if returncode < 0 else returncode


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    time_limit: float,
    max_output_bytes: int,
    on_output: OutputCallback | None,
    user: int | None = None,
    group: int | None = None,
    pass_fds: Sequence[int] = (),
    supervised: bool = False,
) -> ExecResult:
    """Run `argv` to completion, or until `time_limit` seconds, and return what it did.

    Cancellation kills the whole tree (shielded, bounded) before it propagates.
    """
    started = time.monotonic()
    output = OutputCollector(max_output_bytes, on_output)
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
        pass_fds=pass_fds,
    )
    timed_out = False
    try:
        stdout, stderr = process.stdout, process.stderr
        assert stdout is not None and stderr is not None
        async with anyio.create_task_group() as tg:
            drained = anyio.Event()

            async def pumps() -> None:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(_pump, stdout, "stdout", output)
                    inner.start_soon(_pump, stderr, "stderr", output)
                drained.set()

            tg.start_soon(pumps)
            with anyio.move_on_after(time_limit) as deadline:
                await process.wait()
            timed_out = deadline.cancelled_caught
            await stop_tree(process, supervised=supervised)  # its leftovers do not outlive it
            with anyio.move_on_after(_DRAIN_GRACE_S):
                await drained.wait()
            tg.cancel_scope.cancel()
    except BaseException:
        await stop_tree(process, supervised=supervised)
        with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_TIMEOUT_S):
            await process.aclose()
        raise
    with anyio.CancelScope(shield=True), anyio.move_on_after(_REAP_TIMEOUT_S):
        await process.aclose()
    await output.close()
    duration = time.monotonic() - started
    code = TIMEOUT_EXIT_CODE if timed_out else _exit_code(process.returncode)
    if timed_out:
        logger.info("command timed out after %.1fs: %s", time_limit, argv[-1][:200])
    return ExecResult(
        exit_code=code,
        stdout=output.text("stdout"),
        stderr=output.text("stderr"),
        timed_out=timed_out,
        truncated=output.truncated,
        duration_s=duration,
    )
