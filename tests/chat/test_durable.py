"""A restart mid-reply loses no acknowledged message; the chat goes on from its last stored one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from flowrun.flows.chat import ChatDelta, ChatMessage, ChatRole, ReplyStatus
from flowrun.llm.base import ModelRequest, StreamEvent, TextDelta

from .chatkit import ANA, messages, open_chats, wait_for

pytestmark = pytest.mark.anyio


class Stalls:
    """Streams the start of a reply, then hangs (until the process goes away)."""

    name = "stalls"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        yield TextDelta(index=0, text="Half a ")
        await anyio.sleep_forever()


async def test_a_restart_mid_reply_keeps_every_message_and_the_chat_goes_on(tmp_path: Path) -> None:
    async with open_chats(tmp_path, model="stalls", provider_for=lambda _: Stalls()) as (_, chats):
        chat = await chats.create(ANA)
        sent = await chats.post(ANA, chat.id, "tell me about flowrun")
        await wait_for(chats, ANA, chat.id, lambda e: isinstance(e.data, ChatDelta), sent.seq)
    # the process is gone mid-reply; a new one opens the same home with the offline model
    async with open_chats(tmp_path) as (_, chats):
        closed = await wait_for(chats, ANA, chat.id, lambda e: isinstance(e.data, ChatMessage)
                                and e.data.role is ChatRole.ASSISTANT and e.data.status is ReplyStatus.INTERRUPTED)
        assert closed.data.text == "Half a "  # type: ignore[union-attr]
        again = await wait_for(chats, ANA, chat.id, lambda e: isinstance(e.data, ChatMessage)
                               and e.data.role is ChatRole.ASSISTANT and e.data.status is ReplyStatus.COMPLETE)
        assert "offline chat model" in again.data.text  # type: ignore[union-attr]
        said = await messages(chats, ANA, chat.id)
        assert [m.text for m in said if m.role is ChatRole.USER] == ["tell me about flowrun"]
        sent = await chats.post(ANA, chat.id, "/help")
        help_reply = await wait_for(chats, ANA, chat.id, lambda e: isinstance(e.data, ChatMessage)
                                    and e.data.reply_to == sent.seq)
        assert "/run FLOW" in help_reply.data.text  # type: ignore[union-attr]
