"""Malformed MCP requests over HTTP get JSON-RPC's own answers (issue 9 §5): -32600 Invalid
Request for a body that is not a JSON-RPC message (not -32602 with a validation dump), and a
message about the version for an `MCP-Protocol-Version` header nobody speaks (not one about
`_meta` envelope keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from flowrun.tools.jsonrpc_guard import invalid_request_reason

from .mcpkit import ANA, SESSION_TIMEOUT_S, environment, served

pytestmark = pytest.mark.anyio

HEADERS = {"Authorization": f"Bearer {ANA}", "Accept": "application/json, text/event-stream",
           "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}


@pytest.mark.parametrize(("body", "valid"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, True),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, True),
    ({"jsonrpc": "2.0", "id": "a", "result": {}}, True),
    ({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "no"}}, True),
    ({"jsonrpc": "2.0", "foo": 1}, False),
    ({"hello": "world"}, False),
    ({"jsonrpc": "2.0", "id": 5}, False),
    ({"jsonrpc": "2.0", "id": True, "method": "x"}, False),
    ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]}, False),
    ([INIT], False),
    (42, False),
])
def test_what_is_a_jsonrpc_message(body: Any, valid: bool) -> None:
    assert (invalid_request_reason(body) is None) == valid


async def test_bad_bodies_and_versions_get_short_jsonrpc_answers(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as base, \
            httpx2.AsyncClient(headers=HEADERS, timeout=SESSION_TIMEOUT_S) as http:
        url = f"{base}/mcp/"
        init = await http.post(url, json=INIT)
        assert init.status_code == 200
        session = {"mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        for body in ({"jsonrpc": "2.0", "foo": 1}, {"hello": "world"}, {"jsonrpc": "2.0", "id": 5}, [1, 2]):
            answer = await http.post(url, json=body, headers=session)
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert error["code"] == -32600, error
            assert error["message"].startswith("Invalid Request: ") and len(error["message"]) < 200
            assert "validation error" not in error["message"].lower()
        assert (await http.post(url, json={"jsonrpc": "2.0", "id": 5}, headers=session)).json()["id"] == 5
        for version in ("1999-01-01", "2099-12-31", "garbage"):
            answer = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                                     headers={**session, "mcp-protocol-version": version})
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert "MCP-Protocol-Version" in error["message"] and version in error["message"]
            assert "2025-11-25" in error["message"] and "_meta" not in error["message"]
            assert error["data"]["requested"] == version and "2026-07-28" in error["data"]["supported"]
        # good requests still go through, with the body the guard read
        tools = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=session)
        assert tools.status_code == 200
        frames = [line[5:] for line in tools.text.splitlines() if line.startswith("data:")]
        assert any("start_flow" in json.dumps(json.loads(f)) for f in frames if f.strip())
        # not JSON at all is still the SDK's -32700
        broken = await http.post(url, content=b"{not json", headers=session)
        assert broken.status_code == 400 and broken.json()["error"]["code"] == -32700
