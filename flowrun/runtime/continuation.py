"""Continuing a step after a restart, when that is safe.

A run left `running` by a process that died is normally parked as interrupted (a retry continues
it). The exception is the step that was streaming: its agent's conversation is in the log (the
assistant's turn is made durable before any tool with effects runs), and every call of its last
turn is a shell command still running in a sandbox that outlived the process (e2b). Such a step
re-attaches to the commands, keeps streaming their output, and goes on; anything less certain
(a tool whose effect is unknown, a command that ended while nobody listened) is parked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..flows.enums import StepStatus
from ..flows.events import AgentMessages
from ..flows.run import Run
from ..llm.base import Message, ToolUseBlock
from ..sandboxes.base import Sandbox
from ..storage.base import Store

log = logging.getLogger("flowrun.runtime")
REATTACHABLE = frozenset({"shell"})


@dataclass
class Continuation:
    step: int
    history: list[Message]
    attach: dict[str, int] = field(default_factory=dict)  # call id -> pid of the running command


async def conversation(store: Store, run: Run, step: int, attempt: int) -> list[Message]:
    """The stored conversation of one attempt of a step."""
    messages: list[Message] = []
    for event in await store.events(run.id):
        data = event.data
        if isinstance(data, AgentMessages) and data.step == step and data.attempt == attempt:
            messages += [Message.model_validate(m) for m in data.messages]
    return messages


def in_flight(run: Run) -> int | None:
    return next((s.index for s in run.steps if s.status == StepStatus.RUNNING), None)


async def plan(store: Store, run: Run, connect: Callable[[], Awaitable[Sandbox | None]]) -> Continuation | None:
    """How the running step of `run` can go on, or None when it must be parked.

    `connect` reconnects the run's sandbox (None if it cannot); it is called only when the
    stored conversation shows commands that might still be running, so parking a run whose step
    was not streaming costs no reconnect."""
    index = in_flight(run)
    if index is None:
        return None
    history = await conversation(store, run, index, run.steps[index].attempt)
    if not history or history[-1].role != "assistant":
        return None  # not streaming: no command to re-attach to
    calls = [b for b in history[-1].content if isinstance(b, ToolUseBlock)]
    if not calls or any(c.name not in REATTACHABLE for c in calls):
        return None
    sandbox = await connect()
    running_calls = getattr(sandbox, "running_calls", None)
    if running_calls is None:
        return None
    running: dict[str, int] = await running_calls()
    if any(c.id not in running for c in calls):
        return None  # a command ended while nobody listened: its result is unknown
    log.info("run %s: step %d re-attaches to %d running command(s)", run.id, index, len(calls))
    return Continuation(step=index, history=history, attach={c.id: running[c.id] for c in calls})
