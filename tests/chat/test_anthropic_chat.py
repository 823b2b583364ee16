"""A chat on the Anthropic provider, its HTTP mocked with respx in the real SSE wire format.

The mocked model reads each request like a model would: it starts the Flow when asked, answers
small talk while the run is going, relays the checkpoint note and turns "looks good, ship it"
into decide_checkpoint with those words as the comment."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from flowrun.flows.chat import ChatDelta, ChatMessage, ChatRole, ChatToolUsed, NoteKind, ReplyStatus
from flowrun.flows.enums import DecisionKind, LaunchKind, RunStatus, Scope
from flowrun.llm.anthropic import AnthropicProvider
from flowrun.runtime.access import Actor

from .chatkit import ANA, message, open_chats, reply_to, wait_for

pytestmark = pytest.mark.anyio
URL = "https://api.anthropic.com/v1/messages"
MODEL = "claude-sonnet-4-6"
READER = Actor(id="rita", scopes=frozenset({Scope.READ}))


def frame(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def turn(*blocks: dict[str, Any], stop: str) -> httpx.Response:
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 80, "output_tokens": 1}}}]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            for word in re.findall(r"\S+\s*", block["text"]):  # token by token
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": word}})
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        events.append({"type": "content_block_stop", "index": index})
    events += [{"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20}}, {"type": "message_stop"}]
    return httpx.Response(200, text="".join(frame(e) for e in events), headers={"content-type": "text/event-stream"})


def text(words: str) -> httpx.Response:
    return turn({"type": "text", "text": words}, stop="end_turn")


def tool(name: str, arguments: dict[str, Any], call_id: str, say: str = "") -> httpx.Response:
    blocks = ([{"type": "text", "text": say}] if say else []) + [
        {"type": "tool_use", "id": call_id, "name": name, "input": arguments}]
    return turn(*blocks, stop="tool_use")


class FakeClaude:
    """Answers each request from its last message, as a model would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        last = body["messages"][-1]
        blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        results = [b for b in blocks if b["type"] == "tool_result"]
        said = " ".join(b["text"] for b in blocks if b["type"] == "text")
        if results:
            content = results[-1]["content"]
            content = content if isinstance(content, str) else " ".join(c.get("text", "") for c in content)
            if results[-1].get("is_error"):
                return text(f"I could not do that: {content}")
            if '"flow_name"' in content and '"status": "pending"' in content or '"status": "running"' in content:
                run_id = json.loads(content)["id"]
                return text(f"Started the Tiny run {run_id}. It is running; ask me anything meanwhile.")
            return text("Recorded your decision; the run continues.")
        if "please run tiny" in said:
            return tool("start_flow", {"flow": "tiny", "params": {"goal": "a CSV export"}}, "toolu_start",
                        say="Starting it now.")
        if "waiting at a checkpoint" in said:
            return text("The run waits for your sign-off before it ships. Approve?")
        if "completed" in said and "[flowrun note" in said:
            return text("The run completed.")
        if "ship it" in said:
            run_id = re.findall(r"run_[0-9A-Z]{26}", json.dumps(body["messages"]))[0]
            return tool("decide_checkpoint", {"run_id": run_id, "decision": "approve", "comment": said.strip()},
                        "toolu_decide")
        if "weather" in said:
            return text("I only run Flows, but it looks sunny from here.")
        return text("Noted.")


@pytest.fixture
def claude() -> Iterator[tuple[FakeClaude, respx.MockRouter]]:
    fake = FakeClaude()
    with respx.mock(assert_all_mocked=True) as router:
        router.post(URL).mock(side_effect=fake)
        yield fake, router


@pytest.fixture
async def provider() -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(api_key="sk-ant-test-key-000000000000", max_retries=0)
    yield p
    await p.aclose()


async def test_a_chat_on_anthropic_starts_a_run_keeps_talking_and_decides_in_words(
        tmp_path: Path, claude: tuple[FakeClaude, respx.MockRouter], provider: AnthropicProvider) -> None:
    fake, _ = claude
    async with open_chats(tmp_path, model=MODEL, provider_for=lambda _: provider) as (engine, chats):
        chat = await chats.create(ANA)
        sent = await chats.post(ANA, chat.id, "please run tiny for a CSV export")
        started = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert isinstance(started.data, ChatMessage)
        assert started.data.text.startswith("Starting it now.\n\nStarted the Tiny run run_")
        pieces = [e.data.text for e in await chats.events(ANA, chat.id)
                  if isinstance(e.data, ChatDelta) and e.data.message_id == started.data.message_id]
        assert len(pieces) > 5 and "".join(pieces) == started.data.text  # streamed token by token
        run_id = re.findall(r"run_[0-9A-Z]{26}", started.data.text)[0]
        run = await engine.get_run(ANA, run_id)
        assert run.launch.kind is LaunchKind.CHAT and run.launch.ref == chat.id

        # the person keeps talking before the run finishes
        sent = await chats.post(ANA, chat.id, "what's the weather like?")
        small_talk = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "sunny" in small_talk.data.text  # type: ignore[union-attr]
        assert (await engine.get_run(ANA, run_id)).status is not RunStatus.COMPLETED

        checkpoint = await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT))
        relayed = await wait_for(chats, ANA, chat.id, reply_to(checkpoint.seq))
        assert "Approve?" in relayed.data.text  # type: ignore[union-attr]
        assert any("[flowrun note about run" in json.dumps(r["messages"][-1]) for r in fake.requests)

        sent = await chats.post(ANA, chat.id, "looks good, ship it")
        await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, "was approved by ana: “looks good, ship it”"))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.COMPLETED))
        run = await engine.get_run(ANA, run_id)
        decision = run.steps[1].decision
        assert run.status is RunStatus.COMPLETED and decision is not None
        assert (decision.kind, decision.comment, decision.actor) == (DecisionKind.APPROVE, "looks good, ship it", "ana")
        # the tool definitions the model saw are the MCP server's own
        tools = {t["name"] for t in fake.requests[0]["tools"]}
        assert {"start_flow", "decide_checkpoint", "get_run"} <= tools and "wait_for_run" not in tools


async def test_a_model_error_mid_reply_keeps_the_partial_text_and_tells_the_person(
        tmp_path: Path, provider: AnthropicProvider) -> None:
    start: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 80, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me think "}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
    broken = httpx.Response(200, text="".join(frame(e) for e in start), headers={"content-type": "text/event-stream"})
    with respx.mock(assert_all_mocked=True) as router:
        router.post(URL).mock(side_effect=[broken, text("Back again.")])
        async with open_chats(tmp_path, model=MODEL, provider_for=lambda _: provider) as (_, chats):
            chat = await chats.create(ANA)
            sent = await chats.post(ANA, chat.id, "hello")
            failed = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
            assert isinstance(failed.data, ChatMessage)
            assert failed.data.status is ReplyStatus.FAILED and failed.data.text == "Let me think "
            assert failed.data.error and "Overloaded" in failed.data.error
            told = await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, "The model failed while answering"))
            assert "kept above" in told.data.text  # type: ignore[union-attr]
            sent = await chats.post(ANA, chat.id, "hello again")
            again = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
            assert again.data.text == "Back again."  # type: ignore[union-attr]


async def test_a_tool_the_scopes_forbid_is_explained_in_words(
        tmp_path: Path, claude: tuple[FakeClaude, respx.MockRouter], provider: AnthropicProvider) -> None:
    fake, _ = claude
    async with open_chats(tmp_path, model=MODEL, provider_for=lambda _: provider) as (engine, chats):
        chat = await chats.create(READER)
        sent = await chats.post(READER, chat.id, "please run tiny")
        reply = await wait_for(chats, READER, chat.id, reply_to(sent.seq))
        assert isinstance(reply.data, ChatMessage)
        assert "I could not do that: rita may not start a run: that needs the flows.run scope" in reply.data.text
        used = [e.data for e in await chats.events(READER, chat.id) if isinstance(e.data, ChatToolUsed)]
        assert used[0].tool == "start_flow" and used[0].is_error
        assert await engine.list_runs(READER) == []
        sent = await chats.post(READER, chat.id, "what's the weather like?")
        assert "sunny" in (await wait_for(chats, READER, chat.id, reply_to(sent.seq))).data.text  # type: ignore[union-attr]
