"""Turning the e2b SDK's errors into flowrun's, in one place, and retrying rate limits.

The SDK's tree is not one tree: `AuthenticationException` and `ServiceBusyException` do not
inherit from `SandboxException`, and a raw connect-rpc `ConnectError` can escape. Everything the
backend calls goes through `call`, so no SDK exception reaches the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from connectrpc.errors import ConnectError
from e2b import (
    AuthenticationException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    TimeoutException,
)
from e2b.exceptions import (
    SandboxNotFoundException,
    SandboxNotRunningException,
    ServiceBusyException,
)

from ..flows.errors import BlockedError, FlowrunError, SandboxError

logger = logging.getLogger("flowrun.sandboxes")

T = TypeVar("T")

KEY_FIX = (
    "set E2B_API_KEY in the server's environment (or the e2b integration's key) to a valid key "
    "from https://e2b.dev/dashboard, then resume the run"
)


def credential_needed(detail: str) -> BlockedError:
    return BlockedError("credential_needed", f"e2b refused the API key: {detail}", fix=KEY_FIX)


def sandbox_gone(sandbox_id: str, detail: str) -> BlockedError:
    return BlockedError(
        "environment_unhealthy",
        f"e2b sandbox {sandbox_id} is gone: {detail}",
        fix=f"the sandbox {sandbox_id} cannot be recovered (killed, expired, or replaced by a "
        "blank one); resume the run to continue in a new sandbox, and raise the "
        "profile's lifetime_s if it expired",
        sandbox=sandbox_id,
    )


def translate(exc: Exception, action: str, sandbox_id: str | None) -> FlowrunError:
    """The flowrun error for an SDK failure while doing `action`."""
    if isinstance(exc, FlowrunError):
        return exc
    if isinstance(exc, AuthenticationException):
        return credential_needed(str(exc))
    if sandbox_id and isinstance(exc, SandboxNotFoundException | SandboxNotRunningException):
        return sandbox_gone(sandbox_id, str(exc))
    if isinstance(exc, NotFoundException):
        return SandboxError(f"e2b: {action}: {exc}", code="not_found", sandbox=sandbox_id)
    if isinstance(exc, RateLimitException | ServiceBusyException):
        error = SandboxError(f"e2b is busy ({action}): {exc}", code="rate_limited")
        return error
    if isinstance(exc, TimeoutException):
        return SandboxError(f"e2b timed out ({action}): {exc}", code="e2b_timeout")
    if isinstance(exc, SandboxException | ConnectError):
        return SandboxError(f"e2b failed to {action}: {exc}", code="e2b_error", sandbox=sandbox_id)
    return SandboxError(
        f"e2b failed to {action}: {type(exc).__name__}: {exc}", code="e2b_error", sandbox=sandbox_id
    )


async def call(
    action: str,
    operation: Callable[[], Awaitable[T]],
    *,
    sandbox_id: str | None = None,
    attempts: int = 4,
    backoff_s: float = 0.5,
) -> T:
    """Run one SDK operation; retry rate limits a bounded number of times, translate the rest.

    Raises:
        BlockedError: credential needed, or the sandbox is gone.
        SandboxError: anything else, including rate limits that outlasted the retries.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except (RateLimitException, ServiceBusyException) as exc:
            if attempt == attempts:
                raise translate(exc, action, sandbox_id) from exc
            delay = backoff_s * 2 ** (attempt - 1)
            logger.info("e2b rate limited (%s), retry %d in %.1fs", action, attempt, delay)
            await anyio.sleep(delay)
        except Exception as exc:
            raise translate(exc, action, sandbox_id) from exc
    raise AssertionError("unreachable")
