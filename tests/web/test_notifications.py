"""Notifications in the web: the `/ws` `notifications` topic (the unread count, then each new one,
only about runs the person may see), read state per person through the API, and the
Notifications page (newest first, linking its run, escaped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.config import ensure_demo_remote
from flowrun.web.client import Client
from flowrun.web.protocol import NotificationMessage

from .pagekit import environment
from .test_pages import no_active_markup
from .webkit import ANA, BOB, NOBODY, STRANGER, WAIT_S, refusal, served

pytestmark = pytest.mark.anyio


async def next_note(client: Client) -> NotificationMessage:
    with anyio.fail_after(WAIT_S):
        while True:
            message = await client.receive()
            if isinstance(message, NotificationMessage):
                return message


async def test_the_notifications_topic_reads_and_the_page(tmp_path: Path) -> None:
    env = environment(tmp_path)
    async with served(env) as app, app.ws(ANA) as ana, app.ws(BOB) as bob, app.ws(STRANGER) as stranger, \
            app.ws(NOBODY) as nobody, app.http(ANA) as http, app.http(BOB) as bob_http:
        ensure_demo_remote(app.settings.home)
        for client in (ana, bob, stranger):
            ack = await client.subscribe(topic="notifications")
            assert (ack.op, ack.topic) == ("subscribe", "notifications")
            first = await next_note(client)
            assert (first.unread, first.notification) == (0, None)  # the count first, no popup
        assert (await refusal(nobody, nobody.subscribe(topic="notifications"))).code == "permission_denied"
        assert (await refusal(ana, ana.subscribe(topic="notifications"))).code == "already_subscribed"

        started = await http.post("/api/runs", json={
            "flow_id": "full-sdlc", "execution_mode": "background", "checkpoint_mode": "every",
            "params": {"goal": "Add a <script>alert(1)</script> CSV export"}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        for client in (ana, bob):  # a background run waiting for review notifies everyone who may see it
            message = await next_note(client)
            note = message.notification
            assert note is not None and message.unread == 1
            assert (note.run_id, note.status.value, note.read) == (run_id, "paused", False)
            assert "waiting for you" in note.title and "background run waiting for review" in note.title

        # read state is per person: ana reads it, bob still has it unread
        box: dict[str, Any] = (await http.get("/api/notifications")).json()
        assert box["unread"] == 1 and [n["run_id"] for n in box["notifications"]] == [run_id]
        note_id = box["notifications"][0]["id"]
        read = await http.post("/api/notifications/read", json={"ids": [note_id, "note_of_someone_else"]})
        assert read.status_code == 200 and read.json()["unread"] == 0
        assert read.json()["notifications"][0]["read"] is True
        assert (await next_note(ana)).unread == 0  # ana's other tabs learn it (only the count)
        assert (await bob_http.get("/api/notifications")).json()["unread"] == 1
        async with app.http(STRANGER) as strange:  # another workspace: nothing of it, even by id
            assert (await strange.get("/api/notifications")).json() == {"notifications": [], "unread": 0}
            assert (await strange.post("/api/notifications/read", json={"all": True})).json()["unread"] == 0
        assert (await bob_http.post("/api/notifications/read", json={"ids": "x"})).status_code == 422
        foreign = await bob_http.post("/api/notifications/read", json={"all": True}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        async with app.http(NOBODY) as no_read:
            assert (await no_read.get("/api/notifications")).status_code == 403

        # the page: newest first, linking the run, escaped, a Mark read button while unread
        page = await bob_http.get("/notifications")
        assert page.status_code == 200
        html = page.text
        no_active_markup(html)
        assert '<script type="module" src="/static/notify.js">' in html and 'id="unread-badge"' in html
        assert 'aria-current="page">Notifications' in html and "Enable desktop notifications" in html
        assert f'href="/runs/{run_id}" class="note-title">' in html and f'data-mark="{note_id}"' in html
        assert "<script>alert(1)</script>" not in html
        part = (await bob_http.get("/notifications", params={"part": "list"})).json()
        assert part["unread"] == 1 and part["regions"][0]["id"] == "notifications"
        assert (await bob_http.post("/api/notifications/read", json={"all": True})).json()["unread"] == 0
        html = (await bob_http.get("/notifications")).text
        assert "data-mark=" not in html and 'class="note unread"' not in html

        # nothing reached the other workspace's socket
        with anyio.move_on_after(1.5):
            message = await stranger.receive()
            raise AssertionError(f"the stranger got {message!r}")
        assert (await stranger.unsubscribe(topic="notifications")).topic == "notifications"
        await http.post(f"/api/runs/{run_id}/cancel")
