"""The web pages: Sessions, Flows (with the Run Flow dialog), run detail, Command Center.

Everything is rendered on the server with jinja2 (autoescaping on; transcript Markdown through
`markdown.render_markdown`). The pages' ES modules follow the run over `/ws` and, when something
happened, fetch `/runs/{id}/live?after_seq=N`: the same templates rendered again as JSON regions,
which the client swaps in by element id. So the client never builds markup from run content, a
reload or a reconnect shows exactly what the log holds (no gap), and there is one renderer.

Every response carries a strict Content-Security-Policy (scripts only from /static, no inline
script or handler), `X-Frame-Options: DENY` and `nosniff`. Browsers sign in with the one-time
login link `flowrun serve` prints (a session cookie); without it a page asks for that link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..flows.enums import ExecutionMode, RunStatus, TaskState
from ..flows.enums import Scope as AccessScope
from ..flows.errors import FlowrunError, NotFound, PermissionDenied
from ..runtime.access import Actor
from ..tools.face import EngineSlot
from .chats import ChatSlot
from .render import make_env
from .runfolds import RunFolds
from .runpage import page_context, progress_view

Authenticate = Callable[[HTTPConnection], Awaitable[Actor | None]]
STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
SESSIONS_LIMIT = 200


class SecureHeaders:
    """Adds the security headers to every HTTP response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secure)


def run_page_url(public_url: str, run_id: str) -> str:
    """Where a run's page lives (what the CLI prints and the MCP tools hand out)."""
    return f"{public_url.rstrip('/')}/runs/{run_id}"


class Pages:
    def __init__(self, slot: EngineSlot, authenticate: Authenticate, chats: ChatSlot | None = None) -> None:
        self.slot = slot
        self.authenticate = authenticate
        self.chats = chats
        self.env = make_env()
        self.folds = RunFolds(slot)

    def html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store", **SECURITY_HEADERS})

    def part(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def _actor(self, request: Request) -> Actor | None:
        return await self.authenticate(request)

    def _signin(self) -> Response:
        return self.html("signin.html", status=401, title="Sign in", page="signin", actor=None, module=None)

    def _error(self, actor: Actor, exc: FlowrunError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 503
        heading = {404: "Not found", 403: "Not allowed", 503: "Not available yet"}[status]
        return self.html("error.html", status=status, title=heading, page="error", actor=actor, module=None,
                         heading=heading, message=exc.message)

    # pages ---------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    async def sessions(self, request: Request) -> Response:
        actor = await self._actor(request)
        if actor is None:
            return self._signin()
        try:
            runs = await self.slot.get().list_runs(actor, limit=SESSIONS_LIMIT)
            chats = (await self.chats.chats.list_chats(actor, limit=SESSIONS_LIMIT)
                     if self.chats is not None and self.chats.chats is not None else [])
        except FlowrunError as exc:
            return self._error(actor, exc)
        # runs and chats together, newest first (a chat by its newest message)
        items = sorted([("run", r.created_at, r) for r in runs] + [("chat", c.updated_at, c) for c in chats],
                       key=lambda item: item[1], reverse=True)
        if request.query_params.get("part") == "rows":
            return json_response({"regions": [{"id": "session-rows",
                                               "html": self.part("sessions_rows.html", runs=runs, items=items)}]})
        return self.html("sessions.html", title="Sessions", page="sessions", actor=actor, module="lists.js", runs=runs,
                         items=items)

    async def command_center(self, request: Request) -> Response:
        actor = await self._actor(request)
        if actor is None:
            return self._signin()
        try:
            runs = await self.slot.get().list_runs(actor, limit=SESSIONS_LIMIT)
        except FlowrunError as exc:
            return self._error(actor, exc)
        tasks = [r for r in runs if r.execution_mode == ExecutionMode.BACKGROUND]
        ctx: dict[str, Any] = {
            "tasks": tasks,
            "running": sum(1 for r in tasks if (r.task.state if r.task else None) == TaskState.RUNNING
                           or (r.task is None and r.status in (RunStatus.PENDING, RunStatus.RUNNING))),
            "review": sum(1 for r in tasks if r.task is not None and r.task.state == TaskState.REVIEW),
            "total_turns": sum(r.usage.turns for r in tasks),
            "total_cost": round(sum(r.usage.cost_usd for r in tasks), 6),
        }
        if request.query_params.get("part") == "tasks":
            return json_response({"regions": [{"id": "tasks", "html": self.part("tasks_region.html", **ctx)}]})
        return self.html("command_center.html", title="Command Center", page="command-center", actor=actor,
                         module="lists.js", **ctx)

    async def flows(self, request: Request) -> Response:
        actor = await self._actor(request)
        if actor is None:
            return self._signin()
        try:
            engine = self.slot.get()
            flows = engine.list_flows(actor)
        except FlowrunError as exc:
            return self._error(actor, exc)
        profiles = sorted(engine.deps.catalog.profiles)
        return self.html("flows.html", title="Flows", page="flows", actor=actor, module="flows.js", flows=flows,
                         profiles=profiles, can_run=AccessScope.RUN in actor.scopes)

    async def _run_context(self, actor: Actor, run_id: str) -> dict[str, Any]:
        """The run row, then its transcript folded up to it (only events not folded yet are
        read); render the context before the next await (the sections are shared)."""
        run = await self.slot.get().get_run(actor, run_id)
        return page_context(run, await self.folds.sections(actor, run), actor)

    async def run(self, request: Request) -> Response:
        actor = await self._actor(request)
        if actor is None:
            return self._signin()
        try:
            ctx = await self._run_context(actor, request.path_params["run_id"])
        except FlowrunError as exc:
            return self._error(actor, exc)
        run = ctx["run"]
        return self.html("run.html", title=f"{run.flow.name} · {run.id}", page="run", module="run.js", **ctx)

    async def live(self, request: Request) -> Response:
        """The run page's regions as they are now, for the client to swap in: the header, banners,
        summary and timeline always (small), and the transcript sections that changed after
        `after_seq`."""
        actor = await self._actor(request)
        if actor is None:
            return json_response({"code": "unauthenticated", "message": "Sign in with the login link."}, 401)
        try:
            after = int(request.query_params.get("after_seq", "0"))
        except ValueError:
            return json_response({"code": "bad_request", "message": "after_seq must be an integer"}, 400)
        try:
            ctx = await self._run_context(actor, request.path_params["run_id"])
        except FlowrunError as exc:
            status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 503
            return json_response({"code": exc.code, "message": exc.message}, status)
        regions = [{"id": rid, "html": self.part(tpl, **ctx)} for rid, tpl in (
            ("run-head", "run_head.html"), ("banners", "run_banners.html"), ("summary", "run_summary.html"),
            ("timeline", "run_timeline.html"))]
        for section in ctx["sections"]:
            if section.last_seq > after or after == 0:
                regions.append({"id": section.id, "html": self.part("transcript_section.html", section=section, **ctx)})
        run = ctx["run"]
        return json_response({"seq": ctx["seq"], "status": run.status.value, "version": run.version,
                              "retried_as": run.retried_as, "regions": regions})

    async def progress(self, request: Request) -> Response:
        """The Flow progress overlay's data (plain JSON; the overlay builds its DOM with
        textContent): status, steps, the checkpoint waiting with the completed step's artifact
        links, and the newest decision with who made it."""
        actor = await self._actor(request)
        if actor is None:
            return json_response({"code": "unauthenticated", "message": "Sign in with the login link."}, 401)
        try:
            run = await self.slot.get().get_run(actor, request.path_params["run_id"])
        except FlowrunError as exc:
            status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 503
            return json_response({"code": exc.code, "message": exc.message}, status)
        return json_response(progress_view(run, actor))


def json_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store", **SECURITY_HEADERS})


def page_routes(slot: EngineSlot, authenticate: Authenticate, chats: ChatSlot | None = None) -> list[BaseRoute]:
    pages = Pages(slot, authenticate, chats)
    return [
        Route("/", pages.index, methods=["GET"]),
        Route("/sessions", pages.sessions, methods=["GET"]),
        Route("/flows", pages.flows, methods=["GET"]),
        Route("/command-center", pages.command_center, methods=["GET"]),
        Route("/runs/{run_id}", pages.run, methods=["GET"]),
        Route("/runs/{run_id}/live", pages.live, methods=["GET"]),
        Route("/runs/{run_id}/progress", pages.progress, methods=["GET"]),
        Mount("/static", app=SecureHeaders(StaticFiles(directory=STATIC_DIR)), name="static"),
    ]
