"""The pages of launch paths, notifications and integrations: Schedules, Notifications and
Integrations (mounted by `pages.py`).

Schedules lists every Flow's schedule trigger as `runtime.triggers` keeps it: cron and timezone,
paused or active, the next fire times, and the last slots that fired with the run each started or
the refusal recorded on it (a daily cap, a failed pre-flight). Pause and Resume call the JSON API
(`/api/schedules/{flow}/pause|resume`): the same rules as the CLI, so resuming fires no burst.

Notifications lists the person's notifications (only about runs they may see), newest first,
with Mark read / Mark all read; the nav's unread badge and the desktop notifications are kept
live by `static/notify.js` over the `/ws` `notifications` topic (`notefeed.py`).

Integrations shows whether GitHub is connected (for you, for the server, or `GITHUB_TOKEN`), never
the token, and lets someone holding `integrations.manage` connect a token (checked and stored
exactly as `flowrun integrations connect github` does) or disconnect it. The run page's
`credential_needed` banner links here, and offers Resume once a token would be found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..flows.enums import BlockedCause, RunStatus, Scope
from ..flows.errors import FlowrunError
from ..flows.run import Run
from ..flows.template import FlowTemplate
from ..runtime.inbox import inbox
from ..runtime.triggers import ScheduleStatus, Triggers
from ..storage.base import ClaimRow
from .integrations_api import github_view
from .pagebase import json_response

if TYPE_CHECKING:
    from ..runtime.engine import Engine
    from .pages import Pages

RUN_ID = re.compile(r"^run_[A-Za-z0-9]{1,64}$")
NOTES_SHOWN = 100
CLAIM_LABELS = {"done": "Started", "refused": "Refused", "failed": "Failed", "taken": "Starting"}


@dataclass
class FiredSlot:
    slot: datetime | None
    status: str  # a ClaimStatus
    label: str
    run_id: str | None
    code: str
    message: str


@dataclass
class ScheduleCard:
    flow: FlowTemplate
    status: ScheduleStatus
    fired: list[FiredSlot]

    def local(self, at: datetime) -> str:
        """A slot in the schedule's own timezone (the cron is read there)."""
        return at.astimezone(ZoneInfo(self.status.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def fired_slot(claim: ClaimRow) -> FiredSlot:
    data = claim.data
    try:
        slot = datetime.fromisoformat(str(data.get("slot", "")))
    except ValueError:
        slot = None
    run_id = data.get("run_id")
    return FiredSlot(slot=slot, status=claim.status, label=CLAIM_LABELS.get(claim.status, claim.status),
                     run_id=run_id if isinstance(run_id, str) else None, code=str(data.get("code", "")),
                     message=str(data.get("message", "")))


def blocked_integration(engine: Engine, run: Run) -> dict[str, Any]:
    """What the run page's blocked banner needs to offer its action: for a run blocked as
    `credential_needed` on GitHub, whether a token would now be found for its starter (then the
    banner offers Resume) or not (then it links to the Integrations page)."""
    blocked = run.blocked
    if run.status != RunStatus.BLOCKED or blocked is None or blocked.cause != BlockedCause.CREDENTIAL_NEEDED:
        return {"integration": None, "integration_ready": False}
    name = str(blocked.details.get("integration", "github"))
    github = engine.deps.github
    ready = name == "github" and github is not None and github.token_for(run.started_by) is not None
    return {"integration": name, "integration_ready": ready}


class TriggerPages:
    """Schedules and Integrations, rendered with the `Pages` they are mounted from."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def schedules(self, request: Request) -> Response:
        pages = self.pages
        actor = await pages.authenticate(request)
        if actor is None:
            return pages.signin()
        try:
            engine = pages.slot.get()
            statuses = await Triggers(engine).statuses(actor)
        except FlowrunError as exc:
            return pages.error(actor, exc)
        flows = engine.deps.catalog.flows
        cards = [ScheduleCard(flow=flows[s.flow_id], status=s, fired=[fired_slot(c) for c in s.recent])
                 for s in statuses if s.flow_id in flows]
        ctx: dict[str, Any] = {"cards": cards, "can_toggle": Scope.RUN in actor.scopes}
        if request.query_params.get("part") == "list":
            return json_response({"regions": [{"id": "schedules", "html": pages.part("schedules_list.html", **ctx)}]})
        return pages.html("schedules.html", title="Schedules", page="schedules", actor=actor, module="schedules.js",
                          **ctx)

    async def integrations(self, request: Request) -> Response:
        pages = self.pages
        actor = await pages.authenticate(request)
        if actor is None:
            return pages.signin()
        try:
            actor.require(Scope.READ, "see integrations")
            engine = pages.slot.get()
            github = engine.deps.github
            view = github_view(github, actor) if github is not None else None
            run = None
            wanted = request.query_params.get("run", "")
            if RUN_ID.match(wanted):  # the blocked run that sent the person here, if they may see it
                try:
                    run = await engine.get_run(actor, wanted)
                except FlowrunError:
                    run = None
        except FlowrunError as exc:
            return pages.error(actor, exc)
        return pages.html("integrations.html", title="Integrations", page="integrations", actor=actor,
                          module="integrations.js", github=view, back_run=run)


    async def notifications(self, request: Request) -> Response:
        """The person's notifications, newest first: only about runs they may see."""
        pages = self.pages
        actor = await pages.authenticate(request)
        if actor is None:
            return pages.signin()
        try:
            box = await inbox(pages.slot.get(), actor, limit=NOTES_SHOWN)
        except FlowrunError as exc:
            return pages.error(actor, exc)
        if request.query_params.get("part") == "list":
            return json_response({"regions": [{"id": "notifications",
                                               "html": pages.part("notifications_list.html", box=box)}],
                                  "unread": box.unread})
        return pages.html("notifications.html", title="Notifications", page="notifications", actor=actor,
                          module="notifications.js", box=box)


def trigger_routes(pages: Pages) -> list[BaseRoute]:
    views = TriggerPages(pages)
    return [
        Route("/schedules", views.schedules, methods=["GET"]),
        Route("/integrations", views.integrations, methods=["GET"]),
        Route("/notifications", views.notifications, methods=["GET"]),
    ]
