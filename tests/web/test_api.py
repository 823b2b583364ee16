"""The JSON API: every route over a real socket, the typed refusals with their HTTP statuses,
Origin and auth, the OpenAPI document; and the whole face in-process (Starlette's TestClient)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from flowrun.config import Settings
from flowrun.server import create_app
from flowrun.tools.auth import TokenTable

from ..tools.mcpkit import TOKENS
from .webkit import ANA, BOB, NOBODY, OPS, READER, STRANGER, WAIT_S, Served, environment, served

pytestmark = pytest.mark.anyio


async def _wait_status(s: Served, run_id: str, *statuses: str, token: str = ANA) -> dict[str, Any]:
    async with s.http(token) as http:
        with anyio.fail_after(WAIT_S):
            while True:
                run: dict[str, Any] = (await http.get(f"/api/runs/{run_id}")).json()
                if run["status"] in statuses:
                    return run
                await anyio.sleep(0.05)


async def test_flows_runs_and_a_decision(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s, s.http() as http:
        flows = (await http.get("/api/flows")).json()["flows"]
        assert "full-sdlc" in [f["id"] for f in flows]
        one = await http.get("/api/flows/needs-ticket")
        assert one.status_code == 200 and one.json()["parameters"][0]["name"] == "ticket"
        assert (await http.get("/api/flows/nope")).json()["code"] == "not_found"

        started = await http.post("/api/runs", json={"flow_id": "full-sdlc", "execution_mode": "interactive",
                                                     "checkpoint_mode": "template"})
        assert started.status_code == 201
        run = started.json()
        assert run["url"] == f"{s.base}/runs/{run['id']}" and run["started_by"] == "ana"
        paused = await _wait_status(s, run["id"], "paused")
        assert paused["checkpoint"]["message"] == "Sign off before the PR opens."

        stale = await http.post(f"/api/runs/{run['id']}/decide", json={"decision": "approve", "step": 0})
        assert (stale.status_code, stale.json()["code"]) == (409, "stale_checkpoint")
        decided = await http.post(f"/api/runs/{run['id']}/decide",
                                  json={"decision": "approve", "step": "Create PR", "decision_id": "d-1",
                                        "expected_version": paused["version"], "comment": "ok"})
        assert decided.status_code == 200, decided.text
        again = await http.post(f"/api/runs/{run['id']}/decide",
                                json={"decision": "approve", "step": "Create PR", "decision_id": "d-1"})
        assert again.status_code == 200  # the same decision_id: the first answer stands
        second = await http.post(f"/api/runs/{run['id']}/decide", json={"decision": "reject", "step": "Create PR"})
        assert (second.status_code, second.json()["code"]) == (409, "already_decided")
        done = await _wait_status(s, run["id"], "completed")
        assert done["steps"][3]["decision"]["comment"] == "ok"
        with anyio.fail_after(WAIT_S):  # the end is recorded first, then the sandbox is destroyed
            while True:
                tail = (await http.get(f"/api/runs/{run['id']}/events", params={"after_seq": done["last_seq"] - 1})).json()
                if any(e["data"]["type"] == "sandbox" and e["data"]["sandbox"]["state"] == "destroyed"
                       for e in tail["events"]):
                    break
                await anyio.sleep(0.05)
            done = (await http.get(f"/api/runs/{run['id']}")).json()

        listed = (await http.get("/api/runs", params={"status": "completed,paused", "flow_id": "full-sdlc"})).json()
        assert [r["id"] for r in listed["runs"]] == [run["id"]] and listed["next_cursor"] is None
        with_tail = (await http.get(f"/api/runs/{run['id']}", params={"transcript_tail": 3})).json()
        assert len(with_tail["transcript"]) == 3

        page = (await http.get(f"/api/runs/{run['id']}/events", params={"after_seq": 0, "limit": 10})).json()
        assert [e["seq"] for e in page["events"]] == list(range(1, 11)) and page["has_more"]
        assert page["events"][0]["data"]["type"] == "run_created"
        rest = (await http.get(f"/api/runs/{run['id']}/events", params={"after_seq": page["last_seq"]})).json()
        assert rest["events"][0]["seq"] == 11 and not rest["has_more"]
        assert rest["last_seq"] == done["last_seq"]


async def test_paging_sessions_and_tasks(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s, s.http() as http:
        ids = []
        for _ in range(3):
            response = await http.post("/api/runs", json={"flow_id": "flaky", "execution_mode": "background"})
            ids.append(response.json()["id"])
        for run_id in ids:
            await _wait_status(s, run_id, "failed")
        first = (await http.get("/api/runs", params={"limit": 2})).json()
        assert [r["id"] for r in first["runs"]] == ids[::-1][:2] and first["next_cursor"] == ids[1]
        second = (await http.get("/api/runs", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [r["id"] for r in second["runs"]] == [ids[0]] and second["next_cursor"] is None
        sessions = (await http.get("/api/sessions", params={"limit": 2})).json()
        assert [x["id"] for x in sessions["sessions"]] == ids[::-1][:2]
        assert sessions["sessions"][0]["kind"] == "run" and sessions["sessions"][0]["who"] == "ana"
        tasks = (await http.get("/api/tasks")).json()["tasks"]
        assert {t["run_id"] for t in tasks} == set(ids)
        assert all(t["state"] == "stopped" and t["status"] == "failed" for t in tasks)
        assert (await http.get("/api/health-events")).json() == {"health_events": []}


async def test_steering_resume_retry_cancel(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s, s.http() as http:
        slow = (await http.post("/api/runs", json={"flow_id": "slow"})).json()
        await _wait_status(s, slow["id"], "running")
        async with s.http(BOB) as bob:  # flows.run cancels only your own runs
            refused = await bob.post(f"/api/runs/{slow['id']}/cancel")
            assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
        cancelled = await http.post(f"/api/runs/{slow['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        wrong = await http.post(f"/api/runs/{slow['id']}/retry", json={})
        assert (wrong.status_code, wrong.json()["code"]) == (409, "invalid_transition")
        resumed = await http.post(f"/api/runs/{slow['id']}/resume")
        assert resumed.json()["status"] in ("pending", "running")
        async with s.http(OPS) as ops:
            assert (await ops.post(f"/api/runs/{slow['id']}/cancel")).json()["status"] == "cancelled"

        flaky = (await http.post("/api/runs", json={"flow_id": "flaky"})).json()
        await _wait_status(s, flaky["id"], "failed")
        clone = await http.post(f"/api/runs/{flaky['id']}/retry", json={"clone": True})
        assert clone.json()["retry_of"] == flaky["id"]
        in_place = await http.post(f"/api/runs/{flaky['id']}/retry")
        assert in_place.status_code == 200 and in_place.json()["id"] == flaky["id"]


async def test_refusals_are_typed_with_their_status(tmp_path: Path) -> None:
    env = environment(tmp_path)
    (Path(env["FLOWRUN_PATH"]) / "profiles" / "gone.yaml").write_text(
        "name: gone\nbackend: noop\nrepositories: [{url: /nowhere/repo}]\n")
    async with served(env) as s, s.http() as http:
        missing = await http.post("/api/runs", json={"flow_id": "needs-ticket"})
        assert (missing.status_code, missing.json()["code"], missing.json()["missing"]) == \
            (422, "missing_parameters", ["ticket"])
        mistyped = await http.post("/api/runs", json={"flow_id": "needs-ticket", "params": {"ticket": "x"}})
        assert (mistyped.status_code, mistyped.json()["code"]) == (422, "invalid_parameters")
        invalid = await http.post("/api/runs", json={"flow_id": "full-sdlc", "execution_mode": "sideways"})
        assert (invalid.status_code, invalid.json()["code"]) == (422, "invalid_request")
        assert "execution_mode" in invalid.json()["message"]
        unknown_field = await http.post("/api/runs", json={"flow": "full-sdlc"})
        assert unknown_field.status_code == 422 and "flow_id" in unknown_field.json()["message"]
        not_json = await http.post("/api/runs", content=b"{nope", headers={"Content-Type": "application/json"})
        assert (not_json.status_code, not_json.json()["code"]) == (422, "invalid_request")
        assert (await http.get("/api/runs/run_nope")).status_code == 404
        bad_status = await http.get("/api/runs", params={"status": "sleeping"})
        assert bad_status.status_code == 422 and "sleeping" in bad_status.json()["message"]
        bad_limit = await http.get("/api/runs", params={"limit": "0"})
        assert bad_limit.status_code == 422 and "limit" in bad_limit.json()["message"]
        preflight = await http.post("/api/runs", json={"flow_id": "flaky", "sandbox_profile": "gone"})
        assert (preflight.status_code, preflight.json()["code"]) == (409, "preflight_failed")
        assert "/nowhere/repo" in preflight.json()["message"]

        async with s.http(READER) as reader:
            denied = await reader.post("/api/runs", json={"flow_id": "full-sdlc"})
            assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")
        async with s.http(NOBODY) as nobody:
            assert (await nobody.get("/api/runs")).status_code == 403
        async with s.http(STRANGER) as stranger:
            assert (await stranger.get("/api/runs")).json()["runs"] == []
        async with s.http(None) as anonymous:
            refused = await anonymous.get("/api/runs")
            assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
            assert refused.headers["www-authenticate"] == "Bearer"
        async with s.http("forged-token-0123456789") as forged:
            assert (await forged.get("/api/flows")).status_code == 401

        foreign = await http.post("/api/runs", json={"flow_id": "full-sdlc"}, headers={"Origin": "https://evil.example"})
        assert (foreign.status_code, foreign.json()["code"]) == (403, "forbidden_origin")
        local = await http.get("/api/flows", headers={"Origin": s.base})
        assert local.status_code == 200


async def test_the_daily_cap_is_429_with_retry_after(tmp_path: Path) -> None:
    async with served({**environment(tmp_path), "FLOWRUN_PLAN": "free"}) as s, s.http() as http:
        codes = []
        for _ in range(6):
            response = await http.post("/api/runs", json={"flow_id": "flaky"})
            codes.append(response.status_code)
        assert codes == [201] * 5 + [429]
        assert response.json()["code"] == "daily_cap_reached"
        assert 0 < int(response.headers["retry-after"]) <= 24 * 3600


async def test_login_link_sets_a_strict_cookie_once(tmp_path: Path) -> None:
    from flowrun.runtime.access import LOCAL_OPERATOR

    async with served(environment(tmp_path)) as s:
        link = s.app.state.web_auth.login_url(LOCAL_OPERATOR, next_path="/runs")
        async with s.http(None, follow_redirects=False) as browser:
            assert (await browser.get("/api/flows")).status_code == 401
            login = await browser.get(link.removeprefix(s.base))
            assert login.status_code == 303 and login.headers["location"] == "/runs"
            cookie = login.headers["set-cookie"]
            assert "flowrun_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert "Max-Age=" in cookie and "Path=/" in cookie
            assert (await browser.get("/api/flows")).status_code == 200  # the cookie speaks for the operator
            # a state change with the cookie needs an allowed Origin (CSRF); with it, it goes through
            refused = await browser.post("/api/runs", json={"flow_id": "flaky"})
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden_origin")
            started = await browser.post("/api/runs", json={"flow_id": "flaky"}, headers={"Origin": s.base})
            assert started.status_code == 201 and started.json()["started_by"] == "local"
            async with s.ws(token=None, origin=s.base) as ws:  # not from a browser: no cookie, so auth first
                assert (await ws.authenticate(READER)).actor == "reader"
            session = browser.cookies["flowrun_session"]
            async with connect(s.base.replace("http", "ws") + "/ws", origin=s.base,  # type: ignore[arg-type]
                               additional_headers={"Cookie": f"flowrun_session={session}"}, proxy=None) as ws:
                await ws.send(json.dumps({"type": "subscribe", "ref": 1, "run_id": started.json()["id"]}))
                ack = _first(await ws.recv())
                assert (ack["type"], ack["run_id"]) == ("ack", started.json()["id"])  # the cookie's actor
        async with s.http(None, follow_redirects=False) as other:
            reused = await other.get(link.removeprefix(s.base))
            assert (reused.status_code, reused.json()["code"]) == (401, "unauthenticated")
            escaped = await other.get(f"/login?token={ANA}&next=//evil.example")
            assert escaped.status_code == 303 and escaped.headers["location"] == "/"
            out = await other.post("/logout", headers={"Origin": s.base})
            assert out.status_code == 204
            assert (await other.get("/api/flows")).status_code == 401


async def test_browser_sessions_survive_a_restart_and_logout_stays_a_logout(tmp_path: Path) -> None:
    from flowrun.runtime.access import LOCAL_OPERATOR

    env = environment(tmp_path)

    async def login(s: Served, path: str) -> str:
        async with s.http(None, follow_redirects=False) as browser:
            response = await browser.get(path)
            assert response.status_code == 303, response.text
            cookie: str = browser.cookies["flowrun_session"]
            return cookie

    def as_browser(s: Served, cookie: str) -> Any:
        return httpx2.AsyncClient(base_url=s.base, timeout=WAIT_S,
                                  headers={"Cookie": f"flowrun_session={cookie}", "Origin": s.base})

    async with served(env) as s:
        operator = await login(s, s.app.state.web_auth.login_url(LOCAL_OPERATOR).removeprefix(s.base))
        with_token = await login(s, f"/login?token={READER}")
        leaving = await login(s, s.app.state.web_auth.login_url(LOCAL_OPERATOR).removeprefix(s.base))
        async with as_browser(s, leaving) as browser:
            assert (await browser.get("/api/flows")).status_code == 200
            assert (await browser.post("/logout")).status_code == 204
            assert (await browser.get("/api/flows")).status_code == 401
        table = s.settings.home / "web-sessions.json"
        assert table.stat().st_mode & 0o777 == 0o600
        assert all(secret not in table.read_text() for secret in (operator, with_token, leaving, READER))

    async with served(env) as s:  # a restart: the sessions are still there, the logout still holds
        async with as_browser(s, operator) as browser:
            assert (await browser.get("/api/flows")).status_code == 200
            started = await browser.post("/api/runs", json={"flow_id": "flaky"})
            assert started.status_code == 201 and started.json()["started_by"] == "local"
        async with as_browser(s, with_token) as browser:
            assert (await browser.get("/api/flows")).status_code == 200
            refused = await browser.post("/api/runs", json={"flow_id": "flaky"})  # the reader's scopes
            assert refused.status_code == 403
        async with as_browser(s, leaving) as browser:
            assert (await browser.get("/api/flows")).status_code == 401
        async with connect(s.base.replace("http", "ws") + "/ws", origin=s.base,  # type: ignore[arg-type]
                           additional_headers={"Cookie": f"flowrun_session={operator}"}, proxy=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "ref": 1, "run_id": started.json()["id"]}))
            assert _first(await ws.recv())["type"] == "ack"

    without_reader = {token: who for token, who in TOKENS.items() if token != READER}
    async with served(env, tokens=without_reader) as s:  # the token it came from is gone: so is the session
        async with as_browser(s, with_token) as browser:
            assert (await browser.get("/api/flows")).status_code == 401
        async with as_browser(s, operator) as browser:
            assert (await browser.get("/api/flows")).status_code == 200


async def test_openapi_document_names_every_route(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s, s.http(None) as http:
        doc = (await http.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        paths = doc["paths"]
        for path, method in (("/api/flows", "get"), ("/api/flows/{flow_id}", "get"), ("/api/runs", "post"),
                             ("/api/runs", "get"), ("/api/runs/{run_id}", "get"),
                             ("/api/runs/{run_id}/decide", "post"), ("/api/runs/{run_id}/resume", "post"),
                             ("/api/runs/{run_id}/retry", "post"), ("/api/runs/{run_id}/cancel", "post"),
                             ("/api/runs/{run_id}/events", "get"), ("/api/health-events", "get"),
                             ("/api/sessions", "get"), ("/api/tasks", "get")):
            assert method in paths[path], (path, method)
        start = paths["/api/runs"]["post"]
        assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/StartRequest")
        assert {"201", "409", "422", "429", "503"} <= set(start["responses"])
        schemas = doc["components"]["schemas"]
        assert {"RunView", "ErrorBody", "DecideRequest", "EventPage", "SessionPage", "TaskList"} <= set(schemas)
        refs = _refs(doc)
        assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)


def _first(raw: str | bytes) -> dict[str, Any]:
    """The first message of a frame (a `batch` carries several)."""
    frame: dict[str, Any] = json.loads(raw)
    first: dict[str, Any] = frame["messages"][0] if frame["type"] == "batch" else frame
    return first


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def test_in_process_api_and_websocket(tmp_path: Path) -> None:
    """The same app without a socket: Starlette's TestClient runs the lifespan and `/ws`."""
    settings = Settings.from_env({**environment(tmp_path), "FLOWRUN_PUBLIC_URL": "http://testserver"})
    tokens = TokenTable.parse([(f"{ANA}=ana:*", "test")])
    with TestClient(create_app(settings, tokens), headers={"Authorization": f"Bearer {ANA}"}) as client:
        run = client.post("/api/runs", json={"flow_id": "flaky"}).json()
        with client.websocket_connect("/ws") as ws:
            unpacked: list[dict[str, Any]] = []

            def receive() -> dict[str, Any]:  # a `batch` is its messages, one by one
                if not unpacked:
                    frame = ws.receive_json()
                    unpacked.extend(frame["messages"] if frame["type"] == "batch" else [frame])
                return unpacked.pop(0)

            ws.send_json({"type": "subscribe", "ref": 1, "run_id": run["id"]})
            ack = receive()
            assert (ack["type"], ack["ref"], ack["run_id"]) == ("ack", 1, run["id"])
            seqs = []
            while True:
                message = receive()
                assert message["type"] == "event"
                seqs.append(message["seq"])
                data = message["event"]["data"]
                if data["type"] == "run_status" and data["status"] == "failed":
                    break
            assert seqs == list(range(1, len(seqs) + 1))
            ws.send_json({"type": "nonsense", "ref": "n"})
            while (message := receive())["type"] == "event":
                assert message["seq"] == seqs[-1] + 1  # what followed the status change, in order
                seqs.append(message["seq"])
            assert (message["type"], message["code"], message["ref"]) == ("error", "unknown_message", "n")
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "failed"
