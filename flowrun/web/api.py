"""The JSON API under `/api`: thin calls into the engine, each returning a typed view.

The run and Flow views are the MCP face's own (`tools.views`), so every face shows one shape.
Errors are not handled here: `openapi.wrap` turns a `FlowrunError` into the typed JSON refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..flows.enums import LaunchKind, RunStatus
from ..flows.errors import NotFound
from ..flows.run import Launch, Run
from ..runtime.access import Actor
from ..runtime.engine import Engine
from ..tools.face import EngineSlot
from ..tools.models import FlowView, RunView
from ..tools.views import flow_view, run_view, transcript_lines
from .chats import ChatSlot, chat_session_view
from .errors import RequestError
from .models import (
    DecideRequest,
    EventPage,
    FlowList,
    HealthEventList,
    HealthEventView,
    RetryRequest,
    RunPage,
    SessionPage,
    StartRequest,
    TaskList,
    session_view,
    task_view,
)
from .openapi import Call, Endpoint, Query

DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_EVENTS_PAGE = 1000
TASK_SCAN = 500


def _status_filter(values: Sequence[str] | None) -> list[RunStatus] | None:
    if not values:
        return None
    try:
        return [RunStatus(v) for v in values]
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise RequestError(f"Unknown run status in {','.join(values)!r} (known: {known}).",
                           parameter="status") from None


def endpoints(slot: EngineSlot, public_url: str, chats: ChatSlot | None = None) -> list[Endpoint]:
    def engine() -> Engine:
        return slot.get()

    def view(run: Run, actor: Actor) -> RunView:  # next_actions: only what this caller may do
        return run_view(run, public_url, actor=actor)

    async def list_flows(call: Call) -> FlowList:
        return FlowList(flows=[flow_view(f) for f in engine().list_flows(call.actor)])

    async def get_flow(call: Call) -> FlowView:
        flow_id = call.path["flow_id"]
        for flow in engine().list_flows(call.actor):
            if flow.id == flow_id:
                return flow_view(flow)
        raise NotFound(f"no flow {flow_id!r}", flow=flow_id)

    async def start_run(call: Call) -> RunView:
        body = call.body
        assert isinstance(body, StartRequest)
        run = await engine().start_run(
            call.actor, body.flow_id, body.params, sandbox_profile=body.sandbox_profile,
            execution_mode=body.execution_mode, checkpoint_mode=body.checkpoint_mode,
            launch=Launch(kind=LaunchKind.RECORD, ref=body.record_id) if body.record_id else Launch(),
        )
        return view(run, call.actor)

    async def list_runs(call: Call) -> RunPage:
        limit = call.query.get("limit", DEFAULT_PAGE)
        runs = await engine().list_runs(call.actor, status=_status_filter(call.query.get("status")),
                                        flow=call.query.get("flow_id"), limit=limit + 1,
                                        before=call.query.get("cursor"))
        page = runs[:limit]
        return RunPage(runs=[view(r, call.actor) for r in page], next_cursor=page[-1].id if len(runs) > limit else None)

    async def get_run(call: Call) -> RunView:
        e, actor = engine(), call.actor
        run = await e.get_run(actor, call.path["run_id"])
        tail = call.query.get("transcript_tail")
        lines = transcript_lines(await e.events(actor, run.id), tail=tail) if tail is not None else None
        return run_view(run, public_url, lines, actor)

    async def decide(call: Call) -> RunView:
        body = call.body
        assert isinstance(body, DecideRequest)
        run = await engine().decide(call.actor, call.path["run_id"], body.decision, comment=body.comment,
                                    step=body.step, expected_version=body.expected_version,
                                    decision_id=body.decision_id)
        return view(run, call.actor)

    async def resume(call: Call) -> RunView:
        return view(await engine().resume(call.actor, call.path["run_id"]), call.actor)

    async def retry(call: Call) -> RunView:
        body = call.body
        assert isinstance(body, RetryRequest)
        return view(await engine().retry(call.actor, call.path["run_id"], clone=body.clone), call.actor)

    async def cancel(call: Call) -> RunView:
        return view(await engine().cancel(call.actor, call.path["run_id"]), call.actor)

    async def events(call: Call) -> EventPage:
        after = call.query.get("after_seq", 0)
        limit = call.query.get("limit", MAX_EVENTS_PAGE)
        page = await engine().events(call.actor, call.path["run_id"], after, limit + 1)
        shown = page[:limit]
        return EventPage(events=[e.model_dump(mode="json") for e in shown],
                         last_seq=shown[-1].seq if shown else after, has_more=len(page) > limit)

    async def health_events(call: Call) -> HealthEventList:
        rows = await engine().health_events(call.actor, open_only=not call.query.get("all", False))
        return HealthEventList(health_events=[HealthEventView(id=r.id, title=r.title, body=r.body, data=r.data)
                                              for r in rows])

    async def sessions(call: Call) -> SessionPage:
        limit = call.query.get("limit", DEFAULT_PAGE)
        cursor = call.query.get("cursor")
        runs = await engine().list_runs(call.actor, limit=limit + 1, before=cursor)
        page = runs[:limit]
        views = [session_view(r, public_url) for r in page]
        if chats is not None and chats.chats is not None and cursor is None:
            # chats join the first page (a person has a handful); runs page on by their cursor
            views += [chat_session_view(c, public_url) for c in await chats.chats.list_chats(call.actor, limit=limit)]
            views.sort(key=lambda v: v.updated_at or v.created_at, reverse=True)
        return SessionPage(sessions=views, next_cursor=page[-1].id if len(runs) > limit else None)

    async def tasks(call: Call) -> TaskList:
        runs = await engine().list_runs(call.actor, limit=TASK_SCAN)
        found = [t for t in (task_view(r, public_url) for r in runs) if t is not None]
        return TaskList(tasks=found)

    run_id_errors = (401, 403, 404)
    page = Query("limit", "at most this many", "integer", minimum=1, maximum=MAX_PAGE)
    cursor = Query("cursor", "the next_cursor of the previous page")
    return [
        Endpoint("GET", "/api/flows", list_flows, "List the Flows you can start", FlowList, tag="flows"),
        Endpoint("GET", "/api/flows/{flow_id}", get_flow, "A Flow with its parameters and steps", FlowView,
                 tag="flows", errors=run_id_errors),
        Endpoint("POST", "/api/runs", start_run, "Start a run (returns at once)", RunView, body=StartRequest,
                 status=201, errors=(401, 403, 404, 409, 422, 429, 503),
                 description="Refusals: missing_parameters (422), invalid_parameters (422), preflight_failed "
                             "(409), daily_cap_reached (429 with Retry-After), warming_up (503 with Retry-After)."),
        Endpoint("GET", "/api/runs", list_runs, "Runs in your workspace, newest first", RunPage,
                 query=(Query("status", "only runs in these statuses", repeated=True),
                        Query("flow_id", "only runs of this Flow"), cursor, page)),
        Endpoint("GET", "/api/runs/{run_id}", get_run, "A run: status, steps, checkpoint, links", RunView,
                 query=(Query("transcript_tail", "also the newest N transcript lines", "integer", minimum=0,
                              maximum=200),), errors=run_id_errors),
        Endpoint("POST", "/api/runs/{run_id}/decide", decide, "Approve, reject or skip the checkpoint", RunView,
                 body=DecideRequest, errors=(401, 403, 404, 409, 422),
                 description="Compare-and-set: a second decision gets 409 already_decided naming the first; "
                             "one meant for another step or an older version gets 409 stale_checkpoint."),
        Endpoint("POST", "/api/runs/{run_id}/resume", resume, "Resume a blocked or cancelled run", RunView,
                 errors=(401, 403, 404, 409)),
        Endpoint("POST", "/api/runs/{run_id}/retry", retry, "Retry a failed or interrupted run", RunView,
                 body=RetryRequest, errors=(401, 403, 404, 409, 429)),
        Endpoint("POST", "/api/runs/{run_id}/cancel", cancel, "Cancel a running or paused run", RunView,
                 errors=(401, 403, 404, 409)),
        Endpoint("GET", "/api/runs/{run_id}/events", events, "A run's stored events after a seq", EventPage,
                 query=(Query("after_seq", "events after this seq", "integer", minimum=0),
                        Query("limit", "at most this many", "integer", minimum=1, maximum=MAX_EVENTS_PAGE)),
                 errors=run_id_errors),
        Endpoint("GET", "/api/health-events", health_events, "Health events of your workspace's runs",
                 HealthEventList, tag="health",
                 query=(Query("all", "also resolved ones", "boolean"),)),
        Endpoint("GET", "/api/sessions", sessions, "Sessions: runs and chats, newest first", SessionPage,
                 tag="sessions", query=(cursor, page)),
        Endpoint("GET", "/api/tasks", tasks, "Background tasks with their turns and cost", TaskList,
                 tag="sessions"),
    ]
