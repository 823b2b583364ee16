"""Any OpenAI-compatible chat completions server: Ollama, vLLM, llama.cpp's server, OpenAI.

Why it is built this way:
- The wire format (message mapping, tool calls assembled across the servers' different
  streaming styles, reasoning deltas) lives in `openai_wire`; this module is the SDK, the
  request and the errors.
- Usage is asked for with `stream_options.include_usage` and arrives in a last, choice-less chunk
  when the server supports it; cached prompt tokens are split out as cache reads. Prices come from
  the price table under `<kind>:<model>` (`ollama:llama3.1`), and are 0 unless configured.
- Errors are translated once, in `_translate`, with the same contract as the Anthropic provider:
  401/403 block the run as `credential_needed`; 4xx is a non-retryable `ModelError` with a hint;
  429/5xx after the SDK's own retries, connection failures and errors inside a stream are
  retryable.
- `openai` is imported when the provider is constructed (~1.2 s), never at module import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from ..flows.errors import BlockedError, FlowrunError, UsageError
from ._support import DEFAULT_MAX_RETRY_AFTER_S, model_error, retry_after_hook, retry_after_s
from .base import ModelRequest, StreamEvent, TurnComplete
from .openai_wire import ChatTurn, messages_to_chat
from .pricing import PriceTable, default_table

if TYPE_CHECKING:
    import openai

logger = logging.getLogger("flowrun.llm")

CompatKind = Literal["openai", "ollama", "openai-compat"]


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
            "messages": messages_to_chat(
                request.system, request.messages, reasoning=self.kind != "openai"
            ),
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
        turn = ChatTurn()
        try:
            chunks = await self._client.chat.completions.create(**params)
            async with chunks:
                async for chunk in chunks:
                    for out in turn.on_chunk(chunk):
                        yield out
        except self._sdk.OpenAIError as exc:
            error = self._translate(exc, params["model"])
            logger.warning("%s turn failed (%s): %s", self.base_url, error.code, error.message)
            raise error from exc
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
        turn.check_complete()
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
                    retry_after=retry_after_s(exc.response.headers),
                )
            hint = (
                "Fix the request as the message says; retrying it unchanged will fail the same way."
            )
            if status == 404:
                hint = f"Check the model name {model!r}" + (
                    f"; pull it with `ollama pull {model}`." if self.kind == "ollama" else "."
                )
            elif "reasoning_content" in detail.lower() or "reasoning" in detail.lower():
                hint = (
                    f"The model {model!r} wants its reasoning (`reasoning_content`) passed back "
                    "with its tool calls; check that the server streams the reasoning to flowrun."
                )
            elif _no_tool_support(detail):
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


def _no_tool_support(detail: str) -> bool:
    """Whether a 400 says the model cannot call tools (Ollama: "... does not support tools"), as
    opposed to any message that merely mentions a tool call."""
    text = detail.lower()
    return "tool" in text and any(
        phrase in text for phrase in ("not support", "unsupported", "doesn't support", "no support")
    )


__all__ = ["OpenAICompatProvider", "messages_to_chat"]
