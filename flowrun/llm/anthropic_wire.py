"""The Anthropic Messages API wire format: our provider-neutral types to request params, and a
raw event stream back to one assistant `Message`.

Kept apart from the provider so the mapping can be read (and tested) without the SDK: it
imports `anthropic` only for type checking. The rules that matter:
- thinking and redacted_thinking blocks go back byte for byte (text *and* signature), or the
  API rejects the next turn of a tool loop;
- a tool call's input is parsed once, from all of its `input_json_delta` fragments, when the
  block stops; a call cut off by `max_tokens` (partial JSON, or no `content_block_stop` at all)
  is an error that says so, never a half-filled or empty dict that would run;
- server-side tool blocks (`server_tool_use`, `mcp_tool_use`) stream their input the same way;
  their JSON is assembled but they are not passed on (the server ran them);
- a cache breakpoint on the conversation's last block lets every turn of a tool loop read the
  previous turn's prefix from the prompt cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..flows.errors import UsageError
from ._support import model_error, parse_tool_input
from .base import (
    ContentBlock,
    Message,
    RedactedThinkingBlock,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStarted,
)

if TYPE_CHECKING:
    from anthropic.types import RawMessageStreamEvent

logger = logging.getLogger("flowrun.llm")

EPHEMERAL = {"type": "ephemeral"}
_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


@dataclass(frozen=True, slots=True)
class ThinkingConfig:
    """How much Claude thinks before answering.

    `adaptive` lets the model decide (the recommended mode on current models); `budgeted` is
    manual extended thinking with `budget_tokens` (>= 1024; older models need it); `off` sends
    `{"type": "disabled"}`. `display="omitted"` asks for signature-only thinking blocks.
    """

    mode: Literal["adaptive", "budgeted", "off"] = "adaptive"
    budget_tokens: int = 8192
    display: Literal["summarized", "omitted"] | None = None

    @classmethod
    def parse(cls, text: str) -> ThinkingConfig:
        """`adaptive`, `off` (or `disabled`), `budget:N` (or `budgeted:N`)."""
        value = text.strip().lower()
        if value in ("", "adaptive"):
            return cls("adaptive")
        if value in ("off", "disabled", "none"):
            return cls("off")
        kind, _, number = value.partition(":")
        if kind in ("budget", "budgeted") and number.isdigit() and int(number) >= 1024:
            return cls("budgeted", budget_tokens=int(number))
        raise UsageError(
            f"FLOWRUN_THINKING={text!r} is not understood: use adaptive, off, or budget:N with N >= 1024"
        )

    def request_params(
        self, max_tokens: int, accepts: frozenset[str] | None = None
    ) -> tuple[dict[str, Any] | None, int]:
        """The `thinking` parameter (`None`: send none) and the `max_tokens` to send with it.

        `accepts` is what the model takes (`pricing.thinking_modes`; `None` when unknown, then
        the mode goes as configured): `off`, or a model without thinking, sends no parameter;
        `budget_tokens` goes only to a model that accepts it (an adaptive-only model gets
        `adaptive`), and an adaptive request to a budget-only model gets the configured budget.
        A thinking budget counts toward `max_tokens` and must stay below it, so a budgeted
        request gets at least `budget_tokens + 4096` to leave room for the answer.
        """
        mode = self.mode
        if mode == "off" or accepts is not None and not accepts:
            return None, max_tokens
        if accepts is not None and mode not in accepts:
            mode = "adaptive" if "adaptive" in accepts else "budgeted"
        param: dict[str, Any] = {"type": "adaptive"}
        if mode == "budgeted":
            param = {"type": "enabled", "budget_tokens": self.budget_tokens}
            max_tokens = max(max_tokens, self.budget_tokens + 4096)
        if self.display is not None:
            param["display"] = self.display
        return param, max_tokens


def wire_model(model: str, default: str | None) -> str:
    """The model id to send: `anthropic:` stripped; the provider default when none is named."""
    name = model.strip().removeprefix("anthropic:")
    if name and name != "scripted":
        return name
    if default:
        return default
    raise UsageError(f"the Anthropic provider was asked for model {model!r}; name a Claude model")


def block_to_param(block: ContentBlock, *, cache: bool = False) -> dict[str, Any]:
    """Our block as an Anthropic content block param. Thinking goes back byte for byte."""
    param: dict[str, Any]
    match block:
        case TextBlock():
            param = {"type": "text", "text": block.text}
        case ThinkingBlock():
            param = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
        case RedactedThinkingBlock():
            param = {"type": "redacted_thinking", "data": block.data}
        case ToolUseBlock():
            param = {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
        case ToolResultBlock():
            param = {
                "type": "tool_result",
                "tool_use_id": block.tool_use_id,
                "content": block.content,
                "is_error": block.is_error,
            }
    if cache and param["type"] in ("text", "tool_use", "tool_result"):
        param["cache_control"] = dict(EPHEMERAL)
    return param


def messages_to_params(messages: list[Message], *, cache_tail: bool = True) -> list[dict[str, Any]]:
    """Map the conversation; with `cache_tail`, a cache breakpoint goes on its last block.

    Empty text blocks are left out: the API rejects them, and a turn can end with one."""
    params: list[dict[str, Any]] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        blocks = [b for b in message.content if not (isinstance(b, TextBlock) and not b.text)]
        content = [
            block_to_param(b, cache=cache_tail and i == last and j == len(blocks) - 1)
            for j, b in enumerate(blocks)
        ]
        params.append({"role": message.role, "content": content})
    return params


class TurnAssembler:
    """Assembles one assistant message from raw stream events, by content block index."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.stopped = False

    def take_usage(self, usage: Any) -> None:
        for field in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ):
            value = getattr(usage, field, None)
            if value is not None:  # message_delta carries cumulative counts; absent means unchanged
                self.usage[field] = value

    def finish_tool_input(self, index: int, stop_reason: str | None) -> None:
        block = self.blocks[index]
        fragments = self.json.pop(index, None)
        if fragments is None:
            return
        if not "".join(fragments).strip() and block.get("input"):
            return  # the whole input came with the block's start
        parsed = parse_tool_input(block["name"], "".join(fragments), cut=stop_reason == "max_tokens")
        block["input"] = parsed

    def check_complete(self) -> None:
        """Raises `ModelError` if a tool call never finished streaming its input: a call cut off
        (by `max_tokens`, or a stream that ended early) must never run with what arrived."""
        for index in sorted(self.json):
            block = self.blocks[index]
            if block["type"] != "tool_use":
                continue
            cut = self.stop_reason == "max_tokens"
            reason = "the turn hit max_tokens; raise the step's max_tokens" if cut else (
                "its content block never ended")
            raise model_error(
                f"the model's call to {block['name']!r} was cut off before its input was complete "
                f"({reason})",
                code="model_bad_tool_input", retryable=not cut,
            )

    def message(self) -> Message:
        self.check_complete()
        content: list[ContentBlock] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            kind = block["type"]
            if kind == "text":
                if block["text"]:
                    content.append(TextBlock(text=block["text"]))
            elif kind == "thinking":
                content.append(
                    ThinkingBlock(thinking=block["thinking"], signature=block["signature"])
                )
            elif kind == "redacted_thinking":
                content.append(RedactedThinkingBlock(data=block["data"]))
            elif kind == "tool_use":
                content.append(
                    ToolUseBlock(id=block["id"], name=block["name"], input=block.get("input", {}))
                )
            else:
                logger.warning("dropping unsupported Anthropic content block %r", kind)
        return Message(role="assistant", content=content)

    def feed(self, event: RawMessageStreamEvent) -> list[StreamEvent]:
        """Apply one raw stream event; returns the deltas to pass on."""
        turn = self
        if event.type == "message_start":
            turn.take_usage(event.message.usage)
        elif event.type == "content_block_start":
            block = event.content_block.model_dump(mode="json", exclude_none=True)
            block.pop("citations", None)
            if block["type"] == "thinking":
                block.setdefault("signature", "")
            turn.blocks[event.index] = block
            if block["type"] in _INPUT_BLOCKS:
                turn.json[event.index] = []
            if block["type"] == "tool_use":
                return [ToolUseStarted(index=event.index, id=block["id"], name=block["name"])]
        elif event.type == "content_block_delta":
            block = turn.blocks[event.index]
            delta = event.delta
            if delta.type == "text_delta":
                block["text"] += delta.text
                return [TextDelta(index=event.index, text=delta.text)]
            if delta.type == "thinking_delta":
                block["thinking"] += delta.thinking
                return [ThinkingDelta(index=event.index, thinking=delta.thinking)]
            if delta.type == "signature_delta":
                block["signature"] = delta.signature
            elif delta.type == "input_json_delta":
                turn.json.setdefault(event.index, []).append(delta.partial_json)
        elif event.type == "content_block_stop":
            if turn.blocks[event.index]["type"] in _INPUT_BLOCKS:
                turn.finish_tool_input(event.index, turn.stop_reason)
        elif event.type == "message_delta":
            turn.stop_reason = event.delta.stop_reason or turn.stop_reason
            turn.take_usage(event.usage)
        elif event.type == "message_stop":
            turn.stopped = True
        return []
