"""Resource subscriptions that deliver: `run://{id}` and `run://{id}/transcript` while a run changes.

The mcp SDK advertises `resources.subscribe` and `listChanged` on its newest protocol because it
serves `subscriptions/listen`, but a stream only carries what somebody publishes, and nothing in
flowrun did. `RunListenHandler` replaces the SDK's handler: for a listen stream that names run
resources, it follows those runs' event logs (the same log `wait_for_run` and the websocket read,
so runs driven by another process are seen too) for as long as the stream is open, and publishes
`notifications/resources/updated` on that stream alone: a state change updates the run and its
transcript, a transcript entry only the transcript. Updates are coalesced (at most one per
resource per `interval`) so a chatty shell cannot overflow the stream's backlog. A run the
caller may not read, or that does not exist, is acknowledged and never fires (the SDK's rule for
a resource that does not exist).

Streams without run resources (list-changed only) are served by the SDK's own handler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourceUpdated,
    ServerEvent,
    SubscriptionBus,
)
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from ..flows.errors import FlowrunError
from ..flows.events import AgentMessages, TranscriptEntry
from ..runtime.access import Actor
from ..runtime.engine import Engine
from .face import Face

log = logging.getLogger("flowrun.tools")

_RUN_URI = re.compile(r"^run://(?P<run>[A-Za-z0-9_\-]+)(?P<transcript>/transcript)?$")


def run_uris(uris: Sequence[str]) -> dict[str, set[str]]:
    """The run ids named by `uris`, each with the subscribed URIs that belong to it."""
    runs: dict[str, set[str]] = {}
    for uri in uris:
        match = _RUN_URI.match(uri)
        if match is not None:
            runs.setdefault(match["run"], set()).add(uri)
    return runs


class _StreamBus:
    """One listen stream's bus: the server's shared events, plus what this stream's run
    followers publish (seen by this stream only)."""

    def __init__(self, shared: SubscriptionBus) -> None:
        self._shared = shared
        self._own = InMemorySubscriptionBus()

    async def publish(self, event: ServerEvent) -> None:
        await self._own.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        shared, own = self._shared.subscribe(listener), self._own.subscribe(listener)

        def unsubscribe() -> None:
            shared()
            own()

        return unsubscribe


class RunListenHandler(ListenHandler):
    def __init__(self, bus: SubscriptionBus, face: Face, *, interval: float = 0.25,
                 max_streams: int = 1024) -> None:
        super().__init__(bus)
        self._shared = bus
        self._face = face
        self._interval = interval
        self._max_streams = max_streams
        self._streams_here: set[ListenHandler] = set()

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        runs = run_uris(params.notifications.resource_subscriptions or ())
        if not runs:
            return await super().__call__(ctx, params)
        if len(self._streams_here) >= self._max_streams:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached")
        bus = _StreamBus(self._shared)
        stream = ListenHandler(bus)
        self._streams_here.add(stream)
        try:
            async with anyio.create_task_group() as tg:
                for run_id, uris in runs.items():
                    tg.start_soon(self._follow, run_id, uris, bus)
                result = await stream(ctx, params)
                tg.cancel_scope.cancel()
            return result
        finally:
            self._streams_here.discard(stream)

    def close(self) -> None:
        super().close()
        for stream in list(self._streams_here):
            stream.close()

    async def _follow(self, run_id: str, uris: set[str], bus: _StreamBus) -> None:
        async def publish(uri: str) -> None:
            await bus.publish(ResourceUpdated(uri=uri))

        await follow_run(self._face.engine(), self._face.actor(), run_id, uris, publish, self._interval)


async def follow_run(engine: Engine, actor: Actor, run_id: str, uris: set[str],
                     publish: Callable[[str], Awaitable[None]], interval: float) -> None:
    """Calls `publish(uri)` for each of `uris` (a run's summary and transcript resources) when the
    run's log changes what it shows, at most once per `interval` per resource, until cancelled."""
    try:
        run = await engine.get_run(actor, run_id)
    except FlowrunError as exc:
        log.info("subscription: %s is not followed: %s", run_id, exc.message)
        return
    transcript = f"run://{run_id}/transcript"
    summary = f"run://{run_id}"
    dirty: set[str] = set()
    changed = anyio.Event()

    async def publish_changes() -> None:
        nonlocal changed
        while True:
            await changed.wait()
            changed = anyio.Event()
            ready = sorted(dirty)
            dirty.clear()
            for uri in ready:
                await publish(uri)
            await anyio.sleep(interval)

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_changes)
        async for event in engine.subscribe(actor, run_id, after_seq=run.last_seq):
            if isinstance(event.data, AgentMessages):
                continue  # log-only: neither resource shows it
            touched = {transcript} if isinstance(event.data, TranscriptEntry) else {transcript, summary}
            if touched & uris:
                dirty.update(touched & uris)
                changed.set()


class LegacySubscriptions:
    """`resources/subscribe` and `resources/unsubscribe`, for sessions on protocol 2025-11-25 and
    older (most IDE assistants today; the 2026-07-28 wire has `subscriptions/listen` instead).

    A subscription to `run://{id}` or `run://{id}/transcript` follows the run's log in a task of
    the engine's (it outlives the request) and sends `notifications/resources/updated` on the
    session, coalesced like a listen stream's. It ends on unsubscribe, when the session can no
    longer be written to, or when the engine stops. A URI that is not a run the caller may read
    is acknowledged and never fires, as on the newer wire. Sessions are told apart by their
    `Mcp-Session-Id` (streamable HTTP); a stdio or in-memory server has one session.
    """

    def __init__(self, face: Face, *, interval: float = 0.25, max_followers: int = 1024) -> None:
        self._face = face
        self._interval = interval
        self._max = max_followers
        self._followers: dict[tuple[str, str], anyio.CancelScope] = {}

    @staticmethod
    def _key(ctx: ServerRequestContext[Any, Any], uri: str) -> tuple[str, str]:
        request = ctx.request
        headers = getattr(request, "headers", None)
        session = headers.get("mcp-session-id", "") if headers is not None else ""
        return session or "local", uri

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        runs = run_uris([params.uri])
        key = self._key(ctx, params.uri)
        if not runs or key in self._followers:
            return EmptyResult()
        if len(self._followers) >= self._max:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached")
        [(run_id, uris)] = runs.items()
        scope = self._followers[key] = anyio.CancelScope()
        self._face.engine().start_background(self._follow, ctx.session, self._face.actor(), run_id, uris, key, scope,
                                             name=f"subscription {params.uri}")
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any],
                          params: UnsubscribeRequestParams) -> EmptyResult:
        scope = self._followers.pop(self._key(ctx, params.uri), None)
        if scope is not None:
            scope.cancel()
        return EmptyResult()

    async def _follow(self, session: ServerSession, actor: Actor, run_id: str, uris: set[str],
                      key: tuple[str, str], scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await follow_run(self._face.engine(), actor, run_id, uris, session.send_resource_updated,
                                 self._interval)
            except Exception as exc:  # the session is gone: nobody to tell
                log.info("subscription %s ended: %r", key[1], exc)
            finally:
                if self._followers.get(key) is scope:
                    del self._followers[key]
