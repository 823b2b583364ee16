"""`run://{id}` subscriptions deliver `notifications/resources/updated` while the run changes
(issue 9 §5): a real MCP client (mcp 2.x, protocol 2026-07-28) listens over the SDK's own
`subscriptions/listen` while the run is decided and finishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from flowrun.flows.enums import RunStatus
from flowrun.runtime.access import LOCAL_OPERATOR
from flowrun.tools.face import EngineSlot
from flowrun.tools.server import build_mcp_server
from flowrun.tools.subscriptions import run_uris

from ..runtime.harness import catalog, running_engine, scripts, submit
from .mcpkit import ANA, SESSION_TIMEOUT_S, environment, served

pytestmark = pytest.mark.anyio


def test_run_uris() -> None:
    assert run_uris(["run://run_01ABC", "run://run_01ABC/transcript", "flow://x", "run://a/b"]) == {
        "run_01ABC": {"run://run_01ABC", "run://run_01ABC/transcript"}}


async def test_a_subscription_to_a_run_receives_updates_while_it_runs(tmp_path: Path) -> None:
    steps = [{"name": "Plan", "skill": "plan", "checkpoint": {"message": "Go?"}}]
    provider = scripts(plan=[{"text": "Planning.", **submit("planned")}])
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        slot = EngineSlot(engine)
        server = build_mcp_server(slot, "http://127.0.0.1:8765", lambda: LOCAL_OPERATOR)
        run = await engine.start_run(LOCAL_OPERATOR, "test-flow")
        run = await engine.wait_until(LOCAL_OPERATOR, run.id, statuses=[RunStatus.PAUSED], timeout_s=10)
        uri, transcript = f"run://{run.id}", f"run://{run.id}/transcript"
        async with Client(server, mode="2026-07-28") as client:
            assert client.session.protocol_version == "2026-07-28"
            async with client.listen(resource_subscriptions=[uri, transcript]) as sub:
                await engine.decide(LOCAL_OPERATOR, run.id, "approve")
                seen: set[str] = set()
                with anyio.fail_after(10):
                    async for event in sub:
                        assert isinstance(event, ResourceUpdated)
                        seen.add(event.uri)
                        current = await engine.get_run(LOCAL_OPERATOR, run.id)
                        if seen == {uri, transcript} and current.status == RunStatus.COMPLETED:
                            break
            # a stream for a run the caller cannot see is acknowledged and stays quiet
            async with client.listen(resource_subscriptions=["run://run_nope"]) as quiet:
                assert quiet.honored.resource_subscriptions == ["run://run_nope"]


async def test_over_streamable_http_with_a_token(tmp_path: Path) -> None:
    """The same through `flowrun serve`'s `/mcp`, bearer token and all: the listen stream is an
    SSE response that stays open while the run is cancelled."""
    async with served(environment(tmp_path)) as base, \
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {ANA}"}, timeout=SESSION_TIMEOUT_S) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="2026-07-28") as client:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            started = await client.call_tool("start_flow", {"flow": "slow"})
        assert isinstance(started.structured_content, dict)
        run_id = started.structured_content["id"]
        async with client.listen(resource_subscriptions=[f"run://{run_id}"]) as sub:
            with anyio.fail_after(SESSION_TIMEOUT_S):
                await client.call_tool("cancel_run", {"run_id": run_id})
                async for event in sub:
                    assert isinstance(event, ResourceUpdated) and event.uri == f"run://{run_id}"
                    view = await client.call_tool("get_run", {"run_id": run_id})
                    assert isinstance(view.structured_content, dict)
                    if view.structured_content["status"] == "cancelled":
                        break


LEGACY = pytest.mark.filterwarnings("ignore:resources/.*subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning")


def _updates(seen: list[str], arrived: anyio.Event) -> Any:
    async def handle(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            seen.append(message.params.uri)
            arrived.set()
    return handle


@LEGACY
async def test_on_the_2025_protocol_resources_subscribe_delivers_updates(tmp_path: Path) -> None:
    """Most IDE assistants speak 2025-11-25, whose `resources/subscribe` the SDK only advertises
    when a handler is served: flowrun serves one, with the same updates as a listen stream."""
    steps = [{"name": "Plan", "skill": "plan", "checkpoint": {"message": "Go?"}}]
    provider = scripts(plan=[{"text": "Planning.", **submit("planned")}])
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        server = build_mcp_server(EngineSlot(engine), "http://127.0.0.1:8765", lambda: LOCAL_OPERATOR)
        run = await engine.start_run(LOCAL_OPERATOR, "test-flow")
        run = await engine.wait_until(LOCAL_OPERATOR, run.id, statuses=[RunStatus.PAUSED], timeout_s=10)
        uri, transcript = f"run://{run.id}", f"run://{run.id}/transcript"
        seen: list[str] = []
        arrived = anyio.Event()
        async with Client(server, mode="legacy", message_handler=_updates(seen, arrived)) as client:
            assert client.session.protocol_version == "2025-11-25"
            resources = client.server_capabilities.resources
            assert resources is not None and resources.subscribe is True
            await client.subscribe_resource(uri)
            await client.unsubscribe_resource(uri)  # never fires
            await client.subscribe_resource(transcript)
            await client.subscribe_resource(transcript)  # twice: still one follower
            await client.subscribe_resource("run://run_nope")  # acknowledged, never fires
            await engine.decide(LOCAL_OPERATOR, run.id, "approve")
            await engine.wait_until(LOCAL_OPERATOR, run.id, statuses=[RunStatus.COMPLETED], timeout_s=10)
            with anyio.fail_after(10):
                await arrived.wait()
            await anyio.sleep(0.6)  # what else would come
        assert set(seen) == {transcript}
        assert len(seen) <= 4  # coalesced: the run's burst of events is a few updates, not one per event


@LEGACY
async def test_the_2025_protocol_over_streamable_http(tmp_path: Path) -> None:
    """Through `/mcp` with a token: the update arrives on the session's standalone stream."""
    seen: list[str] = []
    arrived = anyio.Event()
    async with served(environment(tmp_path)) as base, \
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {ANA}"}, timeout=SESSION_TIMEOUT_S) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy",
                   message_handler=_updates(seen, arrived)) as client:
        assert client.session.protocol_version == "2025-11-25"
        with anyio.fail_after(SESSION_TIMEOUT_S):
            started = await client.call_tool("start_flow", {"flow": "slow"})
            assert isinstance(started.structured_content, dict)
            run_id = started.structured_content["id"]
            await client.subscribe_resource(f"run://{run_id}")
            await client.call_tool("cancel_run", {"run_id": run_id})
            await arrived.wait()
        assert seen[0] == f"run://{run_id}"
