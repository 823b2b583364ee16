"""The offline, deterministic model: replays a script of turns per skill.

A script is YAML: `turns:`, each turn optional `thinking`, `text`, `tools` (a list of
`{name, input, expect, expect_output}` calls), `usage` (`input_tokens`, `output_tokens`) and
`delay_s`. The turn to play is the number of assistant messages already in the conversation, so
the provider is stateless and a retried step replays from the top.

It never claims what did not happen: each call states what it expects back (`expect: success`
by default, or `error`, or `any`; `expect_output` a text the result must contain), and a
different result fails the step with an error naming the script, the turn, the call and what
came back. It fails loudly otherwise too: a turn past the end of the script raises, and
`conversation_done` raises when a conversation ended with turns left unplayed.
Sub-agents read the script `<skill>.subagent` when it exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from ..flows.errors import TemplateError, UsageError
from ..flows.loading import load_yaml_model
from ..flows.run import Usage
from .base import (
    ContentBlock,
    Message,
    ModelRequest,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStarted,
    TurnComplete,
)


class ScriptError(UsageError):
    code = "script_mismatch"


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    expect: Literal["success", "error", "any"] = "success"
    expect_output: str | None = None  # a text the result must contain


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thinking: str | None = None
    text: str | None = None
    tools: list[ScriptedCall] = Field(default_factory=list)
    input_tokens: int = 1000
    output_tokens: int = 200
    cost_usd: float = 0.0
    delay_s: float = 0.0


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    skill: str
    turns: list[ScriptedTurn] = Field(min_length=1)
    source: str = Field(default="", exclude=True)  # the file it came from, for error messages

    @property
    def label(self) -> str:
        return self.source or f"the script for {self.skill!r}"


def load_scripts(directory: Path) -> dict[str, Script]:
    scripts: dict[str, Script] = {}
    for path in sorted(directory.glob("*.yaml")):
        script = load_yaml_model(Script, path)
        if script.skill != path.stem:
            raise TemplateError(f"{path}: skill: {script.skill!r} does not match the file name {path.stem!r}")
        scripts[script.skill] = script.model_copy(update={"source": str(path)})
    return scripts


class ScriptedProvider:
    """A real `ModelProvider` that needs no network and no key."""

    name = "scripted"

    def __init__(self, scripts: Mapping[str, Script]) -> None:
        self.scripts = dict(scripts)

    @classmethod
    def from_directory(cls, directory: Path) -> ScriptedProvider:
        return cls(load_scripts(directory))

    def _script(self, request: ModelRequest) -> Script:
        keys = [f"{request.skill}.subagent", request.skill] if request.subagent else [request.skill]
        for key in keys:
            if key in self.scripts:
                return self.scripts[key]
        known = ", ".join(sorted(self.scripts)) or "none"
        raise ScriptError(f"the scripted model has no script for skill {keys[0]!r} (scripts: {known})")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        script = self._script(request)
        index = sum(1 for m in request.messages if m.role == "assistant")
        if index >= len(script.turns):
            raise ScriptError(
                f"unexpected turn: the script for {script.skill!r} has {len(script.turns)} turns and the "
                f"agent asked for turn {index + 1} (run {request.run_id}, step {request.step})"
            )
        if index:
            check_results(script, request, index - 1)
        turn = script.turns[index]
        if turn.delay_s:
            await anyio.sleep(turn.delay_s)
        blocks: list[ContentBlock] = []
        if turn.thinking is not None:
            yield ThinkingDelta(index=len(blocks), thinking=turn.thinking)
            blocks.append(ThinkingBlock(thinking=turn.thinking, signature="scripted"))
        if turn.text is not None:
            yield TextDelta(index=len(blocks), text=turn.text)
            blocks.append(TextBlock(text=turn.text))
        offered = {t.name for t in request.tools}
        for n, call in enumerate(turn.tools):
            if call.name not in offered:
                raise ScriptError(
                    f"the script for {script.skill!r} calls {call.name!r} in turn {index + 1}, "
                    f"which this agent is not offered (tools: {', '.join(sorted(offered))})"
                )
            call_id = f"toolu_{request.step}_{index}_{n}"
            yield ToolUseStarted(index=len(blocks), id=call_id, name=call.name)
            blocks.append(ToolUseBlock(id=call_id, name=call.name, input=call.input))
        usage = Usage(turns=1, input_tokens=turn.input_tokens, output_tokens=turn.output_tokens, cost_usd=turn.cost_usd)
        stop = "tool_use" if turn.tools else "end_turn"
        yield TurnComplete(message=Message(role="assistant", content=blocks), usage=usage, stop_reason=stop)

    def conversation_done(self, request: ModelRequest) -> None:
        """Called by the agent loop when a conversation ends. Raises if turns were left over."""
        script = self._script(request)
        played = sum(1 for m in request.messages if m.role == "assistant")
        if played:
            check_results(script, request, played - 1)
        if played < len(script.turns):
            raise ScriptError(
                f"unconsumed turns: the script for {script.skill!r} has {len(script.turns)} turns but the "
                f"conversation ended after {played} (run {request.run_id}, step {request.step})"
            )


def check_results(script: Script, request: ModelRequest, turn: int) -> None:
    """Raises ScriptError when a call of `turn` (0-based) came back other than the script expects.

    Calls after one that ends the step (`submit_result`, `report_blocked`) in the same turn are
    not run, so they are not checked."""
    results = {b.tool_use_id: b for m in request.messages if m.role == "user"
               for b in m.content if isinstance(b, ToolResultBlock)}
    for n, call in enumerate(script.turns[turn].tools):
        got = results.get(f"toolu_{request.step}_{turn}_{n}")
        if got is None or call.expect == "any" and call.expect_output is None:
            continue
        if call.name in ("submit_result", "report_blocked") and not got.is_error:
            return
        problem = ""
        if call.expect == "success" and got.is_error:
            problem = "expected it to succeed, but it failed"
        elif call.expect == "error" and not got.is_error:
            problem = "expected it to fail, but it succeeded"
        elif call.expect_output is not None and call.expect_output not in got.content:
            problem = f"expected its result to contain {call.expect_output!r}"
        if problem:
            shown = got.content if len(got.content) <= 600 else got.content[:600] + " [...]"
            raise ScriptError(
                f"{script.label}, turn {turn + 1}, call {n + 1} ({call.name}): {problem}; "
                f"it returned: {shown} (run {request.run_id}, step {request.step})"
            )
