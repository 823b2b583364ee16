"""Chat benchmarks (issue 11): figures, not pass/fail. Run: .venv/bin/python scripts/bench_chat.py

The engine and chat service on a temp home (SQLite, no-op sandbox), a person's messages posted
through `ChatService.post`, a subscriber on the chat's log (what the websocket relays). The model
is an instant one: it yields its first token the moment it is asked, and the time it is asked is
recorded, so its own time is excluded.

- first token: `post()` called -> the first `chat_delta` of the reply seen by the subscriber,
  minus nothing (the model takes ~0): the durable commit of the message, waking the agent, the
  conversation record, the delta's commit and its delivery (target <= 20 ms).
- run visible: the model yields its `start_flow` call -> the `chat_run` event (the overlay mounts
  on it) seen by the subscriber: the MCP round trip, the engine's start, the link (target <= 100 ms).
- over the wire: `flowrun serve`'s app under uvicorn; `POST /api/chats/{id}/messages` with
  `/run tiny` -> the `chat_run` event on a `/ws` client subscribed to the chat, then the run's
  `/runs/{id}/progress`-equivalent `GET /api/runs/{id}` answered (what the overlay fetches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowrun.chat import ChatService
from flowrun.config import Settings, open_engine
from flowrun.flows.chat import ChatDelta, ChatMessage, ChatRole, ChatRunLinked
from flowrun.flows.run import Usage
from flowrun.llm.base import (
    Message,
    ModelRequest,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    ToolUseStarted,
    TurnComplete,
)
from flowrun.runtime.access import Actor
from tests.chat.chatkit import environment

ANA = Actor("bench")


class Instant:
    """Answers at once; `/start` makes it call start_flow. Records when each call was made."""

    name = "instant"

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.tool_at: list[float] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.asked.append(time.perf_counter())
        last = request.messages[-1]
        said = " ".join(b.text for b in last.content if isinstance(b, TextBlock))
        if said.startswith("start"):
            self.tool_at.append(time.perf_counter())
            call = ToolUseBlock(id=f"toolu_{len(self.tool_at)}", name="start_flow",
                                input={"flow": "tiny", "checkpoint_mode": "none"})
            yield ToolUseStarted(index=0, id=call.id, name=call.name)
            yield TurnComplete(message=Message(role="assistant", content=[call]), usage=Usage(turns=1),
                               stop_reason="tool_use")
            return
        yield TextDelta(index=0, text="Sure")
        yield TextDelta(index=0, text=", done.")
        yield TurnComplete(message=Message(role="assistant", content=[TextBlock(text="Sure, done.")]),
                           usage=Usage(turns=1))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p90_ms": round(pct(ms, 0.9), 2),
            "p99_ms": round(pct(ms, 0.99), 2), "max_ms": round(max(ms), 2)}


async def _first_delta(chats: ChatService, chat_id: str, after: int, stamp: list[float], seen: anyio.Event) -> None:
    async for event in chats.subscribe(ANA, chat_id, after):
        if isinstance(event.data, ChatDelta):
            stamp.append(time.perf_counter())
            seen.set()
            return


async def bench(rounds: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    model = Instant()
    settings = Settings.from_env(environment(tmp))
    first_token: list[float] = []
    visible: list[float] = []
    async with open_engine(settings) as engine, \
            ChatService(engine, public_url=settings.public_url, model="instant",
                        provider_for=lambda _: model) as chats:
        chat = await chats.create(ANA)
        await chats.post(ANA, chat.id, "warm up")
        await chats.wait_idle(chat.id)
        for _ in range(rounds):
            before = (await chats.get(ANA, chat.id)).last_seq
            seen = anyio.Event()
            stamp: list[float] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_first_delta, chats, chat.id, before, stamp, seen)
                start = time.perf_counter()
                await chats.post(ANA, chat.id, "hello")
                with anyio.fail_after(10):
                    await seen.wait()
                first_token.append(stamp[0] - start)
            await chats.wait_idle(chat.id)
        for _ in range(max(3, rounds // 5)):
            before = (await chats.get(ANA, chat.id)).last_seq
            await chats.post(ANA, chat.id, "start a tiny run")
            with anyio.fail_after(20):
                async for event in chats.subscribe(ANA, chat.id, before):
                    if isinstance(event.data, ChatRunLinked):
                        visible.append(time.perf_counter() - model.tool_at[-1])
                        break
            await chats.wait_idle(chat.id)
            await engine.idle(30)
        replies = [e.data for e in await chats.events(ANA, chat.id)
                   if isinstance(e.data, ChatMessage) and e.data.role is ChatRole.ASSISTANT]
        assert all(r.status.value == "complete" for r in replies)
    return {"message -> first streamed token (model excluded), target <= 20 ms": summary(first_token),
            "start_flow -> run linked in the chat (overlay mounts), target <= 100 ms": summary(visible)}


async def bench_wire(rounds: int) -> dict[str, Any]:
    from flowrun.web.protocol import EventMessage
    from tests.web.webkit import ANA as TOKEN
    from tests.web.webkit import served

    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-wire-"))
    linked: list[float] = []
    visible: list[float] = []
    async with served(environment(tmp)) as s, s.http(TOKEN) as http, s.ws(TOKEN) as ws:
        chat = (await http.post("/api/chats", json={})).json()
        await ws.subscribe(chat_id=chat["id"])
        for _ in range(rounds):
            start = time.perf_counter()
            await http.post(f"/api/chats/{chat['id']}/messages", json={"text": "/run tiny"})
            with anyio.fail_after(20):
                while True:
                    message = await ws.receive()
                    if isinstance(message, EventMessage) and message.event["data"]["type"] == "chat_run":
                        run_id = message.event["data"]["run_id"]
                        break
            linked.append(time.perf_counter() - start)
            assert (await http.get(f"/api/runs/{run_id}")).status_code == 200
            visible.append(time.perf_counter() - start)
            await http.post(f"/api/runs/{run_id}/cancel")
            await ws.subscribe(run_id)  # the next round starts on a quiet server
            with anyio.fail_after(20):
                while True:
                    message = await ws.receive()
                    if not isinstance(message, EventMessage) or message.run_id != run_id:
                        continue
                    data = message.event["data"]
                    if data.get("type") == "run_status" and data.get("status") in ("cancelled", "paused", "completed"):
                        break
            await ws.unsubscribe(run_id)
    return {"POST /run tiny -> chat_run on /ws (no model), target <= 100 ms": summary(linked),
            "POST /run tiny -> chat_run on /ws + the run fetched (no model), target <= 100 ms": summary(visible)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    figures = anyio.run(bench, args.rounds)
    figures.update(anyio.run(bench_wire, max(5, args.rounds // 5)))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
