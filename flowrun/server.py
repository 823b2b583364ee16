"""The one ASGI app (`flowrun serve`) and the stdio MCP server (`flowrun mcp`).

Both run the engine in the same process and event loop as the MCP server, so the runs a client
starts are driven right here: the HTTP app opens the engine in its lifespan, together with the
MCP session manager (a mounted app's own lifespan is never run); stdio opens it around the
server. `create_app` also carries the web face (`flowrun.web`): the JSON API and `/ws`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings, ensure_demo_remote, open_engine
from .flows.errors import FlowrunError
from .runtime.access import LOCAL_OPERATOR
from .runtime.notify import Notifier, Webhooks
from .runtime.triggers import Triggers
from .tools.auth import BearerTokens, TokenTable
from .tools.face import EngineSlot
from .web.hooks import github_hook_route, webhook_secret

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

    from .runtime.engine import Engine

log = logging.getLogger("flowrun.tools")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def prepare_demo(settings: Settings) -> None:
    """The demo Flow's sample repository, so `start_flow full-sdlc` passes pre-flight on a fresh
    home. Best effort: without git the server is still useful for other Flows."""
    try:
        await anyio.to_thread.run_sync(ensure_demo_remote, settings.home)
    except (FlowrunError, OSError) as exc:
        log.warning("the demo repository is not available: %s", exc)


def transport_security(host: str, public_url: str) -> TransportSecuritySettings | None:
    """None on a loopback bind: the SDK then turns Origin/Host checks on for loopback itself.
    Anywhere else, keep them on explicitly, allowing loopback and the public URL's origin."""
    if host in LOOPBACK:
        return None
    from mcp.server.transport_security import TransportSecuritySettings

    public = urlsplit(public_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", public.netloc],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
                         f"{public.scheme}://{public.netloc}"],
    )


class _ExactMount:
    """Serves `/mcp` itself (not only `/mcp/...`), so clients need no redirect round-trip."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        await self.app({**scope, "path": root + self.prefix + "/", "root_path": root + self.prefix}, receive, send)


class Draining:
    """A graceful stop of `serve`, as a worker's: the first exit signal makes the engine claim
    nothing more at once (`begin`, called from the signal handler); once HTTP and websockets are
    closed, the lifespan lets the steps in flight finish for up to `grace_s` (`wait`), then the
    engine releases its leases. A second signal cuts the grace short."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hurry: asyncio.Event | None = None
        self._signals = 0

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.get_running_loop()
        self._hurry = asyncio.Event()

    def begin(self) -> None:
        """Thread- and signal-safe: hands the work to the event loop."""
        self._signals += 1
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin, self._signals > 1)

    def _begin(self, hurry: bool) -> None:
        if self.engine is not None:
            self.engine.stop_claiming()
        if hurry and self._hurry is not None:
            self._hurry.set()

    async def wait(self) -> None:
        engine, hurry = self.engine, self._hurry
        if not self._signals or engine is None or hurry is None or hurry.is_set() or not engine.active_runs:
            return  # not a signalled stop (an app closed in-process), or nothing to wait for
        log.warning("stopping: claiming no more runs; in-flight steps get %gs to finish", self.grace_s)
        async with anyio.create_task_group() as tg:

            async def cut_short() -> None:
                await hurry.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(cut_short)
            await engine.drain(self.grace_s)
            tg.cancel_scope.cancel()


def create_app(settings: Settings, tokens: TokenTable | None = None, *, host: str = "127.0.0.1",
               grace_s: float = 30.0) -> Starlette:
    """The ASGI app: `/mcp` (streamable HTTP, bearer tokens required), the JSON API under `/api`
    with `/openapi.json`, the websocket `/ws`, `/login` and `/healthz`.

    `tokens` defaults to the configured ones (`FLOWRUN_TOKENS`, `$FLOWRUN_HOME/tokens`). The web
    face's auth is `app.state.web_auth` (`flowrun serve` asks it for the login link it prints).
    `app.state.draining` (a `Draining`) is how `serve` stops gracefully: in-flight steps get
    `grace_s` seconds to finish once the server has stopped taking requests.
    """
    from .chat import ChatService
    from .chat.api import chat_endpoints
    from .chat.page import chat_page_routes
    from .tools.jsonrpc_guard import JsonRpcGuard
    from .tools.server import build_mcp_server  # mcp is heavy: imported only when serving
    from .web import authenticate, build_web
    from .web.chats import ChatSlot
    from .web.pages import page_routes
    from .web.sessions import SESSIONS_FILE

    bearer = BearerTokens(tokens if tokens is not None else TokenTable.from_config(settings.env, settings.home))
    if not len(bearer.table):
        log.warning("no bearer tokens are configured: every /mcp request will be refused (401)")
    slot = EngineSlot()
    mcp = build_mcp_server(slot, settings.public_url, bearer.current_actor, tokens=bearer)
    chat_slot = ChatSlot()
    chat_service: list[ChatService] = []  # filled by the lifespan
    web = build_web(slot, settings.public_url, bearer.table, chats=chat_slot, sessions=settings.home / SESSIONS_FILE,
                    extra=chat_endpoints(lambda: chat_service[0] if chat_service else None, settings.public_url))
    mcp_app = JsonRpcGuard(mcp.streamable_http_app(streamable_http_path="/", host=host,
                                                   transport_security=transport_security(host, settings.public_url)))

    webhooks = Webhooks.from_env(settings.env)  # a bad webhook setting stops `serve` at once
    draining = Draining(grace_s)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prepare_demo(settings)
        async with open_engine(settings) as engine, anyio.create_task_group() as tg:
            slot.engine = engine
            draining.attach(engine)
            await tg.start(Triggers(engine).run)  # schedules and checkpoint timeouts
            await tg.start(Notifier(engine, webhooks, run_url=settings.public_url + "/runs/{run_id}").run)
            try:
                async with ChatService.from_settings(engine, settings) as chats:
                    chat_slot.chats = chats
                    chat_service.append(chats)
                    try:
                        async with mcp.session_manager.run(), web.running():
                            yield
                        await draining.wait()  # requests are over: the steps in flight finish
                    finally:
                        chat_slot.chats = None
                        chat_service.clear()
            finally:
                slot.engine = None
                tg.cancel_scope.cancel()

    async def healthz(request: Request) -> JSONResponse:
        ready = slot.engine is not None and slot.engine.ready
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    hook = github_hook_route(lambda: slot.engine, lambda: webhook_secret(settings.env, settings.home))
    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/mcp", _ExactMount(mcp_app, "/mcp")),
              Mount("/mcp", app=mcp_app), hook, *web.routes(), *page_routes(slot, authenticate, chat_slot),
              *chat_page_routes(lambda: chat_service[0] if chat_service else None, authenticate, settings.public_url)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web_auth = web.auth
    app.state.draining = draining
    app.state.web = web
    return app


async def run_stdio(settings: Settings) -> None:
    """`flowrun mcp`: the MCP server on stdin/stdout, as the local operator, until the client
    closes stdin (how MCP clients stop a stdio server); the engine then shuts down and marks
    in-flight runs interrupted. A signal is not caught: the SDK reads stdin in a worker thread
    that cannot be cancelled, so the default action (exit now) is the only prompt one, and the
    next engine start marks this process's runs interrupted, as after any crash."""
    from mcp.server.stdio import stdio_server

    from .tools.jsonrpc_guard import AnsweringReadStream
    from .tools.server import build_mcp_server

    slot = EngineSlot()
    # run page links only where `flowrun serve` is said to run: this process serves no pages
    server = build_mcp_server(slot, settings.public_url, lambda: LOCAL_OPERATOR,
                              pages="FLOWRUN_PUBLIC_URL" in settings.env)
    await prepare_demo(settings)
    async with open_engine(settings) as engine:
        slot.engine = engine
        try:
            async with stdio_server() as (read_stream, write_stream):
                lowlevel = server._lowlevel_server  # what run_stdio_async serves, with bad lines answered
                await lowlevel.run(AnsweringReadStream(read_stream, write_stream), write_stream,
                                   lowlevel.create_initialization_options())
        finally:
            slot.engine = None
