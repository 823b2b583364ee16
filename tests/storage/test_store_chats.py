"""Chats in the store (both stores): their events share the log with runs, gapless per chat."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from flowrun.flows.chat import Chat, ChatMessage, ChatRole
from flowrun.flows.errors import NotFound
from tests.storekinds import AnyStore, StoreKind

from .storekit import WAIT, collect, seqs

pytestmark = pytest.mark.anyio


def said(text: str, role: ChatRole = ChatRole.USER) -> ChatMessage:
    return ChatMessage(message_id=f"m_{text}", role=role, text=text, actor="ana")


async def test_chat_log_is_gapless_across_two_stores(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        chat, first = await one.create_chat(Chat(owner="ana", title="Weekly report"), [said("hello")])
        assert seqs(first) == [1]
        async with two.subscribe(chat.id) as stream:

            async def say(store: AnyStore, prefix: str) -> None:
                for i in range(10):
                    await store.append_chat(chat.id, [said(f"{prefix}{i}", ChatRole.ASSISTANT)])

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(say, one, "a")
                    tg.start_soon(say, two, "b")
            assert seqs(await collect(stream, 21)) == list(range(1, 22))
        stored = await two.get_chat(chat.id)
        assert stored.last_seq == 21 and stored.title == "Weekly report"
        renamed = stored.model_copy(update={"title": "Renamed"})
        await one.append_chat(chat.id, [said("again")], chat=renamed)
        assert (await two.get_chat(chat.id)).title == "Renamed"
        assert [c.id for c in await two.list_chats(owner="ana")] == [chat.id]
        assert await two.list_chats(owner="bob") == []
        with pytest.raises(NotFound, match="chat_nope"):
            await one.append_chat("chat_nope", [said("x")])
        with pytest.raises(NotFound):
            await one.get_chat("chat_nope")
