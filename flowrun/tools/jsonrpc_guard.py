"""Plain answers to malformed MCP requests over HTTP, before the SDK's transport sees them.

The mcp SDK's streamable HTTP transport answers a JSON body that is not a JSON-RPC message with
-32602 (invalid *params*) and a pydantic dump of eleven validation errors, and routes a request
whose `MCP-Protocol-Version` header it does not know to its newest protocol, which then complains
about `_meta` envelope keys the client never heard of. JSON-RPC says a body that is not a valid
request object is -32600 Invalid Request; a version nobody speaks deserves a message naming the
version and the ones that are spoken. This ASGI wrapper answers those two cases itself, in one
sentence each, and hands everything else through untouched (the body it read is replayed).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp_types import INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

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
