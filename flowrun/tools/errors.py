"""The one place where errors become MCP tool errors.

A `FlowrunError` is the caller's or the world's problem, not a server crash: it comes back as a
tool result with `isError` set, its message (what an assistant relays to the person), the stable
code in the text, and the structured fields under `_meta` for programs (our chat agent). Argument
validation failures get the same treatment with a message that names the fields. Anything else
stays a crash and the SDK answers with a generic error while logging it here.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError
from pydantic_core import ErrorDetails, to_jsonable_python

from ..flows.errors import FlowrunError, NotFound

log = logging.getLogger("flowrun.tools")

ERROR_META_KEY = "dev.flowrun/error"
_INPUT_PREVIEW = 60


def describe(exc: FlowrunError) -> str:
    """The message, then what kind of refusal it was and whether waiting helps."""
    text = exc.message.rstrip()
    if not text.endswith((".", "?", "!", ")")):
        text += "."
    retry_after = exc.details.get("retry_after")
    if exc.retryable and retry_after is not None:
        text += f" Retry in {float(retry_after):.0f} seconds."
    return f"{text} (code: {exc.code})"


def tool_error(tool: str, exc: FlowrunError) -> CallToolResult:
    log.info("tool %s refused: %s", tool, exc.code)
    payload: dict[str, Any] = to_jsonable_python(exc.to_dict(), fallback=str)
    return CallToolResult(content=[TextContent(type="text", text=describe(exc))], is_error=True,
                          _meta={ERROR_META_KEY: payload})


def invalid_arguments(tool: str, error: ValidationError) -> str:
    """Names every bad field, and what was wrong with it, in one line."""
    by_argument: dict[str, list[ErrorDetails]] = {}
    for err in error.errors():
        by_argument.setdefault(str(err["loc"][0]) if err["loc"] else "arguments", []).append(err)
    problems = []
    for argument, errors in by_argument.items():
        if any(err["type"] == "missing" for err in errors):
            problems.append(f"{argument!r} is required")
            continue
        if len(errors) == 1:  # a plain field (or a value inside one): name the exact place
            where, message = ".".join(str(part) for part in errors[0]["loc"]), errors[0]["msg"]
        else:  # a union: pydantic reports each branch; the enum's own list of values says it best
            literal = [err["msg"] for err in errors if err["type"] == "literal_error"]
            where, message = argument, literal[0] if literal else " or ".join(dict.fromkeys(e["msg"] for e in errors))
        given = repr(errors[0].get("input"))
        if len(given) > _INPUT_PREVIEW:
            given = given[:_INPUT_PREVIEW] + "…"
        problems.append(f"{where!r}: {message} (got {given})")
    return (f"Invalid arguments for {tool}: {'; '.join(problems)}. "
            "Fix them as the tool's input schema says and call it again. (code: invalid_arguments)")


def resource_error(exc: FlowrunError) -> ResourceError:
    log.info("resource read refused: %s", exc.code)
    if isinstance(exc, NotFound):
        return ResourceNotFoundError(describe(exc))
    return ResourceError(describe(exc))
