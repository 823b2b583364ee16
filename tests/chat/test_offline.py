"""The chat with no model: the offline chat model's demo conversation and the command grammar,
end to end through the chat's MCP session and the engine."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from flowrun.flows.chat import ChatRole, ChatRunLinked, ChatToolUsed, NoteKind
from flowrun.flows.enums import DecisionKind, LaunchKind, RunStatus
from flowrun.flows.errors import NotFound, UsageError

from .chatkit import ANA, message, messages, open_chats, reply_to, wait_for

pytestmark = pytest.mark.anyio


async def test_the_command_grammar_starts_decides_and_reports(tmp_path: Path) -> None:
    async with open_chats(tmp_path) as (engine, chats):
        chat = await chats.create(ANA)
        sent = await chats.post(ANA, chat.id, "/run tiny goal=\"a CSV export\"")
        started = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "Started **Tiny** as run `run_" in started.data.text  # type: ignore[union-attr]
        linked = await wait_for(chats, ANA, chat.id, lambda e: isinstance(e.data, ChatRunLinked))
        assert isinstance(linked.data, ChatRunLinked)
        run_id = linked.data.run_id
        run = await engine.get_run(ANA, run_id)
        assert run.launch.kind is LaunchKind.CHAT and run.launch.ref == chat.id
        assert run.params["goal"] == "a CSV export" and run.started_by == "ana"

        note = await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT))
        assert "Sign off before shipping." in note.data.text and run_id in note.data.text  # type: ignore[union-attr]

        sent = await chats.post(ANA, chat.id, "/status")
        status = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "**paused**" in status.data.text and "waiting before step 2 'Ship'" in status.data.text  # type: ignore[union-attr]

        sent = await chats.post(ANA, chat.id, "/approve the draft reads well")
        decided = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert f"Approved the checkpoint of run `{run_id}`" in decided.data.text  # type: ignore[union-attr]
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, "was approved by ana: “the draft reads well”"))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.COMPLETED))
        run = await engine.get_run(ANA, run_id)
        assert run.status is RunStatus.COMPLETED
        decision = run.steps[1].decision
        assert decision is not None and decision.kind is DecisionKind.APPROVE
        assert decision.comment == "the draft reads well" and decision.actor == "ana"

        sent = await chats.post(ANA, chat.id, "/approve")
        nothing = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert nothing.data.text == "No run of this chat is waiting at a checkpoint."  # type: ignore[union-attr]
        sent = await chats.post(ANA, chat.id, "/frobnicate")
        unknown = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "unknown command '/frobnicate'" in unknown.data.text and "/run FLOW" in unknown.data.text  # type: ignore[union-attr]
        sent = await chats.post(ANA, chat.id, "/run nope")
        refused = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "Could not start nope" in refused.data.text  # type: ignore[union-attr]


async def test_reject_skip_and_cancel_commands(tmp_path: Path) -> None:
    async with open_chats(tmp_path) as (engine, chats):
        chat = await chats.create(ANA)
        await chats.post(ANA, chat.id, "/run tiny")
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT))
        sent = await chats.post(ANA, chat.id, "/skip not needed today")
        await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, "was skipped by ana"))
        await chats.post(ANA, chat.id, "/run tiny")
        second = await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT), sent.seq)
        sent = await chats.post(ANA, chat.id, "/reject the draft is wrong")
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.REJECTED), sent.seq)
        assert second.data.run_id is not None  # type: ignore[union-attr]
        assert (await engine.get_run(ANA, second.data.run_id)).status is RunStatus.REJECTED  # type: ignore[union-attr]
        sent = await chats.post(ANA, chat.id, "/cancel")
        reply = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert reply.data.text == "This chat has no active run to cancel."  # type: ignore[union-attr]


async def test_the_offline_demo_conversation(tmp_path: Path) -> None:
    async with open_chats(tmp_path) as (engine, chats):
        chat = await chats.create(ANA)
        sent = await chats.post(ANA, chat.id, "run the tiny flow for a CSV export")
        started = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "Started **Tiny** as run" in started.data.text  # type: ignore[union-attr]
        tools = [e.data.tool for e in await chats.events(ANA, chat.id) if isinstance(e.data, ChatToolUsed)]
        assert tools == ["list_flows", "start_flow"]
        checkpoint = await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT))
        relayed = await wait_for(chats, ANA, chat.id, reply_to(checkpoint.seq))
        assert "waiting at a checkpoint" in relayed.data.text  # type: ignore[union-attr]

        sent = await chats.post(ANA, chat.id, "how is it going?")
        status = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "**paused**" in status.data.text  # type: ignore[union-attr]

        sent = await chats.post(ANA, chat.id, "looks good, ship it")
        await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.COMPLETED))
        run_id = checkpoint.data.run_id  # type: ignore[union-attr]
        assert run_id is not None
        run = await engine.get_run(ANA, run_id)
        decision = run.steps[1].decision
        assert run.status is RunStatus.COMPLETED and decision is not None
        assert decision.comment == "looks good, ship it"


async def test_bad_input_gets_a_clear_answer_and_the_chat_stays_usable(tmp_path: Path) -> None:
    async with open_chats(tmp_path) as (_, chats):
        chat = await chats.create(ANA)
        with pytest.raises(UsageError, match="empty") as empty:
            await chats.post(ANA, chat.id, "   ")
        assert empty.value.code == "empty_message"
        with pytest.raises(UsageError, match="at most 16000") as long:
            await chats.post(ANA, chat.id, "x" * 16_001)
        assert long.value.code == "message_too_long"
        with pytest.raises(NotFound, match="no chat 'chat_nope' of yours"):
            await chats.post(ANA, "chat_nope", "hello")
        bob = ANA.__class__(id="bob")
        with pytest.raises(NotFound, match=f"no chat '{chat.id}' of yours"):
            await chats.post(bob, chat.id, "hello")
        with pytest.raises(NotFound):
            await chats.events(bob, chat.id)
        assert await chats.list_chats(bob) == []
        sent = await chats.post(ANA, chat.id, "hello")
        reply = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "offline chat model" in reply.data.text  # type: ignore[union-attr]
        assert [m.role for m in await messages(chats, ANA, chat.id)] == [ChatRole.USER, ChatRole.ASSISTANT]


async def test_an_idle_session_closes_and_the_next_message_opens_it_again(tmp_path: Path) -> None:
    async with open_chats(tmp_path, idle_s=0.2) as (engine, chats):
        chat = await chats.create(ANA)
        sent = await chats.post(ANA, chat.id, "/run tiny")
        await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        # following a run keeps the session open, however long the run waits at its checkpoint
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.CHECKPOINT))
        await anyio.sleep(0.5)
        assert chats.open_sessions == 1
        sent = await chats.post(ANA, chat.id, "/approve")
        await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        await wait_for(chats, ANA, chat.id, message(ChatRole.NOTE, note=NoteKind.COMPLETED))
        for _ in range(200):  # the run ended and nothing is left to answer: it closes
            if not chats.open_sessions:
                break
            await anyio.sleep(0.05)
        assert chats.open_sessions == 0
        sent = await chats.post(ANA, chat.id, "/status")  # opened again from the log, and answered
        status = await wait_for(chats, ANA, chat.id, reply_to(sent.seq))
        assert "completed" in status.data.text  # type: ignore[union-attr]
        assert [m.reply_to for m in await messages(chats, ANA, chat.id)].count(sent.seq) == 1
