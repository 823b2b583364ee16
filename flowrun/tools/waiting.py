"""`wait_for_run`: a bounded long-poll over the run's event log, with progress while it waits.

MCP clients commonly give up on a tool call after about 60 seconds and several ignore progress,
so a wait is capped at 50 seconds and returns the run as it is then; the assistant calls again.
It reads the same event log as every other face, starting from the run's last seq (or the seq
the caller last saw), so nothing that happens between two calls is missed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..flows.enums import RunStatus
from ..flows.events import Event
from ..flows.run import Run
from ..runtime.access import Actor
from ..runtime.engine import Engine
from .models import WaitUntil

MAX_WAIT_S = 50.0
TRANSCRIPT_PROGRESS_EVERY_S = 2.0
PARKED = frozenset(s for s in RunStatus if s.finished)  # needs a person, or has ended
ENDED = PARKED - {RunStatus.PAUSED}
CHANGES = frozenset({"run_status", "step_status", "checkpoint", "decision", "retry"})

SendProgress = Callable[[float, str], Awaitable[None]]


def _wanted(until: WaitUntil) -> frozenset[RunStatus] | None:
    return {"paused": PARKED, "finished": ENDED, "any_change": None}[until]


def _matches(event: Event, wanted: frozenset[RunStatus] | None) -> bool:
    data = event.data
    if wanted is None:
        return data.type in CHANGES
    return data.type == "run_status" and data.status in wanted


async def wait_for(engine: Engine, actor: Actor, run_id: str, until: WaitUntil, timeout_s: float,
                   after_seq: int | None, on_event: Callable[[Event], Awaitable[None]]) -> tuple[Run, bool]:
    """Wait until the run gets where `until` says, or `timeout_s` passes.

    `paused`: the run needs a person or has ended (any status but pending/running).
    `finished`: the run has ended or parked for good (completed, failed, rejected, cancelled,
    blocked, interrupted); a checkpoint does not count. `any_change`: the next change of the
    run's or a step's status, a checkpoint or a decision after `after_seq` (default: now);
    transcript output does not count. Returns the run then and whether the condition was met.
    """
    run = await engine.get_run(actor, run_id)
    wanted = _wanted(until)
    if wanted is not None and run.status in wanted:
        return run, True
    start = run.last_seq if wanted is not None or after_seq is None else max(0, min(after_seq, run.last_seq))
    reached = False
    with anyio.move_on_after(timeout_s):
        async for event in engine.subscribe(actor, run_id, start):
            await on_event(event)
            if _matches(event, wanted):
                reached = True
                break
    return await engine.get_run(actor, run_id), reached


class ProgressFeed:
    """Turns events into progress notifications: every status change, and the agent's latest
    transcript line at most every couple of seconds (a heartbeat, not a firehose). The event seq
    is the progress value, so it always increases."""

    def __init__(self, send: SendProgress, step_names: Sequence[str]) -> None:
        self._send = send
        self._names = list(step_names)
        self._last_heartbeat = -TRANSCRIPT_PROGRESS_EVERY_S

    async def __call__(self, event: Event) -> None:
        message = self._message(event)
        if message is not None:
            await self._send(float(event.seq), message)

    def _step(self, index: int | None) -> str:
        if index is None or not 0 <= index < len(self._names):
            return "setup"
        return f"step {index + 1}/{len(self._names)} '{self._names[index]}'"

    def _message(self, event: Event) -> str | None:
        data = event.data
        if data.type == "run_status":
            return f"run {data.status.value}" + (f": {data.reason}" if data.reason else "")
        if data.type == "step_status":
            return f"{self._step(data.step)} {data.status.value}"
        if data.type == "checkpoint":
            return f"waiting for sign-off before {self._step(data.checkpoint.step)}: {data.checkpoint.message}"
        if data.type == "decision":
            return f"{data.decision.kind.value} by {data.decision.actor} at {self._step(data.step)}"
        if data.type == "transcript" and data.text.strip():
            now = anyio.current_time()
            if now - self._last_heartbeat < TRANSCRIPT_PROGRESS_EVERY_S:
                return None
            self._last_heartbeat = now
            line = " ".join(data.text.split())
            return f"{self._step(data.step)}: {line[:120]}"
        return None
