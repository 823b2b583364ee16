"""Chats over HTTP and `/ws`: the JSON API (create, list, read, post; refusals), chats in
Sessions beside runs, and `subscribe {chat_id, after_seq}` replaying then streaming a chat's log
exactly like a run's, through the real app under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.web.client import ClientError
from flowrun.web.protocol import EventMessage

from ..web.webkit import BOB, READER, WAIT_S, Served, served
from .chatkit import environment

pytestmark = pytest.mark.anyio


async def _until(client: Any, chat_id: str, match: Any) -> list[dict[str, Any]]:
    """Event data of the chat until one matches (bounded)."""
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(WAIT_S):
        while True:
            message = await client.receive()
            if isinstance(message, EventMessage) and message.run_id == chat_id:
                seen.append(message.event["data"])
                if match(message.event["data"]):
                    return seen


async def test_a_chat_over_the_api_and_the_websocket(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        await _chat_round_trip(s)


async def _chat_round_trip(s: Served) -> None:
    async with s.http() as http, s.ws() as ws:
        created = await http.post("/api/chats", json={})
        assert created.status_code == 201, created.text
        chat = created.json()
        assert chat["title"] == "New chat" and chat["url"].endswith(f"/chats/{chat['id']}")
        ack = await ws.subscribe(chat_id=chat["id"], after_seq=0)
        assert ack.chat_id == chat["id"] and ack.last_seq == 0

        posted = await http.post(f"/api/chats/{chat['id']}/messages", json={"text": "/run tiny goal=x"})
        assert posted.status_code == 202, posted.text
        assert posted.json()["role"] == "user" and posted.json()["seq"] == 1
        seen = await _until(ws, chat["id"], lambda d: d["type"] == "chat_message" and d["role"] == "assistant")
        assert [d["type"] for d in seen][:1] == ["chat_message"]
        assert any(d["type"] == "chat_delta" for d in seen) and any(d["type"] == "chat_run" for d in seen)
        await _until(ws, chat["id"], lambda d: d.get("note") == "checkpoint")

        detail = (await http.get(f"/api/chats/{chat['id']}")).json()
        assert detail["chat"]["title"] == "/run tiny goal=x"
        assert [m["role"] for m in detail["messages"]][:2] == ["user", "assistant"]
        run_id = detail["runs"][0]["run_id"]
        assert detail["messages"][1]["tools"][0]["tool"] == "start_flow"

        # a decision taken elsewhere (the runs API) reaches the chat as a note
        decided = await http.post(f"/api/runs/{run_id}/decide", json={"decision": "approve", "comment": "fine"})
        assert decided.status_code == 200, decided.text
        await _until(ws, chat["id"], lambda d: d.get("note") == "decision" and "fine" in d["text"])

        sessions = (await http.get("/api/sessions")).json()["sessions"]
        kinds = {(v["kind"], v["id"]) for v in sessions}
        assert ("chat", chat["id"]) in kinds and ("run", run_id) in kinds
        page = await http.get("/sessions")  # the Sessions page lists the chat beside its run
        assert page.status_code == 200
        assert f'href="/chats/{chat["id"]}"' in page.text and f'href="/runs/{run_id}"' in page.text
        mine = (await http.get("/api/chats")).json()["chats"]
        assert [c["id"] for c in mine] == [chat["id"]]

        # a reconnecting client replays from its seq with no gap
        events = (await http.get(f"/api/chats/{chat['id']}/events", params={"after_seq": 3})).json()
        assert events["events"][0]["seq"] == 4

        # refusals
        empty = await http.post(f"/api/chats/{chat['id']}/messages", json={"text": " "})
        assert empty.status_code == 400 and empty.json()["code"] == "empty_message"
        long = await http.post(f"/api/chats/{chat['id']}/messages", json={"text": "x" * 16_001})
        assert long.status_code == 400 and long.json()["code"] == "message_too_long"
        missing = await http.post("/api/chats/chat_nope/messages", json={"text": "hi"})
        assert missing.status_code == 404
    async with s.http(BOB) as bob, s.ws(BOB) as bob_ws:
        theirs = await bob.get(f"/api/chats/{chat['id']}")
        assert theirs.status_code == 404 and "of yours" in theirs.json()["message"]
        assert (await bob.post(f"/api/chats/{chat['id']}/messages", json={"text": "hi"})).status_code == 404
        with pytest.raises(ClientError) as refused:
            await bob_ws.subscribe(chat_id=chat["id"])
        assert refused.value.code == "not_found"
        assert (await bob.get("/api/chats")).json()["chats"] == []
    async with s.http(READER) as reader:
        chat2 = (await reader.post("/api/chats", json={})).json()
        posted = await reader.post(f"/api/chats/{chat2['id']}/messages", json={"text": "/run tiny"})
        assert posted.status_code == 202
        with anyio.fail_after(WAIT_S):
            while True:
                detail = (await reader.get(f"/api/chats/{chat2['id']}")).json()
                replies = [m for m in detail["messages"] if m["role"] == "assistant" and not m["streaming"]]
                if replies:
                    break
                await anyio.sleep(0.05)
        assert "needs the flows.run scope" in replies[0]["text"]


async def test_new_chat_is_a_form_post_that_needs_this_sites_origin(tmp_path: Path) -> None:
    """With the session cookie, `POST /chats` from another site (or with no Origin) creates
    nothing: the API's CSRF rule holds for the page's form too."""
    from flowrun.runtime.access import LOCAL_OPERATOR

    async with served(environment(tmp_path)) as s:
        link = s.app.state.web_auth.login_url(LOCAL_OPERATOR)
        async with s.http(None, follow_redirects=False) as browser:
            assert (await browser.get(link.removeprefix(s.base))).status_code == 303
            for headers in ({"origin": "https://evil.example"}, {}):
                forged = await browser.post("/chats", headers=headers)
                assert forged.status_code == 403 and "nothing was changed" in forged.text
            assert (await browser.get("/api/chats")).json()["chats"] == []
            made = await browser.post("/chats", headers={"origin": s.base})
            assert made.status_code == 303 and made.headers["location"].startswith("/chats/")
            assert len((await browser.get("/api/chats")).json()["chats"]) == 1
