"""The ASGI app under uvicorn on an ephemeral loopback port: `/mcp` over streamable HTTP with a
real MCP client, bearer tokens whose actor and scopes the engine enforces, Origin/Host checks,
`/healthz`; and `flowrun serve` itself as a process."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream
from mcp.client.client import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData

from .tools.mcpkit import (
    ANA,
    BOB,
    FLOWRUN,
    NOBODY,
    OPS,
    READER,
    STRANGER,
    call,
    environment,
    http_session,
    refusal,
    served,
    wait,
)

pytestmark = pytest.mark.anyio

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_healthz_and_the_http_guards(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as base, httpx2.AsyncClient(base_url=base, timeout=10) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        for path in ("/mcp", "/mcp/"):
            anonymous = await http.post(path, json=INITIALIZE, headers=MCP_HEADERS)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
        forged = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": "Bearer forged-0123456789abcdef"})
        assert forged.status_code == 401
        authorized = {**MCP_HEADERS, "Authorization": f"Bearer {ANA}"}
        foreign_origin = await http.post("/mcp", json=INITIALIZE, headers={**authorized, "Origin": "https://evil.example"})
        assert foreign_origin.status_code == 403
        foreign_host = await http.post("/mcp", json=INITIALIZE, headers={**authorized, "Host": "evil.example"})
        assert foreign_host.status_code == 421
        local_origin = await http.post("/mcp", json=INITIALIZE, headers={**authorized, "Origin": base})
        assert local_origin.status_code == 200


async def test_the_demo_flow_over_http_as_the_tokens_actor(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as base, http_session(base, ANA) as ana:
        started = await call(ana, "start_flow", flow="full-sdlc")
        assert started["started_by"] == "ana"
        assert started["url"] == f"{base}/runs/{started['id']}"
        paused = await wait(ana, started["id"])
        assert paused["checkpoint"]["message"] == "Sign off before the PR opens."
        await call(ana, "decide_checkpoint", run_id=started["id"], decision="approve", step="Create PR")
        done = await wait(ana, started["id"], until="finished")
        assert done["status"] == "completed"
        assert done["steps"][3]["decision"]["actor"] == "ana"


async def test_scopes_are_enforced_per_token(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as base:
        async with http_session(base, ANA) as ana:
            run = (await call(ana, "start_flow", flow="full-sdlc"))["id"]
            await wait(ana, run)
        async with http_session(base, READER) as reader:
            assert (await call(reader, "get_run", run_id=run))["status"] == "paused"
            assert (await call(reader, "list_runs"))["count"] == 1
            denied = await refusal(reader, "decide_checkpoint", run_id=run, decision="approve")
            assert "reader may not decide a checkpoint: that needs the flows.run scope" in denied
            assert "(code: permission_denied)" in denied
            assert "flows.run" in await refusal(reader, "start_flow", flow="full-sdlc")
            assert "may not cancel" in await refusal(reader, "cancel_run", run_id=run)
        async with http_session(base, NOBODY) as nobody:
            assert "needs the flows.read scope" in await refusal(nobody, "get_run", run_id=run)
            assert "needs the flows.read scope" in await refusal(nobody, "list_flows")
        async with http_session(base, STRANGER) as stranger:  # another workspace: the run does not exist
            assert "(code: not_found)" in await refusal(stranger, "get_run", run_id=run)
            assert (await call(stranger, "list_runs"))["count"] == 0
        async with http_session(base, BOB) as bob:  # flows.run cancels only your own runs
            assert "needs the flows.cancel.any scope" in await refusal(bob, "cancel_run", run_id=run)
        async with http_session(base, OPS) as ops:
            assert (await call(ops, "cancel_run", run_id=run))["status"] == "cancelled"
        async with http_session(base, ANA) as ana:  # nothing was lost along the way
            cancelled = await call(ana, "get_run", run_id=run)
            assert cancelled["status"] == "cancelled" and cancelled["next_actions"] == ["resume_run"]


async def test_cancel_resume_retry_and_blocked_runs(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as base, http_session(base, ANA) as ana:
        slow = await call(ana, "start_flow", flow="slow")
        changed = await call(ana, "wait_for_run", run_id=slow["id"], until="any_change", after_seq=0, timeout_s=10)
        assert changed["reached"]
        cancelled = await call(ana, "cancel_run", run_id=slow["id"])
        assert cancelled["status"] == "cancelled" and "resume_run" in cancelled["hint"]
        resumed = await call(ana, "resume_run", run_id=slow["id"])
        assert resumed["status"] in ("pending", "running")
        timed_out = await call(ana, "wait_for_run", run_id=slow["id"], until="finished", timeout_s=0.5)
        assert (timed_out["reached"], timed_out["timed_out"]) == (False, True)
        assert timed_out["run"]["status"] == "running"
        await call(ana, "cancel_run", run_id=slow["id"])

        flaky = await call(ana, "start_flow", flow="flaky")
        failed = await wait(ana, flaky["id"], until="finished")
        assert failed["status"] == "failed" and failed["next_actions"] == ["retry_run"]
        assert "The tests fail." in failed["error"]
        retried = await call(ana, "retry_run", run_id=flaky["id"])
        assert retried["id"] == flaky["id"]
        assert (await wait(ana, flaky["id"], until="finished"))["status"] == "failed"
        clone = await call(ana, "retry_run", run_id=flaky["id"], clone=True)
        assert clone["id"] != flaky["id"] and clone["retry_of"] == flaky["id"]
        assert (await call(ana, "get_run", run_id=flaky["id"]))["retried_as"] == [clone["id"]]

        stuck = await call(ana, "start_flow", flow="stuck")
        blocked = await wait(ana, stuck["id"])
        assert blocked["status"] == "blocked" and blocked["next_actions"] == ["resume_run"]
        assert blocked["blocked"]["cause"] == "step_reported_blocked"
        assert "deploy key" in blocked["hint"]
        assert (await call(ana, "resume_run", run_id=stuck["id"]))["status"] in ("pending", "running")
        assert (await wait(ana, stuck["id"]))["status"] == "blocked"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_flowrun_serve_writes_a_token_on_first_start_and_serves_mcp(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = _free_port()
    command = [str(FLOWRUN), "--debug", "serve", "--port", str(port)]
    process = await anyio.open_process(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        seen = ""
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
                if "Application startup complete" in seen:
                    break
        assert f"flowrun serving on http://127.0.0.1:{port}" in seen
        tokens = Path(env["FLOWRUN_HOME"]) / "tokens"
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
        token = next(line for line in tokens.read_text().splitlines() if not line.startswith("#")).split("=")[0]
        base = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{base}/healthz")).status_code == 200
            assert (await http.post(f"{base}/mcp", json=INITIALIZE, headers=MCP_HEADERS)).status_code == 401
        # the one-time login link it printed logs a browser in (a session cookie), once
        link = next(word for word in seen.split() if word.startswith(f"{base}/login?token="))
        async with httpx2.AsyncClient(timeout=10, follow_redirects=False) as browser:
            login = await browser.get(link)
            assert login.status_code == 303 and "flowrun_session=" in login.headers["set-cookie"]
            assert (await browser.get(f"{base}/api/flows")).status_code == 200
            assert (await browser.get(link)).status_code == 401
        async with http_session(base, token) as operator:
            flows = await call(operator, "list_flows")
            assert "full-sdlc" in {f["id"] for f in flows["flows"]}
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            await process.wait()
        await process.aclose()


async def test_the_stateless_2026_protocol_over_http_carries_the_tokens_actor(tmp_path: Path) -> None:
    async def person(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        return ElicitResult(action="accept", content={"decision": "approve"})

    async with served(environment(tmp_path)) as base:
        for token, allowed in ((ANA, True), (READER, False)):
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                transport = streamable_http_client(f"{base}/mcp", http_client=http)
                with anyio.fail_after(60):
                    async with Client(transport, mode="auto", elicitation_callback=person) as client:
                        assert client.session.discover_result is not None
                        started = await client.call_tool("start_flow", {"flow": "full-sdlc"})
                        if not allowed:
                            assert started.is_error and "needs the flows.run scope" in str(started.content)
                            continue
                        assert started.structured_content is not None
                        run_id = started.structured_content["id"]
                        await client.call_tool("wait_for_run", {"run_id": run_id, "timeout_s": 20})
                        decided = await client.call_tool("decide_checkpoint", {"run_id": run_id})
                        assert decided.structured_content is not None
                        assert decided.structured_content["steps"][3]["decision"]["actor"] == "ana"
