"""The one place where errors become HTTP and websocket answers.

Every refusal is a typed JSON body `{code, message, retryable, ...}` (the error's structured
fields ride along: `missing`, `retry_after`, `run_id`, ...) with the HTTP status that fits it.
The websocket sends the same body as an `error` message, so a client handles one shape.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_jsonable_python
from starlette.responses import JSONResponse

from ..flows.errors import (
    ConcurrentUpdate,
    DecisionConflict,
    FlowrunError,
    InvalidTransition,
    NotFound,
    ParameterError,
    PermissionDenied,
    StartRefused,
    TemplateError,
    UsageError,
    WorldError,
)

log = logging.getLogger("flowrun.web")

class RequestError(UsageError):
    """A malformed body, query or message (`invalid_request`; 413 `body_too_large`)."""

    code = "invalid_request"


_START_STATUS = {"missing_parameters": 422, "warming_up": 503, "preflight_failed": 409, "daily_cap_reached": 429}
_BY_CODE = {"body_too_large": 413}
_BY_CLASS: tuple[tuple[type[FlowrunError], int], ...] = (
    (NotFound, 404),
    (RequestError, 422),
    (PermissionDenied, 403),
    (DecisionConflict, 409),
    (InvalidTransition, 409),
    (ConcurrentUpdate, 409),
    (ParameterError, 422),
    (TemplateError, 422),
    (UsageError, 400),
    (WorldError, 503),
)


class ErrorBody(BaseModel):
    """What every refusal looks like, over HTTP and in the websocket's `error` message."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    retryable: bool = False


def http_status(exc: FlowrunError) -> int:
    if isinstance(exc, StartRefused):
        return _START_STATUS.get(exc.code, 409)
    if exc.code in _BY_CODE:
        return _BY_CODE[exc.code]
    for cls, status in _BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: FlowrunError) -> dict[str, Any]:
    body: dict[str, Any] = to_jsonable_python(exc.to_dict(), fallback=str)
    return body


def retry_after(exc: FlowrunError) -> int | None:
    """Seconds for `Retry-After`: the warm-up wait, or until the daily cap resets."""
    value = exc.details.get("retry_after")
    if value is not None:
        return max(1, math.ceil(float(value)))
    resets = exc.details.get("resets_at")
    if resets is None:
        return None
    try:
        at = resets if isinstance(resets, datetime) else datetime.fromisoformat(str(resets))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(1, math.ceil(at.timestamp() - datetime.now(UTC).timestamp()))


def error_response(exc: FlowrunError) -> JSONResponse:
    status = http_status(exc)
    log.info("refused (%s): %s", status, exc.code)
    headers = {}
    wait = retry_after(exc)
    if wait is not None and status in (429, 503):
        headers["Retry-After"] = str(wait)
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


def invalid_request(error: ValidationError, what: str = "request body") -> RequestError:
    """A malformed body, query or message: names every bad field and what is wrong with it."""
    problems = []
    for err in error.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or what
        problems.append(f"{where}: {err['msg']}")
    return RequestError(f"Invalid {what}: {'; '.join(problems)}.",
                      errors=[{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                              for e in error.errors(include_url=False)])


def plain_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "retryable": False}, status_code=status, headers=headers)
