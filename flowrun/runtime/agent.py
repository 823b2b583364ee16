"""The step agent loop, provider-neutral.

Stream one model turn, turn its deltas into transcript entries, run the tool calls it made, feed
the results back, and repeat until the agent calls `submit_result` or `report_blocked`, stops
calling tools, or runs out of turns (then the step is `partial`). A result that does not match
the skill's schema goes back to the agent with the validation errors for another pass; past
`max_validation_passes` the step fails.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from ..flows.enums import Outcome, TranscriptKind
from ..flows.errors import BlockedError, FlowrunError, ModelError
from ..flows.events import TranscriptEntry
from ..flows.loading import describe_validation_error
from ..flows.run import Artifact, StepResult, Usage
from ..flows.skills import RESULT_ENVELOPE, Skill, validate_output
from ..llm.base import (
    Message,
    ModelProvider,
    ModelRequest,
    TextBlock,
    TextDelta,
    ThinkingDelta,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    TurnComplete,
)
from ..sandboxes.base import Sandbox
from .tools.base import Tool, ToolContext, ToolOutput, cap_output

log = logging.getLogger("flowrun.runtime")

SUBMIT = "submit_result"
REPORT_BLOCKED = "report_blocked"
TURN_RETRIES = 3
MAX_RETRY_WAIT_S = 60.0  # the most a server's retry-after can hold a turn (the deadline bounds it too)
_sleep = anyio.sleep  # tests observe the waits here
# a tool that ends its own work at the step's deadline (spawn_subagents collects its sub-agents'
# results then) gets this long to report before the call is cut off
TOOL_DEADLINE_GRACE_S = 2.0

Emit = Callable[[TranscriptEntry], Awaitable[None]]


def result_tool(skill: Skill) -> ToolSpec:
    schema = {**RESULT_ENVELOPE, "properties": {**RESULT_ENVELOPE["properties"], "output": skill.output_schema}}
    return ToolSpec(
        name=SUBMIT,
        description=(
            "Finish the step: report the outcome, a summary for the reviewer, any artifacts, and the "
            "structured output the skill requires. Call it exactly once, when the work is done."
        ),
        input_schema=schema,
    )


BLOCKED_TOOL = ToolSpec(
    name=REPORT_BLOCKED,
    description=(
        "Stop because you lack something you need to proceed safely (a credential, access, a "
        "decision). The run pauses for a person; say exactly what is missing."
    ),
    input_schema={
        "type": "object",
        "properties": {"reason": {"type": "string"}, "needs": {"type": "string"}},
        "required": ["reason"],
    },
)


@dataclass
class AgentTask:
    """Everything one agent conversation needs. A sub-agent gets its own, sharing the sandbox."""

    run_id: str
    step: int
    skill: Skill
    model: str
    provider: ModelProvider
    sandbox: Sandbox
    tools: Mapping[str, Tool]
    system: str
    instructions: str
    emit: Emit
    on_usage: Callable[[Usage], Awaitable[None]]
    max_turns: int
    deadline: float = math.inf  # anyio.current_time() by which the step must end
    subagent: str | None = None
    cwd: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # durability: `record(messages, before_tools)` appends to the persisted conversation (the
    # step's main agent only); `history` continues one after a restart, `attach` maps the call
    # ids of commands still running then to their pids
    collected: list[Artifact] = field(default_factory=list)  # artifacts tools made (a pushed PR)
    record: Callable[[list[Message], bool], Awaitable[None]] | None = None
    history: list[Message] = field(default_factory=list)
    attach: dict[str, int] = field(default_factory=dict)
    # called before every tool call with effects: raises (RunStopped) when the run was cancelled,
    # so no call starts once a cancel is acknowledged, by whichever process
    before_tool: Callable[[], Awaitable[None]] | None = None


@dataclass
class AgentOutcome:
    result: StepResult
    turns: int
    blocked_reason: str | None = None
    error: str | None = None


def _entry(task: AgentTask, kind: TranscriptKind, text: str = "", **fields: Any) -> TranscriptEntry:
    return TranscriptEntry(kind=kind, step=task.step, text=text, subagent=task.subagent, **fields)


def _retry_delay(exc: ModelError, attempt: int) -> float:
    """Exponential backoff, or longer when the server asked for longer (`retry-after`), capped."""
    delay = min(2.0**attempt, 8.0)
    asked = exc.details.get("retry_after")
    if isinstance(asked, int | float) and asked > delay:
        delay = min(float(asked), MAX_RETRY_WAIT_S)
    return delay


async def _stream_turn(task: AgentTask, request: ModelRequest, turn: int) -> TurnComplete:
    """One model turn, with bounded retries of failures the provider marks retryable. A retried
    attempt streams under new stream ids, so a renderer never glues two attempts together."""
    who = f"{task.subagent}." if task.subagent else ""
    for attempt in range(TURN_RETRIES + 1):
        stream = f"{who}{turn}.{attempt}"
        try:
            complete: TurnComplete | None = None
            async for event in task.provider.stream(request):
                if isinstance(event, TextDelta):
                    await task.emit(_entry(task, TranscriptKind.TEXT, event.text, stream=f"{stream}.{event.index}"))
                elif isinstance(event, ThinkingDelta):
                    await task.emit(_entry(task, TranscriptKind.THINKING, event.thinking, stream=f"{stream}.{event.index}"))
                elif isinstance(event, TurnComplete):
                    complete = event
            if complete is None:
                raise ModelError("the model's stream ended without completing the turn")
            return complete
        except ModelError as exc:
            if not exc.retryable or attempt == TURN_RETRIES:
                raise
            delay = _retry_delay(exc, attempt)
            await task.emit(_entry(task, TranscriptKind.INFO, f"Model error, retrying the turn in {delay:.0f}s: {exc.message}"))
            await _sleep(delay)
    raise AssertionError("unreachable")


async def _run_tool(task: AgentTask, call: ToolUseBlock) -> ToolOutput:
    tool = task.tools.get(call.name)
    if tool is None:
        return ToolOutput(f"unknown tool {call.name!r}; available: {', '.join(sorted(task.tools))}", is_error=True)
    attach_pid = task.attach.get(call.id)
    ctx = ToolContext(run_id=task.run_id, step=task.step, call_id=call.id, sandbox=task.sandbox, emit=task.emit,
                      subagent=task.subagent, cwd=task.cwd, extras=task.extras, attach_pid=attach_pid)
    try:
        args = tool.input_model.model_validate(call.input)
    except ValidationError as exc:
        output = ToolOutput(f"invalid input for {call.name}: {describe_validation_error(exc)}", is_error=True)
        await task.emit(_entry(task, TranscriptKind.TOOL_START, call.name, tool=call.name, call_id=call.id,
                               data={"input": call.input}))
        await task.emit(_entry(task, TranscriptKind.TOOL_END, output.content, tool=call.name, call_id=call.id, is_error=True))
        return output
    if attach_pid is not None:  # its tool_start was written before the restart
        await task.emit(_entry(task, TranscriptKind.INFO, f"Reattached to the running {call.name} call after a restart",
                               call_id=call.id, tool=call.name, data={"pid": attach_pid}))
    else:
        detail: dict[str, Any] = {}
        with anyio.move_on_after(_remaining(task)), contextlib.suppress(FlowrunError):
            detail = await tool.preview(ctx, args)
        await task.emit(_entry(task, TranscriptKind.TOOL_START, call.name, tool=call.name, call_id=call.id,
                               data={"input": call.input, **detail}))
    output = await _bounded_run(task, tool, ctx, args)
    await task.emit(_entry(task, TranscriptKind.TOOL_END, cap_output(output.content, 4000), tool=call.name,
                           call_id=call.id, is_error=output.is_error, data=output.data))
    if not output.is_error and isinstance(output.data.get("artifact"), dict):
        task.collected.append(Artifact.model_validate(output.data["artifact"]))
    return output


def _remaining(task: AgentTask) -> float:
    return max(task.deadline - anyio.current_time(), 0.0)


async def _bounded_run(task: AgentTask, tool: Tool, ctx: ToolContext, args: Any) -> ToolOutput:
    """Run a tool call within the step's deadline (cancellation reaches it as well). A failure
    the tool did not expect is still a failed call the agent sees, never a crash of the step;
    its message names no host path (`strerror` only)."""
    output: ToolOutput | None = None
    with anyio.move_on_after(_remaining(task) + TOOL_DEADLINE_GRACE_S):
        try:
            output = await tool.run(ctx, args)
        except BlockedError:
            raise  # a missing credential blocks the run (with its fix), it is not a failed call
        except FlowrunError as exc:
            output = ToolOutput(exc.message, is_error=True, data={"code": exc.code})
        except OSError as exc:
            log.info("tool %s of run %s failed: %r", tool.name, task.run_id, exc)
            output = ToolOutput(f"{tool.name} failed: {exc.strerror or type(exc).__name__}", is_error=True,
                                data={"code": "os_error"})
    if output is None:
        output = ToolOutput(f"{tool.name} was stopped: the step ran out of its time budget", is_error=True,
                            data={"code": "step_deadline"})
    return output


def _check_result(task: AgentTask, call: ToolUseBlock) -> tuple[StepResult | None, list[str]]:
    try:
        result = StepResult.model_validate(call.input)
    except ValidationError as exc:
        return None, [describe_validation_error(exc)]
    if result.outcome in (Outcome.SUCCESS, Outcome.PARTIAL):
        errors = validate_output(task.skill, result.output)
        if errors:
            return None, errors
    return result, []


@cache
def _tool_spec(name: str, description: str, input_model: type[BaseModel]) -> ToolSpec:
    return ToolSpec(name=name, description=description, input_schema=input_model.model_json_schema())


def _spec(tool: Tool) -> ToolSpec:
    """A tool that carries its own JSON schema (an MCP server's tool) is shown with it as is."""
    schema: dict[str, Any] | None = getattr(tool, "input_schema", None)
    if schema is not None:
        return ToolSpec(name=tool.name, description=tool.description, input_schema=schema)
    return _tool_spec(tool.name, tool.description, tool.input_model)


PURE_CALLS = frozenset({SUBMIT, REPORT_BLOCKED})  # change nothing outside the conversation


@dataclass
class _State:
    turns: int = 0
    validation_failures: int = 0
    outcome: AgentOutcome | None = None


async def _record(task: AgentTask, messages: list[Message], *, before_tools: bool = False) -> None:
    if task.record is not None:
        await task.record(messages, before_tools)


async def _handle_calls(task: AgentTask, calls: list[ToolUseBlock], state: _State) -> list[ToolResultBlock]:
    results: list[ToolResultBlock] = []
    for call in calls:
        if state.outcome is not None:
            results.append(ToolResultBlock(tool_use_id=call.id, content="not run: the step already ended", is_error=True))
            continue
        if call.name == SUBMIT:
            result, errors = _check_result(task, call)
            await task.emit(_entry(task, TranscriptKind.TOOL_START, SUBMIT, tool=SUBMIT, call_id=call.id,
                                   data={"input": call.input}))
            if result is not None:
                await task.emit(_entry(task, TranscriptKind.TOOL_END, f"result accepted: {result.outcome.value}",
                                       tool=SUBMIT, call_id=call.id))
                state.outcome = AgentOutcome(result, state.turns)
                results.append(ToolResultBlock(tool_use_id=call.id, content="result accepted"))
                continue
            state.validation_failures += 1
            text = "The result does not match the required shape:\n- " + "\n- ".join(errors)
            await task.emit(_entry(task, TranscriptKind.TOOL_END, text, tool=SUBMIT, call_id=call.id, is_error=True))
            if state.validation_failures > task.skill.max_validation_passes:
                state.outcome = AgentOutcome(StepResult(outcome=Outcome.ERROR, summary=(
                    f"The result failed validation {state.validation_failures} times: " + "; ".join(errors))),
                    state.turns, error="result failed the skill's schema")
            results.append(ToolResultBlock(tool_use_id=call.id, content=text + "\nFix it and call submit_result again.",
                                           is_error=True))
        elif call.name == REPORT_BLOCKED:
            reason = str(call.input.get("reason") or "The agent reported it cannot proceed.")
            needs = str(call.input.get("needs") or "")
            await task.emit(_entry(task, TranscriptKind.TOOL_START, REPORT_BLOCKED, tool=REPORT_BLOCKED,
                                   call_id=call.id, data={"input": call.input}))
            await task.emit(_entry(task, TranscriptKind.TOOL_END, reason, tool=REPORT_BLOCKED, call_id=call.id))
            summary = reason + (f" Needs: {needs}" if needs else "")
            state.outcome = AgentOutcome(StepResult(outcome=Outcome.BLOCKED, summary=summary), state.turns,
                                         blocked_reason=summary)
            results.append(ToolResultBlock(tool_use_id=call.id, content="reported; the run pauses for a person"))
        else:
            if task.before_tool is not None:
                await task.before_tool()
            output = await _run_tool(task, call)
            results.append(ToolResultBlock(tool_use_id=call.id, content=cap_output(output.content),
                                           is_error=output.is_error))
    return results


async def _refused(task: AgentTask, complete: TurnComplete, turns: int) -> AgentOutcome:
    """The model declined to go on (`stop_reason: refusal`): the step fails saying so, with
    whatever the model said, rather than looking like an agent that forgot to submit."""
    said = " ".join(b.text for b in complete.message.content if isinstance(b, TextBlock)).strip()
    summary = "The model refused to continue this step (stop reason: refusal)."
    if said:
        summary += f" It said: {said[:500]}"
    await task.emit(_entry(task, TranscriptKind.ERROR, summary, is_error=True))
    return AgentOutcome(StepResult(outcome=Outcome.ERROR, summary=summary), turns,
                        error="the model refused to continue")


def _pending_calls(messages: list[Message]) -> list[ToolUseBlock]:
    """Tool calls of a conversation's last assistant turn that have no results yet."""
    if not messages or messages[-1].role != "assistant":
        return []
    return [b for b in messages[-1].content if isinstance(b, ToolUseBlock)]


async def run_agent(task: AgentTask) -> AgentOutcome:
    """Drive one agent conversation to its result. Raises on model failures it cannot retry.

    With `task.history` it continues a conversation a restart interrupted: calls of the last
    assistant turn that have no results yet run first (re-attaching to commands still running)."""
    specs = [_spec(t) for t in task.tools.values()]
    specs += [result_tool(task.skill), BLOCKED_TOOL]
    messages: list[Message] = list(task.history)
    if not messages:
        messages = [Message(role="user", content=[TextBlock(text=task.instructions)])]
        await _record(task, messages)
    state = _State(turns=sum(m.role == "assistant" for m in messages))
    request = ModelRequest(model=task.model, system=task.system, messages=messages, tools=specs,
                           skill=task.skill.slug, run_id=task.run_id, step=task.step, subagent=task.subagent)
    calls = _pending_calls(messages)
    while state.outcome is None:
        if not calls:
            if state.turns >= task.max_turns:
                state.outcome = AgentOutcome(StepResult(outcome=Outcome.PARTIAL, summary=(
                    f"The step used its {task.max_turns} turns without submitting its result.")), state.turns)
                break
            if anyio.current_time() >= task.deadline:
                state.outcome = AgentOutcome(StepResult(outcome=Outcome.PARTIAL, summary=(
                    "The step ran out of its time budget before submitting its result.")), state.turns)
                break
            request = request.model_copy(update={"messages": list(messages)})
            budget = max(task.deadline - anyio.current_time(), 0.001) if task.deadline != math.inf else None
            with anyio.fail_after(budget):
                complete = await _stream_turn(task, request, state.turns)
            state.turns += 1
            await task.on_usage(complete.usage)
            messages.append(complete.message)
            if complete.stop_reason == "refusal":
                await _record(task, [complete.message])
                state.outcome = await _refused(task, complete, state.turns)
                break
            calls = [b for b in complete.message.content if isinstance(b, ToolUseBlock)]
            # durable before any tool with effects runs, so a restart never runs it twice
            await _record(task, [complete.message], before_tools=any(c.name not in PURE_CALLS for c in calls))
            if not calls:
                state.outcome = AgentOutcome(StepResult(outcome=Outcome.PARTIAL, summary=(
                    "The agent stopped without submitting its result.")), state.turns)
                break
        results = await _handle_calls(task, calls, state)
        calls = []
        messages.append(Message(role="user", content=list(results)))
        await _record(task, messages[-1:])
    done = getattr(task.provider, "conversation_done", None)
    if done is not None:
        done(request.model_copy(update={"messages": messages}))
    if task.collected:  # what a tool really made is on the record, whatever the agent reported
        result = state.outcome.result
        known = {(a.kind, a.ref) for a in result.artifacts}
        extra = [a for a in task.collected if (a.kind, a.ref) not in known]
        state.outcome.result = result.model_copy(update={"artifacts": [*result.artifacts, *extra]})
    return state.outcome
