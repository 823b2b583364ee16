"""The MCP server: an `MCPServer` (mcp 2.x) with flowrun's tools and resources.

`FlowrunMCP` is where errors are translated, once, for every tool and resource: the SDK wraps
whatever a handler raises, and this subclass unwraps a `FlowrunError` (or an argument validation
error) into a tool error an assistant can relay, before the SDK would report it as a crash.
The same server object serves stdio (`flowrun mcp`) and streamable HTTP (`/mcp` in `flowrun
serve`); only who is asking differs, which `Face.actor_for` answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedResourceError, UnexpectedToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp_types import (
    CallToolResult,
    InputRequiredResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)
from pydantic import AnyUrl, ValidationError

from ..flows.errors import FlowrunError
from ..runtime.access import Actor
from .auth import BearerTokens
from .errors import invalid_arguments, resource_error, tool_error
from .face import EngineSlot, Face
from .handlers import INSTRUCTIONS, register
from .subscriptions import LegacySubscriptions, RunListenHandler

log = logging.getLogger("flowrun.tools")


def _version() -> str:
    try:
        return version("flowrun")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0"


class FlowrunMCP(MCPServer[Any]):
    """`MCPServer` that answers refusals as tool errors instead of crashes."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, FlowrunError):
                return tool_error(name, cause)
            if isinstance(cause, ValidationError) and not isinstance(exc, UnexpectedToolError):
                raise ToolError(invalid_arguments(name, cause)) from cause
            raise

    def serve_listen(self, handler: ListenHandler) -> None:
        """Serve `subscriptions/listen` with `handler`. `MCPServer` builds its own handler and
        offers no way to pass one; the low-level server's `add_request_handler` (public there)
        replaces it."""
        self._lowlevel_server.add_request_handler(
            "subscriptions/listen", SubscriptionsListenRequestParams, handler
        )

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            return await super().read_resource(uri, context)
        except UnexpectedResourceError as exc:
            if isinstance(exc.__cause__, FlowrunError):
                raise resource_error(exc.__cause__) from exc.__cause__
            raise


def build_mcp_server(slot: EngineSlot, public_url: str, actor_for: Callable[[], Actor],
                     *, tokens: BearerTokens | None = None, chat_id: str | None = None,
                     pages: bool = True) -> FlowrunMCP:
    """The server with every tool and resource registered.

    With `tokens`, the streamable HTTP app it builds requires a bearer token on every request
    (401 without one) and `actor_for` should be `tokens.current_actor`. Without, it is meant for
    stdio, where the transport itself is the trust boundary. With `chat_id`, it is that chat's
    own server (reached in memory): the runs it starts record the chat as their launch. `pages`
    says whether run pages are served at `public_url` (they are by `flowrun serve`); without,
    runs carry no page `url`.
    """
    auth = AuthSettings(issuer_url=AnyUrl(public_url), resource_server_url=None) if tokens else None
    bus = InMemorySubscriptionBus()
    server = FlowrunMCP(
        "flowrun", title="flowrun", version=_version(), instructions=INSTRUCTIONS, website_url=public_url,
        token_verifier=tokens, auth=auth, log_level="WARNING", subscriptions=bus,
    )
    face = Face(slot=slot, actor_for=actor_for, public_url=public_url if pages else None, chat_id=chat_id)
    register(server, face)
    server.serve_listen(RunListenHandler(bus, face))  # run://{id} subscriptions deliver updates
    legacy = LegacySubscriptions(face)  # the same on protocol 2025-11-25 and older
    server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, legacy.subscribe)
    server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, legacy.unsubscribe)
    return server
