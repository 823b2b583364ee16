"""Claude through the official `anthropic` SDK: one streamed Messages API turn per `stream()`.

Why it is built this way:
- We read the *raw* event stream (`messages.create(stream=True)`) and assemble the turn
  ourselves. Deltas reach the transcript the moment they arrive, a tool call's input is parsed
  once, from its complete `input_json_delta` fragments, when its block stops (a truncated call is
  an error, not a silently half-filled dict), and thinking blocks keep their exact text and
  signature, because the API rejects a tool loop whose thinking was altered.
- Prompt caching: breakpoints on the system prompt, the last tool definition and the last block of
  the conversation, so every turn of a tool loop reads the previous turn's prefix from the cache.
- Errors: the SDK retries 408/409/429/5xx/529 itself (`max_retries`), with server-requested waits
  capped by `_http.retry_after_hook`. What is left is translated once, in `_translate`:
  401/403 -> `BlockedError(credential_needed)`; 400/404/413/422 -> `ModelError(retryable=False)`
  saying what to fix; rate limits, overload, connection failures and an `error` event inside a
  200 stream (which the SDK does not retry) -> `ModelError(retryable=True)`. Retrying a turn is
  the caller's job: the agent loop re-streams the same request with bounded backoff whenever
  `ModelError.retryable` is true. A retryable error carries `retry_after` (seconds) when the
  server named one.
- `anthropic` is imported when the provider is constructed, never at module import: it costs ~2 s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..flows.errors import BlockedError, FlowrunError, UsageError
from ..flows.run import Usage
from ._support import DEFAULT_MAX_RETRY_AFTER_S, model_error, retry_after_hook
from .base import (
    ContentBlock,
    Message,
    ModelRequest,
    RedactedThinkingBlock,
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
from .pricing import PriceTable, default_table

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import RawMessageStreamEvent

logger = logging.getLogger("flowrun.llm")

KEY_FIX = (
    "set ANTHROPIC_API_KEY to a valid Anthropic API key (console.anthropic.com) and resume the run"
)
_EPHEMERAL = {"type": "ephemeral"}
# error types inside a 200 stream that retrying the same request cannot fix
_FATAL_STREAM_ERRORS = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
}


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

    def request_params(self, max_tokens: int) -> tuple[dict[str, Any], int]:
        """The `thinking` parameter and the `max_tokens` to send with it.

        A thinking budget counts toward `max_tokens` and must stay below it, so a budgeted
        request gets at least `budget_tokens + 4096` to leave room for the answer.
        """
        if self.mode == "off":
            return {"type": "disabled"}, max_tokens
        param: dict[str, Any] = {"type": "adaptive"}
        if self.mode == "budgeted":
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
        param["cache_control"] = dict(_EPHEMERAL)
    return param


def messages_to_params(messages: list[Message], *, cache_tail: bool = True) -> list[dict[str, Any]]:
    """Map the conversation; with `cache_tail`, a cache breakpoint goes on its last block."""
    params: list[dict[str, Any]] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        blocks = message.content
        content = [
            block_to_param(b, cache=cache_tail and i == last and j == len(blocks) - 1)
            for j, b in enumerate(blocks)
        ]
        params.append({"role": message.role, "content": content})
    return params


class _Turn:
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
        raw = "".join(fragments)
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            cut = stop_reason == "max_tokens"
            raise model_error(
                f"the model's call to {block['name']!r} arrived with malformed input"
                + (
                    " because the turn hit max_tokens; raise the step's max_tokens"
                    if cut
                    else f": {exc}"
                ),
                code="model_bad_tool_input",
                retryable=not cut,
            ) from exc
        if not isinstance(parsed, dict):
            raise model_error(
                f"the model's call to {block['name']!r} has non-object input",
                code="model_bad_tool_input",
                retryable=True,
            )
        block["input"] = parsed

    def message(self) -> Message:
        content: list[ContentBlock] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            kind = block["type"]
            if kind == "text":
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


class AnthropicProvider:
    """`ModelProvider` for Claude. One instance serves every Claude model (the request names it).

    Args:
        api_key: the key; `None` makes every `stream()` raise `BlockedError(credential_needed)`.
        model: the model used when a request names none.
        thinking: see `ThinkingConfig`.
        max_retries: SDK-level retries of 408/409/429/5xx/529 and connection errors.
        max_retry_after_s: upper bound on any server-requested wait between those retries.
        prices: the price table for `Usage.cost_usd` (the built-in defaults when omitted).
        cache_prompt: put prompt-cache breakpoints on system, tools and conversation tail.
    """

    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        model: str | None = None,
        thinking: ThinkingConfig | None = None,
        max_retries: int = 3,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        timeout_s: float = 600.0,
        prices: PriceTable | None = None,
        cache_prompt: bool = True,
    ) -> None:
        import anthropic  # deferred: ~2 s

        self._sdk = anthropic
        self.model = model
        self.thinking = thinking or ThinkingConfig()
        self.prices = prices or default_table()
        self.cache_prompt = cache_prompt
        self._client: anthropic.AsyncAnthropic | None = None
        if api_key:
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
                timeout=anthropic.Timeout(timeout_s, connect=10.0),
                http_client=anthropic.DefaultAsyncHttpxClient(
                    event_hooks={"response": [retry_after_hook(max_retry_after_s)]}
                ),
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The `messages.create` keyword arguments for `request` (without `stream`)."""
        thinking, max_tokens = self.thinking.request_params(request.max_tokens)
        params: dict[str, Any] = {
            "model": wire_model(request.model, self.model),
            "max_tokens": max_tokens,
            "messages": messages_to_params(request.messages, cache_tail=self.cache_prompt),
            "thinking": thinking,
        }
        if request.system:
            system: dict[str, Any] = {"type": "text", "text": request.system}
            if self.cache_prompt:
                system["cache_control"] = dict(_EPHEMERAL)
            params["system"] = [system]
        if request.tools:
            tools = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in request.tools
            ]
            if self.cache_prompt:
                tools[-1]["cache_control"] = dict(_EPHEMERAL)
            params["tools"] = tools
        if request.run_id:
            # opaque, non-identifying id that lets Anthropic's abuse systems group a run's calls
            params["metadata"] = {"user_id": request.run_id}
        return params

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self._client is None:
            raise BlockedError(
                "credential_needed", "no Anthropic API key is configured", fix=KEY_FIX
            )
        params = self.build_params(request)
        turn = _Turn()
        try:
            events = await self._client.messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    for out in self._on_event(turn, event):
                        yield out
        except self._sdk.AnthropicError as exc:
            raise _translate(self._sdk, exc, params["model"]) from exc
        except FlowrunError:
            raise
        except Exception as exc:
            import httpx2

            if isinstance(exc, httpx2.HTTPError):  # the connection broke mid-stream
                raise model_error(
                    f"the stream from Anthropic broke off: {exc!r}",
                    code="model_stream_cut",
                    retryable=True,
                ) from exc
            raise
        if not turn.stopped:
            raise model_error(
                "the stream from Anthropic ended before message_stop",
                code="model_stream_cut",
                retryable=True,
            )
        usage = Usage(
            turns=1,
            input_tokens=turn.usage.get("input_tokens", 0),
            output_tokens=turn.usage.get("output_tokens", 0),
            cache_write_tokens=turn.usage.get("cache_creation_input_tokens", 0),
            cache_read_tokens=turn.usage.get("cache_read_input_tokens", 0),
        )
        usage = usage.model_copy(update={"cost_usd": self.prices.cost(params["model"], usage)})
        yield TurnComplete(
            message=turn.message(), usage=usage, stop_reason=turn.stop_reason or "end_turn"
        )

    def _on_event(self, turn: _Turn, event: RawMessageStreamEvent) -> list[StreamEvent]:
        if event.type == "message_start":
            turn.take_usage(event.message.usage)
        elif event.type == "content_block_start":
            block = event.content_block.model_dump(mode="json", exclude_none=True)
            block.pop("citations", None)
            if block["type"] == "thinking":
                block.setdefault("signature", "")
            turn.blocks[event.index] = block
            if block["type"] == "tool_use":
                turn.json[event.index] = []
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
                turn.json[event.index].append(delta.partial_json)
        elif event.type == "content_block_stop":
            if turn.blocks[event.index]["type"] == "tool_use":
                turn.finish_tool_input(event.index, turn.stop_reason)
        elif event.type == "message_delta":
            turn.stop_reason = event.delta.stop_reason or turn.stop_reason
            turn.take_usage(event.usage)
        elif event.type == "message_stop":
            turn.stopped = True
        return []


def _translate(sdk: Any, exc: anthropic.AnthropicError, model: str) -> FlowrunError:
    """The one place SDK errors become ours."""
    if isinstance(exc, sdk.APIStatusError):
        status: int = exc.status_code
        detail = exc.api_message or str(exc)
        if status == 200:  # an `error` event inside a successful stream
            kind = exc.type or "error"
            return model_error(
                f"Anthropic reported {kind} mid-stream: {detail}",
                code="model_stream_error",
                retryable=kind not in _FATAL_STREAM_ERRORS,
                request_id=exc.request_id,
            )
        if status in (401, 403):
            what = "was refused" if status == 401 else f"may not use {model}"
            return BlockedError(
                "credential_needed",
                f"the Anthropic API key {what}: {detail}",
                fix=KEY_FIX,
                status=status,
            )
        if status == 429 or status >= 500 or status in (408, 409):
            retry_after = exc.response.headers.get("retry-after")
            return model_error(
                f"Anthropic is {'rate limiting' if status == 429 else 'unavailable or overloaded'} "
                f"(HTTP {status}) after the SDK's retries: {detail}",
                code="model_rate_limited" if status == 429 else "model_overloaded",
                retryable=True,
                status=status,
                retry_after=float(retry_after)
                if retry_after and retry_after.replace(".", "", 1).isdigit()
                else None,
                request_id=exc.request_id,
            )
        return model_error(
            f"Anthropic rejected the request (HTTP {status}): {detail}. {_hint(status, detail, model)}",
            code="model_request_rejected",
            retryable=False,
            status=status,
            request_id=exc.request_id,
        )
    if isinstance(exc, sdk.APIConnectionError):
        return model_error(
            f"cannot reach the Anthropic API: {exc}", code="model_unreachable", retryable=True
        )
    return model_error(f"Anthropic SDK error: {exc}", code="model_error", retryable=False)


def _hint(status: int, detail: str, model: str) -> str:
    """What a person should change, for the common rejections."""
    text = detail.lower()
    if status == 404 or "model" in text and "not" in text and "found" in text:
        return (
            f"Check the model name {model!r} (FLOWRUN_MODEL, the step, skill or profile `model`)."
        )
    if status == 413 or "too long" in text or "context" in text:
        return "The conversation no longer fits the model's context; shorten the step's inputs or tool output."
    if "thinking" in text:
        return "Set FLOWRUN_THINKING (adaptive, off, or budget:N) to a mode this model supports."
    if "max_tokens" in text:
        return "Lower the step's max_tokens to what this model allows."
    return "Fix the request as the message says; retrying it unchanged will fail the same way."


__all__ = [
    "AnthropicProvider",
    "ThinkingConfig",
    "block_to_param",
    "messages_to_params",
    "wire_model",
]
