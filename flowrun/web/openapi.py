"""A small declarative layer for the JSON API: each `Endpoint` says its method, path, query
parameters, body model and response model; `wrap` turns it into a Starlette route that
authenticates, checks Origin, validates and translates errors; `openapi` describes them all.

Pydantic models are the single source of truth: the same class validates a request, shapes a
response and becomes a schema under `components/schemas`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..flows.errors import FlowrunError
from ..runtime.access import Actor
from .auth import SESSION_COOKIE, WebAuth
from .errors import ErrorBody, RequestError, error_response, invalid_request, plain_error

log = logging.getLogger("flowrun.web")

MAX_BODY_BYTES = 1024 * 1024
Method = Literal["GET", "POST"]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    repeated: bool = False
    minimum: int | None = None
    maximum: int | None = None


@dataclass
class Call:
    """What a handler gets: who asks, the path parameters, the query and the validated body."""

    actor: Actor
    path: dict[str, str]
    query: dict[str, Any]
    body: BaseModel | None


Handler = Callable[[Call], Awaitable[BaseModel]]


@dataclass
class Endpoint:
    method: Method
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    query: Sequence[Query] = ()
    status: int = 200
    tag: str = "runs"
    errors: Sequence[int] = (401, 403)
    description: str = field(default="")


def _parse_query(endpoint: Endpoint, request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for q in endpoint.query:
        raw = request.query_params.getlist(q.name)
        if q.repeated:
            raw = [part for item in raw for part in item.split(",") if part]
        if not raw:
            continue
        try:
            converted = [_convert(q, item) for item in raw]
        except ValueError as exc:
            raise RequestError(f"Invalid query parameter {q.name!r}: {exc}", parameter=q.name) from None
        values[q.name] = converted if q.repeated else converted[-1]
    return values


def _convert(q: Query, raw: str) -> Any:
    if q.type == "integer":
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw[:40]!r}") from None
        if q.minimum is not None and value < q.minimum:
            raise ValueError(f"must be at least {q.minimum}")
        if q.maximum is not None and value > q.maximum:
            raise ValueError(f"must be at most {q.maximum}")
        return value
    if q.type == "boolean":
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true or false, got {raw[:40]!r}")
    return raw


async def _parse_body(endpoint: Endpoint, request: Request) -> BaseModel | None:
    if endpoint.body is None:
        return None
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"The request body is too large ({len(raw)} bytes; the limit is {MAX_BODY_BYTES}).",
                           code="body_too_large")
    if not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestError("The request body is not JSON.") from None
    try:
        return endpoint.body.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def wrap(endpoint: Endpoint, auth: WebAuth) -> BaseRoute:
    async def route(request: Request) -> Response:
        if not auth.state_change_allowed(request, request.method):
            return plain_error(403, "forbidden_origin",
                               f"Origin {request.headers.get('origin')!r} may not call this API.")
        actor = auth.authenticate(request)
        if actor is None:
            message = ("This session has expired: log in again." if SESSION_COOKIE in request.cookies
                       else "Send a bearer token (Authorization: Bearer TOKEN) or log in.")
            return plain_error(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})
        try:
            call = Call(actor=actor, path=dict(request.path_params), query=_parse_query(endpoint, request),
                        body=await _parse_body(endpoint, request))
            result = await endpoint.handler(call)
        except FlowrunError as exc:
            return error_response(exc)
        return Response(result.model_dump_json(), status_code=endpoint.status, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    return Route(endpoint.path, route, methods=[endpoint.method], name=endpoint.handler.__name__)


_ERROR_TEXT = {
    400: "the request cannot be done as asked", 401: "no valid bearer token or session", 403: "missing scope or foreign Origin",
    404: "no such run or Flow (or not in your workspace)", 409: "the run's state does not allow it (already_decided, "
    "stale_checkpoint, invalid_transition, preflight_failed)", 422: "invalid body or parameters (missing_parameters, "
    "invalid_parameters, invalid_request)", 429: "daily run cap reached (Retry-After)",
    503: "the engine is warming up (Retry-After)",
}


def openapi(endpoints: Sequence[Endpoint], *, title: str, version: str, server_url: str) -> dict[str, Any]:
    models: list[type[BaseModel]] = [ErrorBody]
    for e in endpoints:
        models += [m for m in (e.body, e.response) if m is not None and m not in models]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "operationId": e.handler.__name__, "summary": e.summary, "tags": [e.tag],
            "responses": {str(e.status): {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{e.response.__name__}"}}}}},
        }
        if e.description:
            op["description"] = e.description
        for status in sorted({400, 401, 403, *e.errors}):
            op["responses"][str(status)] = {"description": _ERROR_TEXT.get(status, "refused"), "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _path_names(e.path)]
        for q in e.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.minimum is not None:
                schema["minimum"] = q.minimum
            if q.maximum is not None:
                schema["maximum"] = q.maximum
            if q.repeated:
                schema = {"type": "array", "items": schema}
            params.append({"name": q.name, "in": "query", "required": False, "description": q.description,
                           "schema": schema, **({"style": "form", "explode": True} if q.repeated else {})})
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}}}}
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "The flowrun JSON API. Live events stream over the /ws websocket "
                                "(see docs/ws-protocol.schema.json)."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
        }},
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def openapi_route(document: Callable[[], dict[str, Any]]) -> BaseRoute:
    async def serve(request: Request) -> Response:
        return JSONResponse(document())

    return Route("/openapi.json", serve, methods=["GET"], include_in_schema=False)
