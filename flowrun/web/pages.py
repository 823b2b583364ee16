"""The web pages: Sessions, Flows (with the Run Flow dialog), run detail, Command Center; the
pages of plans and initiatives live in `recordpages.py` and are mounted here.

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

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..flows.enums import ExecutionMode, RunStatus, TaskState
from ..flows.enums import Scope as AccessScope
from ..flows.errors import FlowrunError
from ..runtime.access import Actor
from ..runtime.records import get_record
from ..tools.face import EngineSlot
from .auth import state_change_allowed
from .chats import ChatSlot
from .pagebase import (
    UNAUTHENTICATED,
    Authenticate,
    PageBase,
    SecureHeaders,
    StateCheck,
    json_error,
    json_response,
)
from .recordpages import flows_scope, launched_record, record_page_routes
from .runfolds import RunFolds
from .runpage import page_context, progress_view
from .triggerpages import blocked_integration, trigger_routes

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSIONS_LIMIT = 200


class Pages(PageBase):
    def __init__(self, slot: EngineSlot, authenticate: Authenticate, chats: ChatSlot | None = None) -> None:
        super().__init__(authenticate)
        self.slot = slot
        self.chats = chats
        self.folds = RunFolds(slot)

    # pages ---------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/sessions", status_code=303)

    async def sessions(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            runs = await self.slot.get().list_runs(actor, limit=SESSIONS_LIMIT)
            chats = (await self.chats.chats.list_chats(actor, limit=SESSIONS_LIMIT)
                     if self.chats is not None and self.chats.chats is not None else [])
        except FlowrunError as exc:
            return self.error(actor, exc)
        # runs and chats together, newest first (a chat by its newest message)
        items = sorted([("run", r.created_at, r) for r in runs] + [("chat", c.updated_at, c) for c in chats],
                       key=lambda item: item[1], reverse=True)
        if request.query_params.get("part") == "rows":
            return json_response({"regions": [{"id": "session-rows",
                                               "html": self.part("sessions_rows.html", runs=runs, items=items)}]})
        return self.html("sessions.html", title="Sessions", page="sessions", actor=actor, module="lists.js", runs=runs,
                         items=items)

    async def command_center(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            runs = await self.slot.get().list_runs(actor, limit=SESSIONS_LIMIT)
        except FlowrunError as exc:
            return self.error(actor, exc)
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
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            engine = self.slot.get()
            flows = engine.list_flows(actor)
            record_id = request.query_params.get("record")  # "Run a Flow from this plan"
            scope = flows_scope(await get_record(engine.deps.store, actor, record_id), engine) if record_id else None
        except FlowrunError as exc:
            return self.error(actor, exc)
        profiles = sorted(engine.deps.catalog.profiles)
        return self.html("flows.html", title="Flows", page="flows", actor=actor, module="flows.js", flows=flows,
                         profiles=profiles, can_run=AccessScope.RUN in actor.scopes, record=scope)

    async def _run_context(self, actor: Actor, run_id: str) -> dict[str, Any]:
        """The run row, then its transcript folded up to it (only events not folded yet are
        read), and the record it was launched from; render the context before the next await
        (the sections are shared)."""
        engine = self.slot.get()
        run = await engine.get_run(actor, run_id)
        record = await launched_record(engine, actor, run)
        return {**page_context(run, await self.folds.sections(actor, run), actor), "record": record,
                **blocked_integration(engine, run)}

    async def run(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            ctx = await self._run_context(actor, request.path_params["run_id"])
        except FlowrunError as exc:
            return self.error(actor, exc)
        run = ctx["run"]
        return self.html("run.html", title=f"{run.flow.name} · {run.id}", page="run", module="run.js", **ctx)

    async def live(self, request: Request) -> Response:
        """The run page's regions as they are now, for the client to swap in: the header, banners,
        summary and timeline always (small), and the transcript sections that changed after
        `after_seq`."""
        actor = await self.authenticate(request)
        if actor is None:
            return json_response(UNAUTHENTICATED, 401)
        try:
            after = int(request.query_params.get("after_seq", "0"))
        except ValueError:
            return json_response({"code": "bad_request", "message": "after_seq must be an integer"}, 400)
        try:
            ctx = await self._run_context(actor, request.path_params["run_id"])
        except FlowrunError as exc:
            return json_error(exc)
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
        actor = await self.authenticate(request)
        if actor is None:
            return json_response(UNAUTHENTICATED, 401)
        try:
            engine = self.slot.get()
            run = await engine.get_run(actor, request.path_params["run_id"])
            record = await launched_record(engine, actor, run)
        except FlowrunError as exc:
            return json_error(exc)
        return json_response({**progress_view(run, actor), "record": record})


def page_routes(slot: EngineSlot, authenticate: Authenticate, chats: ChatSlot | None = None, *,
                may_change: StateCheck = state_change_allowed) -> list[BaseRoute]:
    """`may_change` says whether a form post may change state (the API's Origin rule)."""
    pages = Pages(slot, authenticate, chats)
    return [
        *record_page_routes(slot, authenticate, may_change),
        Route("/", pages.index, methods=["GET"]),
        Route("/sessions", pages.sessions, methods=["GET"]),
        Route("/flows", pages.flows, methods=["GET"]),
        Route("/command-center", pages.command_center, methods=["GET"]),
        Route("/runs/{run_id}", pages.run, methods=["GET"]),
        Route("/runs/{run_id}/live", pages.live, methods=["GET"]),
        Route("/runs/{run_id}/progress", pages.progress, methods=["GET"]),
        *trigger_routes(pages),
        Mount("/static", app=SecureHeaders(StaticFiles(directory=STATIC_DIR)), name="static"),
    ]
