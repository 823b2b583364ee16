"""The pull-request trigger: a GitHub `pull_request` event starts every Flow that asks for it.

The face (`/hooks/github`) verifies the signature before anything here parses the body. Each
(delivery, Flow) pair is a claim: a delivery already processed starts nothing new, a redelivery
of one that failed (or was refused) tries again. The PR's text is untrusted: the run records
which parameters came from it, and the step agents are told to treat them as data.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..flows.enums import LaunchKind
from ..flows.errors import FlowrunError
from ..flows.run import Launch
from ..flows.template import FlowTemplate
from .triggers import trigger_actor

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flowrun.runtime")

# parameter names a Flow may declare to receive the pull request's context
PR_PARAMETERS = ("repository", "repositoryId", "pr_number", "pr_title", "pr_body", "pr_author",
                 "pr_url", "head_ref", "head_sha", "base_ref")
UNTRUSTED = ("pr_title", "pr_body", "head_ref")  # written by whoever opened the pull request


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _User(_Loose):
    login: str = ""


class _Ref(_Loose):
    ref: str = ""
    sha: str = ""


class _PullRequest(_Loose):
    number: int
    title: str = ""
    body: str | None = None
    html_url: str = ""
    user: _User = Field(default_factory=_User)
    head: _Ref = Field(default_factory=_Ref)
    base: _Ref = Field(default_factory=_Ref)


class _Repository(_Loose):
    full_name: str


class PullRequestEvent(_Loose):
    action: str
    pull_request: _PullRequest
    repository: _Repository

    def context(self) -> dict[str, Any]:
        pr = self.pull_request
        return {
            "repository": self.repository.full_name, "repositoryId": self.repository.full_name,
            "pr_number": pr.number, "pr_title": pr.title, "pr_body": pr.body or "",
            "pr_author": pr.user.login, "pr_url": pr.html_url, "head_ref": pr.head.ref,
            "head_sha": pr.head.sha, "base_ref": pr.base.ref,
        }


class FlowOutcome(BaseModel):
    flow_id: str
    result: Literal["started", "duplicate", "refused", "failed"]
    run_id: str | None = None
    message: str = ""


def matching_flows(flows: list[FlowTemplate], event: PullRequestEvent) -> list[FlowTemplate]:
    repo = event.repository.full_name.lower()
    return [
        flow for flow in flows
        if (trigger := flow.triggers.pull_request) is not None
        and trigger.repository.lower() == repo and event.action in trigger.events
    ]


async def on_pull_request(engine: Engine, delivery_id: str, event: PullRequestEvent) -> list[FlowOutcome]:
    """Start every matching Flow once for this delivery; returns what came of each."""
    store = engine.deps.store
    context = event.context()
    outcomes: list[FlowOutcome] = []
    for flow in matching_flows(list(engine.deps.catalog.flows.values()), event):
        key = f"github:{delivery_id}:{flow.id}"
        meta = {"flow": flow.id, "repository": context["repository"], "pr": context["pr_number"],
                "action": event.action}
        if not await store.claim(key, meta, retry_failed=True):
            outcomes.append(FlowOutcome(flow_id=flow.id, result="duplicate",
                                        message=f"delivery {delivery_id} was already processed"))
            continue
        declared = {p.name for p in flow.parameters}
        params = {name: value for name, value in context.items() if name in declared}
        launch = Launch(kind=LaunchKind.TRIGGER,
                        ref=f"github:{context['repository']}#{context['pr_number']}",
                        untrusted=[name for name in UNTRUSTED if name in params])
        try:
            run = await engine.start_run(trigger_actor(), flow.id, params, launch=launch)
        except FlowrunError as exc:
            log.warning("pull request %s#%s could not start %s: %s", context["repository"],
                        context["pr_number"], flow.id, exc.message)
            await store.settle_claim(key, "failed", meta | {"code": exc.code, "message": exc.message})
            outcomes.append(FlowOutcome(flow_id=flow.id, result="refused", message=exc.message))
            continue
        await store.settle_claim(key, "done", meta | {"run_id": run.id})
        outcomes.append(FlowOutcome(flow_id=flow.id, result="started", run_id=run.id))
    return outcomes
