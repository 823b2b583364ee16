"""Claude through the official `anthropic` SDK: one streamed Messages API turn per `stream()`.

Why it is built this way:
- We read the *raw* event stream (`messages.create(stream=True)`) and assemble the turn ourselves
  (`anthropic_wire.TurnAssembler`): deltas reach the transcript the moment they arrive, tool
  input is parsed once from its complete fragments, and thinking blocks keep their exact text
  and signature for the next turn.
- Prompt caching: breakpoints on the system prompt, the last tool definition and the last block
  of the conversation.
- Errors: the SDK retries 408/409/429/5xx/529 itself (`max_retries`), with server-requested waits
  capped by `_support.retry_after_hook`. What is left is translated once, in `_translate`:
  401/403 -> `BlockedError(credential_needed)`; 400/404/413/422 -> `ModelError(retryable=False)`
  saying what to fix; rate limits, overload, connection failures and an `error` event inside a
  200 stream (which the SDK does not retry) -> `ModelError(retryable=True)`. Retrying a turn is
  the caller's job: the agent loop re-streams the same request with bounded backoff whenever
  `ModelError.retryable` is true. A retryable error carries `retry_after` (seconds) when the
  server named one.
- `anthropic` is imported when the provider is constructed, never at module import: it costs ~2 s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..flows.errors import BlockedError, FlowrunError
from ..flows.run import Usage
from ._support import DEFAULT_MAX_RETRY_AFTER_S, model_error, retry_after_hook, retry_after_s
from .anthropic_wire import (
    EPHEMERAL,
    ThinkingConfig,
    TurnAssembler,
    block_to_param,
    messages_to_params,
    wire_model,
)
from .base import ModelRequest, StreamEvent, TurnComplete
from .pricing import PriceTable, default_table, thinking_modes

if TYPE_CHECKING:
    import anthropic

logger = logging.getLogger("flowrun.llm")

KEY_FIX = (
    "set ANTHROPIC_API_KEY to a valid Anthropic API key (console.anthropic.com) and resume the run"
)
# error types inside a 200 stream that retrying the same request cannot fix
_FATAL_STREAM_ERRORS = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
}


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
        model = wire_model(request.model, self.model)
        thinking, max_tokens = self.thinking.request_params(
            request.max_tokens, thinking_modes(model)
        )
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": messages_to_params(request.messages, cache_tail=self.cache_prompt),
        }
        if thinking is not None:
            params["thinking"] = thinking
        if request.system:
            system: dict[str, Any] = {"type": "text", "text": request.system}
            if self.cache_prompt:
                system["cache_control"] = dict(EPHEMERAL)
            params["system"] = [system]
        if request.tools:
            tools = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in request.tools
            ]
            if self.cache_prompt:
                tools[-1]["cache_control"] = dict(EPHEMERAL)
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
        turn = TurnAssembler()
        try:
            events = await self._client.messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    for out in turn.feed(event):
                        yield out
        except self._sdk.AnthropicError as exc:
            error = _translate(self._sdk, exc, params["model"])
            logger.warning("Anthropic turn failed (%s): %s", error.code, error.message)
            raise error from exc
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
            return model_error(
                f"Anthropic is {'rate limiting' if status == 429 else 'unavailable or overloaded'} "
                f"(HTTP {status}) after the SDK's retries: {detail}",
                code="model_rate_limited" if status == 429 else "model_overloaded",
                retryable=True,
                status=status,
                retry_after=retry_after_s(exc.response.headers),
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
