"""The JSON API for integrations: which are connected (never the token), connect GitHub, disconnect.

Connecting goes through `runtime.integrations.connect_github`, the very path the CLI takes: the
token is checked against GitHub (`GET /user`) and stored 0600 under `$FLOWRUN_HOME`; it is never
echoed, never logged, and from now on redacted from everything this process stores. Reading needs
`flows.read`; connecting and disconnecting need `integrations.manage` (an admin's scope), and the
POSTs pass the API's Origin check like every other state change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ..flows.enums import Scope
from ..flows.errors import NotFound
from ..runtime.access import LOCAL_OPERATOR, Actor
from ..runtime.integrations import GitHub, connect_github
from ..tools.face import EngineSlot
from .openapi import Call, Endpoint

if TYPE_CHECKING:
    from ..runtime.engine import Engine

log = logging.getLogger("flowrun.web")

ConnectFor = Literal["me", "server"]


class IntegrationView(BaseModel):
    name: Literal["github"] = "github"
    url: str = Field(description="where GitHub is (FLOWRUN_GITHUB_URL)")
    connected: bool = Field(description="a token is connected for you")
    login: str | None = Field(default=None, description="the GitHub login your token belongs to")
    connected_at: str | None = None
    server_login: str | None = Field(
        default=None, description="the server's own connection (the operator's), used for runs whose starter "
                                  "connected none")
    env_token: bool = Field(description="GITHUB_TOKEN is set on the server (the last fallback)")
    usable: bool = Field(description="a run you start finds a token (yours, the server's, or GITHUB_TOKEN)")
    can_manage: bool = Field(description="you hold integrations.manage: you may connect and disconnect")


class IntegrationList(BaseModel):
    integrations: list[IntegrationView]


class GitHubConnect(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="a GitHub token; checked, stored 0600, never shown again",
                       json_schema_extra={"writeOnly": True, "format": "password"})
    connect_for: ConnectFor = Field(default="me", description="me: runs you start; server: runs whose starter "
                                                              "connected no token of their own")


class GitHubDisconnect(BaseModel):
    connect_for: ConnectFor = "me"


def github_of(engine: Engine) -> GitHub:
    github = engine.deps.github
    if github is None:
        raise NotFound("this server has no GitHub integration configured", integration="github")
    return github


def github_view(github: GitHub, actor: Actor) -> IntegrationView:
    connections = github.connections()
    mine, server = connections.get(actor.id), connections.get(LOCAL_OPERATOR.id)
    return IntegrationView(
        url=github.url, connected=mine is not None, login=mine.login if mine else None,
        connected_at=mine.connected_at if mine else None, server_login=server.login if server else None,
        env_token=github.env_token is not None, usable=github.token_for(actor.id) is not None,
        can_manage=Scope.INTEGRATIONS in actor.scopes,
    )


def remember_secret(engine: Engine, token: str) -> None:
    """Redact a newly connected token from everything this process writes from now on (other
    processes learn it when they start; GitHub's token formats are redacted by pattern anyway)."""
    deps = engine.deps
    if deps.redactor is not None:
        deps.redactor = deps.redactor.with_secrets([token])
    store_redactor = getattr(deps.store, "redactor", None)
    if store_redactor is not None:
        deps.store.redactor = store_redactor.with_secrets([token])  # type: ignore[attr-defined]


def integration_endpoints(slot: EngineSlot) -> list[Endpoint]:
    async def integrations(call: Call) -> IntegrationList:
        call.actor.require(Scope.READ, "see integrations")
        return IntegrationList(integrations=[github_view(github_of(slot.get()), call.actor)])

    async def connect(call: Call) -> IntegrationView:
        body = call.body
        assert isinstance(body, GitHubConnect)
        call.actor.require(Scope.INTEGRATIONS, "connect GitHub")
        engine = slot.get()
        github = github_of(engine)
        who = call.actor.id if body.connect_for == "me" else LOCAL_OPERATOR.id
        connection = await connect_github(github, who, body.token)
        remember_secret(engine, connection.token)
        log.info("GitHub connected for %s as %s by %s", who, connection.login, call.actor.id)
        return github_view(github, call.actor)

    async def disconnect(call: Call) -> IntegrationView:
        body = call.body
        assert isinstance(body, GitHubDisconnect)
        call.actor.require(Scope.INTEGRATIONS, "disconnect GitHub")
        github = github_of(slot.get())
        who = call.actor.id if body.connect_for == "me" else LOCAL_OPERATOR.id
        if github.disconnect(who):
            log.info("GitHub disconnected for %s by %s", who, call.actor.id)
        return github_view(github, call.actor)

    return [
        Endpoint("GET", "/api/integrations", integrations, "Integrations and whether they are connected (never "
                 "a token)", IntegrationList, tag="integrations", errors=(401, 403, 404)),
        Endpoint("POST", "/api/integrations/github", connect, "Connect GitHub: the token is checked against "
                 "GitHub, stored 0600 and never shown again", IntegrationView, body=GitHubConnect,
                 tag="integrations", errors=(401, 403, 404, 422)),
        Endpoint("POST", "/api/integrations/github/disconnect", disconnect, "Disconnect GitHub", IntegrationView,
                 body=GitHubDisconnect, tag="integrations", errors=(401, 403, 404)),
    ]
