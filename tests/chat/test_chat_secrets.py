"""A chat reply that streams a key in small pieces is stored redacted, pieces and whole message
alike (issue 9 §3: redaction across piece boundaries)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowrun.flows.chat import ChatDelta, ChatMessage, ChatRole
from flowrun.flows.run import Usage
from flowrun.llm.base import Message, ModelRequest, StreamEvent, TextBlock, TextDelta, TurnComplete

from .chatkit import ANA, message, open_chats, wait_for

pytestmark = pytest.mark.anyio

GITHUB = "ghp_Zq9XwVuTsRqPoNmLkJiHgFeDcBa0123456789"
CONFIGURED = "plain-words-secret-4711"
TEXT = f"Your token is {GITHUB} and the phrase is {CONFIGURED}, keep them safe."


class Chatty:
    name = "chatty"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        for i in range(0, len(TEXT), 3):
            yield TextDelta(index=0, text=TEXT[i : i + 3])
        yield TurnComplete(message=Message(role="assistant", content=[TextBlock(text=TEXT)]), usage=Usage(turns=1))


async def test_a_key_split_across_chat_deltas_is_never_stored(tmp_path: Path) -> None:
    provider = Chatty()
    async with open_chats(tmp_path, model="chatty", env={"FLOWRUN_SECRETS": CONFIGURED},
                          provider_for=lambda _: provider) as (_, chats):
        chat = await chats.create(ANA)
        await chats.post(ANA, chat.id, "what is my token?")
        reply = await wait_for(chats, ANA, chat.id, message(ChatRole.ASSISTANT))
        assert isinstance(reply.data, ChatMessage)
        events = await chats.events(ANA, chat.id)
    pieces = [e.data.text for e in events if isinstance(e.data, ChatDelta) and e.data.message_id == reply.data.message_id]
    expected = "Your token is [REDACTED] and the phrase is [REDACTED], keep them safe."
    assert reply.data.text == expected and "".join(pieces) == expected
    stored = b"".join(p.read_bytes() for p in (tmp_path / "home").glob("flowrun.db*"))
    assert GITHUB[4:20].encode() not in stored and CONFIGURED.encode() not in stored
