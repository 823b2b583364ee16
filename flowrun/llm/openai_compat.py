"""Any OpenAI-compatible chat completions server: Ollama, vLLM, llama.cpp's server, OpenAI.

Why it is built this way:
- Servers disagree on how they stream tool calls. OpenAI and vLLM send fragments keyed by
  `index` across many chunks; Ollama sends each call whole in one chunk, and older versions omit
  `index`; some servers reuse index 0 for every whole call. `_Calls` keys a call by `index`, else
  by `id`, else continues the last one, and starts a new call when a chunk brings a different
  `id` for an index already taken.
- Reasoning arrives as `reasoning_content` (vLLM, DeepSeek) or `reasoning` (Ollama, OpenRouter);
  both become thinking deltas. Thinking is not sent back: chat completions has no field for it.
- Our `Message`s follow the Anthropic block shape; here tool results become `tool` messages
  (placed right after the assistant message that called them, as the format requires) and
  tool_use blocks become `tool_calls`.
- Usage is asked for with `stream_options.include_usage` and arrives in a last, choice-less chunk
  when the server supports it; cached prompt tokens are split out as cache reads.
- `openai` is imported when the provider is constructed (~1.2 s), never at module import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..flows.errors import BlockedError, FlowrunError, UsageError
from ..flows.run import Usage
from ._support import DEFAULT_MAX_RETRY_AFTER_S, model_error, retry_after_hook
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
from .pricing import PriceTable, default_table

if TYPE_CHECKING:
    import openai

logger = logging.getLogger("flowrun.llm")

CompatKind = Literal["openai", "ollama", "openai-compat"]

_STOP_REASONS = {
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "stop": "end_turn",
}


def messages_to_chat(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Our conversation in chat completions format."""
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


class _Turn:
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
            raw = "".join(call.arguments)
            try:
                args = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                cut = self.finish == "length"
                raise model_error(
                    f"the model's call to {call.name!r} arrived with malformed arguments"
                    + (
                        " because the turn hit max_tokens; raise the step's max_tokens"
                        if cut
                        else f": {exc}"
                    ),
                    code="model_bad_tool_input",
                    retryable=not cut,
                ) from exc
            if not isinstance(args, dict):
                raise model_error(
                    f"the model's call to {call.name!r} has non-object arguments",
                    code="model_bad_tool_input",
                    retryable=True,
                )
            blocks.append(
                (
                    call.block,
                    ToolUseBlock(id=call.id or f"call_{call.block}", name=call.name, input=args),
                )
            )
        return Message(
            role="assistant", content=[b for _, b in sorted(blocks, key=lambda item: item[0])]
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


class OpenAICompatProvider:
    """`ModelProvider` over an OpenAI-compatible `/chat/completions` endpoint.

    Args:
        base_url: e.g. `http://127.0.0.1:11434/v1` (Ollama) or `https://api.openai.com/v1`.
        api_key: required by the SDK even where the server ignores it; `None` makes `stream()`
            raise `BlockedError(credential_needed)`.
        kind: how model strings for this provider are prefixed (`ollama:`), used for the price
            lookup and for error hints.
        model: the model used when a request names none.
        max_retries, max_retry_after_s: as for `AnthropicProvider`.
    """

    name = "openai-compat"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        kind: CompatKind = "openai-compat",
        model: str | None = None,
        max_retries: int = 3,
        max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
        timeout_s: float = 600.0,
        prices: PriceTable | None = None,
    ) -> None:
        import openai  # deferred: ~1.2 s

        self._sdk = openai
        self.base_url = base_url
        self.kind: CompatKind = kind
        self.model = model
        self.prices = prices or default_table()
        self._client: openai.AsyncOpenAI | None = None
        if api_key:
            self._client = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
                timeout=openai.Timeout(timeout_s, connect=10.0),
                http_client=openai.DefaultAsyncHttpxClient(
                    event_hooks={"response": [retry_after_hook(max_retry_after_s)]}
                ),
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    def wire_model(self, model: str) -> str:
        """`ollama:llama3.1` -> `llama3.1`; `openai-compat:NAME@URL` -> `NAME`."""
        spec = model.strip()
        kind, sep, rest = spec.partition(":")
        if sep and kind in ("openai", "ollama", "openai-compat"):
            spec = rest.partition("@")[0] if kind == "openai-compat" else rest
        if spec and spec != "scripted":
            return spec
        if self.model:
            return self.model
        raise UsageError(
            f"the {self.kind} provider at {self.base_url} was asked for model {model!r}; name a model"
        )

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.wire_model(request.model),
            "messages": messages_to_chat(request.system, request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's reasoning models refuse `max_tokens`; local servers only know `max_tokens`
        params["max_completion_tokens" if self.kind == "openai" else "max_tokens"] = (
            request.max_tokens
        )
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        return params

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if self._client is None:
            raise BlockedError(
                "credential_needed",
                f"no API key is configured for {self.base_url}",
                fix=self._key_fix(),
            )
        params = self.build_params(request)
        turn = _Turn()
        try:
            chunks = await self._client.chat.completions.create(**params)
            async with chunks:
                async for chunk in chunks:
                    for out in turn.on_chunk(chunk):
                        yield out
        except self._sdk.OpenAIError as exc:
            raise self._translate(exc, params["model"]) from exc
        except FlowrunError:
            raise
        except Exception as exc:
            import httpx2

            if isinstance(exc, httpx2.HTTPError):
                raise model_error(
                    f"the stream from {self.base_url} broke off: {exc!r}",
                    code="model_stream_cut",
                    retryable=True,
                ) from exc
            raise
        usage = turn.token_usage()
        usage = usage.model_copy(
            update={"cost_usd": self.prices.cost(f"{self.kind}:{params['model']}", usage)}
        )
        yield TurnComplete(message=turn.message(), usage=usage, stop_reason=turn.stop_reason())

    def _key_fix(self) -> str:
        if self.kind == "openai":
            return "set OPENAI_API_KEY to a valid OpenAI API key and resume the run"
        return f"set OPENAI_COMPAT_API_KEY to the key the server at {self.base_url} expects and resume the run"

    def _translate(self, exc: openai.OpenAIError, model: str) -> FlowrunError:
        sdk = self._sdk
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            detail = exc.message
            if status in (401, 403):
                return BlockedError(
                    "credential_needed",
                    f"{self.base_url} refused the API key (HTTP {status}): {detail}",
                    fix=self._key_fix(),
                    status=status,
                )
            if status == 429 or status >= 500 or status in (408, 409):
                return model_error(
                    f"{self.base_url} is {'rate limiting' if status == 429 else 'failing'} (HTTP {status}) after the SDK's retries: {detail}",
                    code="model_rate_limited" if status == 429 else "model_overloaded",
                    retryable=True,
                    status=status,
                )
            hint = (
                "Fix the request as the message says; retrying it unchanged will fail the same way."
            )
            if status == 404:
                hint = f"Check the model name {model!r}" + (
                    f"; pull it with `ollama pull {model}`." if self.kind == "ollama" else "."
                )
            elif "tool" in detail.lower():
                hint = f"The model {model!r} may not support tool calling; choose one that does."
            return model_error(
                f"{self.base_url} rejected the request (HTTP {status}): {detail}. {hint}",
                code="model_request_rejected",
                retryable=False,
                status=status,
            )
        if isinstance(exc, sdk.APIConnectionError):
            hint = " (is `ollama serve` running?)" if self.kind == "ollama" else ""
            return model_error(
                f"cannot reach {self.base_url}{hint}: {exc}",
                code="model_unreachable",
                retryable=True,
            )
        if isinstance(exc, sdk.APIError):  # an error object inside a 200 stream
            return model_error(
                f"{self.base_url} reported an error mid-stream: {exc.message}",
                code="model_stream_error",
                retryable=True,
            )
        return model_error(f"OpenAI SDK error: {exc}", code="model_error", retryable=False)


__all__ = ["OpenAICompatProvider", "messages_to_chat"]
