"""Plumbing shared by the SDK-backed providers: bounded retry waits and model errors.

Both the `anthropic` and `openai` SDKs retry 408/409/429/5xx themselves and sleep for whatever
`retry-after-ms` / `retry-after` the server sends, without an upper bound (they only clamp to
~50 days). A proxy or an overloaded gateway answering `retry-after: 3600` would park a step for an
hour while looking alive. The SDKs expose no option for this, so we cap the headers themselves in
an httpx2 response hook: the SDK then honours a bounded wait, and if the server is still refusing
after `max_retries` the provider raises a retryable `ModelError` that the agent loop handles with
its own bounded backoff.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..flows.errors import ModelError

if TYPE_CHECKING:
    import httpx2

DEFAULT_MAX_RETRY_AFTER_S = 60.0


def _requested_wait(headers: httpx2.Headers) -> float | None:
    """The wait the server asked for, in seconds, parsed the way the SDKs parse it."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - time.time())


def retry_after_s(headers: httpx2.Headers) -> float | None:
    """The wait a refusing server asked for, in seconds (`None` when it named none)."""
    wait = _requested_wait(headers)
    return max(wait, 0.0) if wait is not None else None


def cap_retry_after(headers: httpx2.Headers, max_wait_s: float) -> bool:
    """Rewrite `retry-after(-ms)` so no wait exceeds `max_wait_s`. Returns whether it changed."""
    wait = _requested_wait(headers)
    if wait is None or wait <= max_wait_s:
        return False
    headers["retry-after-ms"] = str(int(max_wait_s * 1000))
    headers["retry-after"] = str(max(int(max_wait_s), 0))
    return True


def retry_after_hook(max_wait_s: float) -> Callable[[httpx2.Response], Awaitable[None]]:
    """An httpx2 async `response` event hook applying `cap_retry_after`."""

    async def hook(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            cap_retry_after(response.headers, max_wait_s)

    return hook


def model_error(message: str, *, code: str, retryable: bool, **details: Any) -> ModelError:
    """A `ModelError` whose `retryable` says whether re-streaming the same turn can help.

    `FlowrunError` takes `retryable` from the class; a provider knows better per failure, so it is
    set on the instance (and `to_dict()` reports it)."""
    error = ModelError(message, code=code, **details)
    error.retryable = retryable
    return error


def parse_tool_input(tool: str, raw: str, *, cut: bool) -> dict[str, Any]:
    """A streamed tool call's input, assembled from its JSON fragments.

    Raises:
        ModelError: malformed JSON (not retryable when the turn was cut off at max_tokens, since
            the same request would be cut again) or input that is not an object.
    """
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        reason = " because the turn hit max_tokens; raise the step's max_tokens" if cut else f": {exc}"
        raise model_error(f"the model's call to {tool!r} arrived with malformed input{reason}",
                          code="model_bad_tool_input", retryable=not cut) from exc
    if not isinstance(parsed, dict):
        raise model_error(f"the model's call to {tool!r} has non-object input",
                          code="model_bad_tool_input", retryable=True)
    return parsed
