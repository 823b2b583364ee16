"""The chat completions wire format: our messages to chat messages, and a stream of chunks back
to one assistant `Message`.

Servers disagree on how they stream tool calls. OpenAI and vLLM send fragments keyed by `index`
across many chunks; Ollama sends each call whole in one chunk, and older versions omit `index`;
some servers reuse index 0 for every whole call. `_Calls` keys a call by `index`, else by `id`,
else continues the last one, and starts a new call when a chunk brings a different `id` for an
index already taken (or, with neither, a second name). Reasoning arrives as `reasoning_content`
(vLLM, DeepSeek) or `reasoning` (Ollama, OpenRouter); both become thinking. The reasoning models
of DeepSeek, GLM and Kimi answer 400 unless an assistant message that made tool calls carries its
`reasoning_content` back, so that one field goes back with such messages (OpenAI itself has no such
field and gets none). Chunks are read by attribute with defaults, because the SDK builds them
without validation and servers leave fields out. A stream that ends without a `finish_reason` was
cut (a dropped connection, or llama.cpp's legacy `error:` line, which the SDK's SSE reader skips):
it is an error, never a complete turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..flows.run import Usage
from ._support import model_error, parse_tool_input
from .base import (
    ContentBlock,
    Message,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStarted,
)

_STOP_REASONS = {
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "stop": "end_turn",
    "content_filter": "refusal",
}


def messages_to_chat(
    system: str, messages: list[Message], *, reasoning: bool = True
) -> list[dict[str, Any]]:
    """Our conversation in chat completions format; with `reasoning`, an assistant message that
    made tool calls carries its thinking back as `reasoning_content`."""
    chat: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        texts = [b.text for b in message.content if isinstance(b, TextBlock)]
        if message.role == "assistant":
            calls = [
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": b.name, "arguments": json.dumps(b.input)},
                }
                for b in message.content
                if isinstance(b, ToolUseBlock)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            if calls:
                entry["tool_calls"] = calls
                thought = "".join(b.thinking for b in message.content if isinstance(b, ThinkingBlock))
                if reasoning and thought:
                    entry["reasoning_content"] = thought
            chat.append(entry)
            continue
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                content = f"[tool error] {block.content}" if block.is_error else block.content
                chat.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": content})
        if texts:
            chat.append({"role": "user", "content": "\n\n".join(texts)})
    return chat


@dataclass(eq=False)  # identity matters: two calls may look alike
class _Call:
    block: int
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    announced: bool = False


class _Calls:
    """Tool calls assembled across chunks, whatever the server's streaming style."""

    def __init__(self) -> None:
        self.order: list[_Call] = []
        self._by_index: dict[int, _Call] = {}
        self._by_id: dict[str, _Call] = {}

    def find(self, index: int | None, call_id: str | None, name: str | None) -> _Call | None:
        """The call this fragment continues, or `None` when it starts a new one."""
        call: _Call | None = None
        if index is not None:
            call = self._by_index.get(index)
            if call is not None and call_id and call.id and call_id != call.id:
                call = None  # a server reusing index 0 for a second whole call
        elif call_id:
            call = self._by_id.get(call_id)
        elif self.order and not (name and self.order[-1].name):
            call = self.order[-1]  # no index, no id: a continuation, unless it names a new call
        return call

    def add(self, call: _Call, index: int | None, call_id: str | None) -> None:
        if call not in self.order:
            self.order.append(call)
        if index is not None:
            self._by_index[index] = call
        if call_id:
            call.id = call.id or call_id
            self._by_id[call_id] = call


class ChatTurn:
    def __init__(self) -> None:
        self.next_block = 0
        self.thinking: tuple[int, list[str]] | None = None
        self.text: tuple[int, list[str]] | None = None
        self.calls = _Calls()
        self.finish: str | None = None
        self.usage: Any = None

    def block_index(self) -> int:
        self.next_block += 1
        return self.next_block - 1

    def on_chunk(self, chunk: Any) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or []:
            if choice.finish_reason:
                self.finish = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            reasoning = getattr(delta, "reasoning_content", None) or getattr(
                delta, "reasoning", None
            )
            if isinstance(reasoning, str) and reasoning:
                if self.thinking is None:
                    self.thinking = (self.block_index(), [])
                self.thinking[1].append(reasoning)
                out.append(ThinkingDelta(index=self.thinking[0], thinking=reasoning))
            if delta.content:
                if self.text is None:
                    self.text = (self.block_index(), [])
                self.text[1].append(delta.content)
                out.append(TextDelta(index=self.text[0], text=delta.content))
            for tc in delta.tool_calls or []:
                out.extend(self._on_tool_call(tc))
        return out

    def _on_tool_call(self, tc: Any) -> list[StreamEvent]:
        index = getattr(tc, "index", None)
        index = index if isinstance(index, int) else None
        function = tc.function
        name = function.name if function is not None else None
        call = self.calls.find(index, tc.id, name)
        if call is None:
            call = _Call(block=self.block_index())
        self.calls.add(call, index, tc.id)
        if function is not None:
            if function.name:
                call.name = call.name or function.name
            arguments = function.arguments
            if isinstance(arguments, dict):  # a few servers send the object itself
                arguments = json.dumps(arguments)
            if arguments:
                call.arguments.append(arguments)
        if call.name and not call.announced:
            call.announced = True
            call.id = call.id or f"call_{call.block}"
            return [ToolUseStarted(index=call.block, id=call.id, name=call.name)]
        return []

    def message(self) -> Message:
        blocks: list[tuple[int, ContentBlock]] = []
        if self.thinking is not None:
            blocks.append((self.thinking[0], ThinkingBlock(thinking="".join(self.thinking[1]))))
        if self.text is not None:
            blocks.append((self.text[0], TextBlock(text="".join(self.text[1]))))
        for call in self.calls.order:
            if not call.name:
                raise model_error(
                    "the server streamed a tool call without a name",
                    code="model_bad_tool_input",
                    retryable=True,
                )
            args = parse_tool_input(call.name, "".join(call.arguments), cut=self.finish == "length")
            blocks.append(
                (
                    call.block,
                    ToolUseBlock(id=call.id or f"call_{call.block}", name=call.name, input=args),
                )
            )
        return Message(
            role="assistant", content=[b for _, b in sorted(blocks, key=lambda item: item[0])]
        )

    def check_complete(self) -> None:
        """Raises a retryable `ModelError` if the stream ended before the model finished."""
        if self.finish is None:
            said = "".join(self.text[1]) if self.text is not None else ""
            raise model_error(
                "the stream ended before the model finished its turn (no finish_reason"
                + (f", after {len(said)} characters of text" if said else "")
                + "); the connection broke or the server reported an error the chat completions "
                "protocol cannot carry (llama.cpp's `error:` line)",
                code="model_stream_cut",
                retryable=True,
            )

    def stop_reason(self) -> str:
        if self.calls.order:
            return "tool_use"  # Ollama says `stop` even when it called tools
        return _STOP_REASONS.get(self.finish or "stop", self.finish or "end_turn")

    def token_usage(self) -> Usage:
        u = self.usage
        if u is None:
            return Usage(turns=1)
        prompt = getattr(u, "prompt_tokens", 0) or 0
        details = getattr(u, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        return Usage(
            turns=1,
            input_tokens=max(prompt - cached, 0),
            output_tokens=getattr(u, "completion_tokens", 0) or 0,
            cache_read_tokens=cached,
        )
