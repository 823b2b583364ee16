"""Plain answers to malformed MCP messages, over HTTP and over stdio.

The mcp SDK's streamable HTTP transport answers a JSON body that is not a JSON-RPC message with
-32602 (invalid *params*) and a pydantic dump of eleven validation errors, and routes a request
whose `MCP-Protocol-Version` header it does not know to its newest protocol, which then complains
about `_meta` envelope keys the client never heard of. JSON-RPC says a body that is not a valid
request object is -32600 Invalid Request; a version nobody speaks deserves a message naming the
version and the ones that are spoken. This ASGI wrapper answers those two cases itself, in one
sentence each, and hands everything else through untouched (the body it read is replayed).

Over stdio the SDK's transport turns a line it cannot validate into an exception on the read
stream, which the server only logs: the client's request then never gets an answer and waits
forever. `AnsweringReadStream` answers such a line itself, -32700 for a line that is not JSON and
-32600 (with the request's id where it has a usable one) for JSON that is not a JSON-RPC message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Self

import anyio
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorData,
    JSONRPCError,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SPOKEN_VERSIONS: tuple[str, ...] = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
_HEADER = b"mcp-protocol-version"


def invalid_request_reason(body: Any) -> str | None:
    """Why `body` is not a JSON-RPC 2.0 message (request, notification or response), or `None`."""
    if not isinstance(body, dict):
        kind = "an array (batches are not part of MCP)" if isinstance(body, list) else f"a JSON {type(body).__name__}"
        return f"the body must be one JSON-RPC message object, not {kind}"
    if body.get("jsonrpc") != "2.0":
        return 'a JSON-RPC message needs "jsonrpc": "2.0"'
    if "id" in body and not (isinstance(body["id"], str | int) and not isinstance(body["id"], bool)):
        return '"id" must be a string or an integer'
    if "method" in body:
        if not isinstance(body["method"], str) or not body["method"]:
            return '"method" must be a non-empty string'
        if "params" in body and not isinstance(body["params"], dict):
            return '"params" must be an object'
        return None
    if "id" in body and "result" in body and "error" not in body:
        return None
    if "id" in body and isinstance(body.get("error"), dict) and "result" not in body:
        return None
    return ('a request needs "method" and "id" (a notification: "method" only; '
            'a response: "id" and either "result" or "error")')


class JsonRpcGuard:
    """Wraps the MCP ASGI app: -32600 for a body that is not a JSON-RPC message, and a message
    about the version for an `MCP-Protocol-Version` header this server does not speak."""

    def __init__(self, app: ASGIApp, *, max_body: int = 4 * 1024 * 1024) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        version = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == _HEADER), None)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= self.max_body:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if not more:
            answer = _check(body, version)
            if answer is not None:
                await _respond(send, *answer)
                return
        first = {"type": "http.request", "body": body, "more_body": more}
        await self.app(scope, _replay(first, receive), send)


def _check(body: bytes, version: str | None) -> tuple[Any, int, str, dict[str, Any] | None] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None  # not JSON at all: the SDK answers -32700 Parse error itself
        if version is None or version in SPOKEN_VERSIONS:
            return None
    request_id = parsed.get("id") if isinstance(parsed, dict) and isinstance(parsed.get("id"), str | int) else None
    if version is not None and version not in SPOKEN_VERSIONS:
        return (request_id, UNSUPPORTED_PROTOCOL_VERSION,
                f"Unsupported MCP-Protocol-Version header {version!r}: this server speaks "
                f"{', '.join(SPOKEN_VERSIONS)}",
                {"supported": list(SPOKEN_VERSIONS), "requested": version})
    reason = invalid_request_reason(parsed)
    if reason is None:
        return None
    return request_id, INVALID_REQUEST, f"Invalid Request: {reason}", None


async def _respond(send: Send, request_id: Any, code: int, message: str, data: dict[str, Any] | None) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    payload = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that gives the app what was already read, then continues with the real one."""
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _usable_id(body: Any) -> str | int | None:
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


def stdio_error(exc: Exception) -> JSONRPCError | None:
    """The answer to a stdio line the SDK could not validate (`exc` is what its transport put on
    the read stream), or None for an exception that is not about a line."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    if errors and errors[0]["type"] == "json_invalid":
        return JSONRPCError(jsonrpc="2.0", id=None,
                            error=ErrorData(code=PARSE_ERROR, message="Parse error: the line is not JSON"))
    # a union failure: every member's errors carry the message itself (or one of its fields)
    body = next((e["input"] for e in errors if isinstance(e.get("input"), dict)),
                errors[0].get("input") if errors else None)
    reason = invalid_request_reason(body) or (
        f"{errors[0]['msg'].lower()} at {'.'.join(map(str, errors[0]['loc'][1:])) or 'the top level'}"
        if errors else "not a JSON-RPC message")
    return JSONRPCError(jsonrpc="2.0", id=_usable_id(body),
                        error=ErrorData(code=INVALID_REQUEST, message=f"Invalid Request: {reason}"))


class AnsweringReadStream:
    """The stdio transport's read stream, with each line it could not validate answered on the
    write stream (see the module's docstring) instead of handed to the server to be logged."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], answers: WriteStream[SessionMessage]) -> None:
        self.inner = inner
        self.answers = answers

    @property
    def last_context(self) -> Any:  # the SDK reads the sender's context from the stream, if any
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self.inner.receive()
            answer = stdio_error(item) if isinstance(item, Exception) else None
            if answer is None:
                return item
            await self.answers.send(SessionMessage(answer))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
