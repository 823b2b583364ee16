"""The web face assembled: auth, the JSON API, `/openapi.json`, `/login` and `/ws`.

`flowrun.server.create_app` builds one `WebFace`, mounts its routes in the one app, runs
`face.running()` inside the lifespan (the websocket hub's feeds live in its task group) and keeps
`face.auth` in `app.state.web_auth`, where `flowrun.web.auth.authenticate` finds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
from starlette.routing import BaseRoute

from ..tools.auth import TokenTable
from ..tools.face import EngineSlot
from .api import endpoints
from .auth import WebAuth, login_routes
from .chats import ChatSlot
from .hub import Hub
from .launch_api import launch_endpoints
from .openapi import Endpoint, openapi, openapi_route, wrap
from .sessions import SessionTable
from .ws import ws_routes


def _version() -> str:
    try:
        return version("flowrun")
    except PackageNotFoundError:  # pragma: no cover - a checkout without install
        return "0"


@dataclass(eq=False)
class WebFace:
    slot: EngineSlot
    public_url: str
    auth: WebAuth
    hub: Hub
    endpoints: list[Endpoint] = field(default_factory=list)
    chats: ChatSlot = field(default_factory=ChatSlot)

    def routes(self) -> list[BaseRoute]:
        return [*login_routes(self.auth), openapi_route(self.openapi), *(wrap(e, self.auth) for e in self.endpoints),
                *ws_routes(self.hub, self.slot, self.auth, self.chats)]

    def openapi(self) -> dict[str, Any]:
        return openapi(self.endpoints, title="flowrun", version=_version(), server_url=self.public_url)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The hub's feeds run in this task group; leaving it stops them."""
        async with anyio.create_task_group() as tg:
            self.hub.tg = tg
            try:
                yield
            finally:
                self.hub.tg = None
                tg.cancel_scope.cancel()


def build_web(slot: EngineSlot, public_url: str, tokens: TokenTable, *, chats: ChatSlot | None = None,
              extra: Sequence[Endpoint] = (), sessions: Path | None = None) -> WebFace:
    """`chats` is filled by the app's lifespan; `extra` are more endpoints (the chat API);
    `sessions` is the file that keeps browser sessions across restarts (None: memory only)."""
    public_url = public_url.rstrip("/")
    chats = chats if chats is not None else ChatSlot()
    auth = WebAuth(tokens, public_url, sessions=SessionTable(sessions))
    return WebFace(slot=slot, public_url=public_url, auth=auth,
                   hub=Hub(slot, public_url, chats=chats),
                   endpoints=[*endpoints(slot, public_url, chats), *launch_endpoints(slot), *extra], chats=chats)
