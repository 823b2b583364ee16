"""`/ws` over a real socket (uvicorn's `websockets` implementation): replay then live with no
gap and no duplicate (also for events another process commits), reconnect from a seq,
malformed, unknown and oversized messages, foreign Origin, scopes, auth, concurrent decisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flowrun.web.client import Client, ClientError
from flowrun.web.models import SessionView, TaskView
from flowrun.web.protocol import MAX_MESSAGE_BYTES, Ack, Error, EventMessage, Pong

from .webkit import (
    ANA,
    BOB,
    NOBODY,
    READER,
    STRANGER,
    WAIT_S,
    Served,
    environment,
    events_until,
    served,
)

pytestmark = pytest.mark.anyio
WRITER = Path(__file__).with_name("writer_child.py")


async def _start(s: Served, flow: str = "full-sdlc", token: str = ANA) -> str:
    async with s.http(token) as http:
        response = await http.post("/api/runs", json={"flow_id": flow})
        assert response.status_code == 201, response.text
        run_id: str = response.json()["id"]
        return run_id


async def _until_status(client: Client, status: str) -> list[EventMessage]:
    got: list[EventMessage] = []
    with anyio.fail_after(WAIT_S):
        while True:
            message = await client.receive()
            if isinstance(message, EventMessage):
                got.append(message)
                data = message.event["data"]
                if data["type"] == "run_status" and data["status"] == status:
                    return got


def _gapless(messages: list[EventMessage], after: int) -> None:
    seqs = [m.seq for m in messages]
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), seqs


async def test_replay_then_live_without_gap_or_duplicate(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as live, s.ws() as late:
            ack = await live.subscribe(run, after_seq=0)
            assert (ack.op, ack.run_id) == ("subscribe", run)
            seen = await _until_status(live, "paused")
            _gapless(seen, 0)
            assert all(m.event["run_id"] == run and m.event["seq"] == m.seq for m in seen)
            # a late subscriber from the middle gets exactly the rest
            middle = seen[len(seen) // 2].seq
            late_ack = await late.subscribe(run, after_seq=middle)
            assert late_ack.status == "paused" and late_ack.last_seq is not None
            replayed = await events_until(late, late_ack.last_seq)
            _gapless(replayed, middle)
            seen += await events_until(live, late_ack.last_seq) if seen[-1].seq < late_ack.last_seq else []
            assert [m.event for m in replayed] == [m.event for m in seen if m.seq > middle]
            # then both go on live through the decision, with no gap across the switch
            decided = await live.decide(run, "approve", step="Create PR", comment="ship it")
            assert decided.status in ("running", "completed") and decided.run is not None
            rest = await _until_status(live, "completed")
            _gapless(seen + rest, 0)
            late_rest = await _until_status(late, "completed")
            assert [m.seq for m in late_rest] == [m.seq for m in rest]
            decision = next(m.event["data"] for m in rest if m.event["data"]["type"] == "decision")
            assert decision["decision"]["actor"] == "ana" and decision["decision"]["comment"] == "ship it"


async def test_what_queues_up_arrives_as_batches_that_clients_unpack_in_order(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as client:
            ack = await client.subscribe(run)
            seen = await _until_status(client, "paused")  # the Python client hands out batches' messages one by one
        _gapless(seen, 0)
        headers = {"Authorization": f"Bearer {ANA}"}
        async with connect(s.base.replace("http", "ws") + "/ws", additional_headers=headers, proxy=None,
                           compression=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "ref": "s", "run_id": run}))
            frames: list[dict[str, Any]] = []
            seqs: list[int] = []
            with anyio.fail_after(WAIT_S):
                while not seqs or seqs[-1] < seen[-1].seq:
                    frame = json.loads(await ws.recv())
                    frames.append(frame)
                    messages = frame["messages"] if frame["type"] == "batch" else [frame]
                    assert all(m["type"] != "batch" for m in messages)  # never nested
                    seqs += [m["seq"] for m in messages if m["type"] == "event"]
        assert frames[0]["type"] == "ack" and ack.last_seq is not None
        assert seqs == list(range(1, len(seqs) + 1)) and seqs[:len(seen)] == [m.seq for m in seen]
        # the replay is read a page at a time and queued at once: it leaves in far fewer frames
        assert any(f["type"] == "batch" for f in frames) and len(frames) < len(seqs)


async def test_events_committed_by_another_process_arrive_in_order(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as client:
            await client.subscribe(run, after_seq=0)
            before = await _until_status(client, "paused")
            count = 40
            result = await anyio.run_process(
                [sys.executable, str(WRITER), str(s.settings.db_path), run, str(count)],
                env={"PYTHONPATH": str(Path(__file__).parents[2])}, check=True, stderr=subprocess.PIPE,
            )
            assert result.stdout.decode().strip() == "done"
            async with s.http() as http:
                last_seq = (await http.get(f"/api/runs/{run}")).json()["last_seq"]
            later = await events_until(client, last_seq)
            _gapless(before + later, 0)
            texts = [m.event["data"].get("text") for m in later if m.event["data"]["type"] == "transcript"]
            assert texts[-count:] == [f"from afar {n}" for n in range(count)]


async def test_reconnect_from_a_seq_and_the_follow_client(tmp_path: Path) -> None:
    from flowrun.web.client import follow

    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as first:
            await first.subscribe(run)
            seen = await _until_status(first, "paused")
        cut = seen[10].seq
        async with s.ws() as again:
            await again.subscribe(run, after_seq=cut)
            resumed = await events_until(again, seen[-1].seq)
        assert [m.seq for m in resumed] == [m.seq for m in seen if m.seq > cut]
        followed = []
        with anyio.fail_after(WAIT_S):
            async for event in follow(s.base, run, token=ANA, after_seq=cut):
                followed.append(event.seq)
                if event.seq == seen[-1].seq:
                    break
        assert followed == [m.seq for m in resumed]


async def test_malformed_unknown_and_oversized_messages_get_errors_and_the_socket_survives(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        headers = {"Authorization": f"Bearer {ANA}"}
        async with connect(s.base.replace("http", "ws") + "/ws", additional_headers=headers, proxy=None,
                           compression=None) as ws:
            async def answer(raw: str | bytes) -> dict[str, Any]:
                await ws.send(raw)
                with anyio.fail_after(WAIT_S):
                    reply: dict[str, Any] = json.loads(await ws.recv())
                return reply

            assert (await answer("not json"))["code"] == "invalid_message"
            assert (await answer("[1, 2]"))["code"] == "invalid_message"
            unknown = await answer(json.dumps({"type": "launch_missiles", "ref": 7}))
            assert (unknown["type"], unknown["code"], unknown["ref"]) == ("error", "unknown_message", 7)
            bad = await answer(json.dumps({"type": "subscribe", "ref": "a", "run_id": "r", "after_seq": -1}))
            assert bad["code"] == "invalid_message" and "after_seq" in bad["message"] and bad["ref"] == "a"
            both = await answer(json.dumps({"type": "subscribe", "run_id": "r", "topic": "tasks"}))
            assert "exactly one of run_id, chat_id or topic" in both["message"]
            big = await answer(json.dumps({"type": "ping", "pad": "x" * (MAX_MESSAGE_BYTES + 1)}))
            assert big["code"] == "message_too_large"
            assert (await answer(b"\xff\xfe"))["code"] == "invalid_message"
            missing = await answer(json.dumps({"type": "subscribe", "ref": 1, "run_id": "run_nope"}))
            assert (missing["code"], missing["ref"]) == ("not_found", 1)
            pong = await answer(json.dumps({"type": "ping", "ref": "still-here"}))
            assert pong == {"type": "pong", "ref": "still-here"}


async def test_a_foreign_origin_never_gets_a_101(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        url = s.base.replace("http", "ws") + "/ws"
        headers = {"Authorization": f"Bearer {ANA}"}
        for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers, origin=origin, proxy=None):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403
            assert b"forbidden_origin" in (refused.value.response.body or b"")
        async with s.ws(origin=s.base) as client:  # the app's own origin is fine
            assert isinstance(await client.ping(), Pong)


async def test_auth_by_first_message_and_refusals(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws(token=None) as anonymous:
            assert isinstance(await anonymous.ping(), Pong)  # ping needs no identity
            early = await _refused(anonymous.subscribe(run))
            assert early.code == "unauthenticated"
            ack = await anonymous.authenticate(READER)
            assert ack.actor == "reader"
            assert (await anonymous.subscribe(run)).run_id == run
        async with s.ws(token=None) as forged:
            assert (await _refused(forged.authenticate("forged-token-0123456789"))).code == "unauthenticated"
            with pytest.raises(ClientError) as closed:
                await forged.ping()
            assert closed.value.code == "unauthenticated"
        with pytest.raises(ClientError) as handshake:  # a bad header is refused like a bad message
            async with s.ws(token="forged-token-0123456789") as client:
                await client.subscribe(run)
        assert handshake.value.code == "unauthenticated"


async def test_scopes_are_the_engines(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as ana:
            await ana.subscribe(run)
            await _until_status(ana, "paused")
        async with s.ws(READER) as reader:
            assert (await reader.subscribe(run)).run_id == run  # flows.read watches
            denied = await _refused(reader.decide(run, "approve"))
            assert denied.code == "permission_denied" and "flows.run" in denied.message
            assert (await reader.subscribe(topic="tasks")).topic == "tasks"
        async with s.ws(NOBODY) as nobody:
            refused = await _refused(nobody.subscribe(run))
            assert refused.code == "permission_denied" and "flows.read" in refused.message
            assert (await _refused(nobody.subscribe(topic="sessions"))).code == "permission_denied"
        async with s.ws(STRANGER) as stranger:  # another workspace: the run does not exist
            assert (await _refused(stranger.subscribe(run))).code == "not_found"
            assert (await _refused(stranger.decide(run, "approve"))).code == "not_found"


async def test_two_tabs_deciding_at_once_get_one_ack_and_one_already_decided(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as ana, s.ws(BOB) as bob:
            await ana.subscribe(run)
            await _until_status(ana, "paused")
            results: list[Ack | ClientError] = []

            async def decide(client: Client, kind: str) -> None:
                try:
                    results.append(await client.decide(run, kind, step="Create PR"))
                except ClientError as exc:
                    results.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(decide, ana, "approve")
                tg.start_soon(decide, bob, "reject")
            acks = [r for r in results if isinstance(r, Ack)]
            refusals = [r for r in results if isinstance(r, ClientError)]
            assert len(acks) == 1 and len(refusals) == 1, results
            assert refusals[0].code == "already_decided"
            first = "ana" if acks[0].status in ("running", "completed") else "bob"
            assert first in refusals[0].message or first in json.dumps(refusals[0].details)


async def test_a_slow_consumer_is_closed_and_resumes_from_its_last_seq(tmp_path: Path) -> None:
    from flowrun.web import hub

    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as watcher:
            await watcher.subscribe(run)
            seen = await _until_status(watcher, "paused")
        limit = hub.OUTBOX_LIMIT
        hub_obj = s.app.state.web.hub
        url = s.base.replace("http", "ws") + "/ws"
        headers = {"Authorization": f"Bearer {ANA}"}
        # a client that subscribes and never reads; the server's queue for it is bounded
        async with connect(url, additional_headers=headers, proxy=None, compression=None, max_queue=1) as stuck:
            await stuck.send(json.dumps({"type": "subscribe", "run_id": run, "after_seq": seen[-1].seq}))
            with anyio.fail_after(WAIT_S):
                while hub_obj.stats()["listeners"] == 0:
                    await hub_obj.changed()
                listener = next(iter(hub_obj.feeds[run].listeners))
                await listener.live.wait()
            for n in range(limit * 2):  # floods its feed, as a run streaming fast would
                listener.deliver(seen[-1].seq + 1 + n, json.dumps({"type": "pong", "ref": n}))
            with anyio.fail_after(WAIT_S), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await stuck.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
            assert "slow consumer" in closed.value.rcvd.reason
        with anyio.fail_after(WAIT_S):
            while hub_obj.stats()["listeners"]:
                await hub_obj.changed()
        async with s.ws() as again:  # it comes back from its last seq
            await again.subscribe(run, after_seq=seen[5].seq)
            assert [m.seq for m in await events_until(again, seen[-1].seq)] == [m.seq for m in seen[6:]]


async def test_topics_send_rows_and_follow_changes(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        first = await _start(s)
        async with s.ws() as client:
            ack = await client.subscribe(topic="sessions")
            assert ack.topic == "sessions"
            second = await _start(s, "flaky")
            statuses: dict[str, str] = {}
            with anyio.fail_after(WAIT_S):
                while statuses.get(second) != "failed" or first not in statuses:
                    message = await client.receive()
                    if isinstance(message, EventMessage) and message.topic == "sessions":
                        row = SessionView.model_validate(message.event)
                        assert row.id == message.run_id and row.url.endswith(f"/runs/{row.id}")
                        statuses[row.id] = row.status.value if row.status is not None else ""
            assert (await client.unsubscribe(topic="sessions")).topic == "sessions"
            assert (await _refused(client.unsubscribe(topic="sessions"))).code == "not_subscribed"

            await client.subscribe(topic="tasks")
            async with s.http() as http:
                background = (await http.post("/api/runs", json={"flow_id": "flaky",
                                                                  "execution_mode": "background"})).json()["id"]
            with anyio.fail_after(WAIT_S):
                while True:
                    message = await client.receive()
                    if isinstance(message, EventMessage) and message.topic == "tasks":
                        task = TaskView.model_validate(message.event)
                        assert task.run_id != first  # interactive runs are no background tasks
                        if task.run_id == background and task.state == "stopped":
                            break


async def _refused(coro: Any) -> ClientError:
    try:
        await coro
    except ClientError as exc:
        return exc
    raise AssertionError("expected a refusal")


def test_error_messages_parse() -> None:
    error = Error(code="x", message="y", run_id="r")
    assert error.model_extra == {"run_id": "r"}


async def test_follow_reconnects_from_its_last_seq_after_the_server_drops_it(tmp_path: Path) -> None:
    from flowrun.web.client import follow

    async with served(environment(tmp_path)) as s:
        run = await _start(s)
        async with s.ws() as watcher:
            await watcher.subscribe(run)
            seen = await _until_status(watcher, "paused")
        hub_obj = s.app.state.web.hub
        drops: list[tuple[int, str]] = []
        followed: list[int] = []
        with anyio.fail_after(WAIT_S):
            async for event in follow(s.base, run, token=ANA, on_reconnect=lambda last, exc: drops.append((last, exc.code))):
                followed.append(event.seq)
                if event.seq == seen[10].seq:  # the server drops it, as it would a slow reader
                    for feed in hub_obj.feeds.values():
                        for listener in feed.listeners:
                            listener.outbox.mark_slow()
                if event.seq == seen[-1].seq:  # the run goes on meanwhile
                    async with s.http() as http:
                        await http.post(f"/api/runs/{run}/decide", json={"decision": "approve"})
                data = event.data
                if data.type == "run_status" and data.status == "completed":
                    break
        assert followed == list(range(1, followed[-1] + 1))  # no gap, no duplicate across the reconnect
        assert drops and drops[0][1] == "slow_consumer" and drops[0][0] >= seen[10].seq
