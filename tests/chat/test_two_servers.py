"""Two servers on one database: a chat is answered by one of them (its host), whichever server
the person posts through; notes about its runs are written once; when the host goes away, the
other server takes the chat over. Both stores (SQLite shared by two processes on one machine,
PostgreSQL by several)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import anyio
import pytest

from flowrun.flows.chat import ChatDelta, ChatMessage, ChatRole, NoteKind, ReplyStatus
from tests.storekinds import StoreKind

from .chatkit import ANA, messages, open_chats, reply_to, wait_for
from .test_durable import Stalls

pytestmark = pytest.mark.anyio
LEASE_S = 1.0


def shared(tmp_path: Path, store_kind: StoreKind) -> dict[str, str]:
    return {"FLOWRUN_DATABASE_URL": store_kind.url(tmp_path / "shared.db"), "FLOWRUN_LEASE_S": str(LEASE_S)}


def replies(said: list[ChatMessage]) -> Counter[int | None]:
    return Counter(m.reply_to for m in said if m.role is ChatRole.ASSISTANT)


async def test_a_message_posted_through_either_server_is_answered_once(tmp_path: Path, store_kind: StoreKind) -> None:
    env = shared(tmp_path, store_kind)
    async with open_chats(tmp_path / "a", env=env) as (_, one), open_chats(tmp_path / "b", env=env) as (_, two):
        chat = await one.create(ANA)
        first = await one.post(ANA, chat.id, "/help")
        await wait_for(one, ANA, chat.id, reply_to(first.seq))
        second = await two.post(ANA, chat.id, "/status")  # another server: the host answers
        await two.wait_idle(chat.id)  # as the terminal waits: until the host's answer is in the log
        assert [m for m in await messages(two, ANA, chat.id) if m.reply_to == second.seq]
        await anyio.sleep(3 * LEASE_S)  # long enough for a second answer, were there one
        said = await messages(one, ANA, chat.id)
        assert replies(said) == Counter({first.seq: 1, second.seq: 1})
        assert one.open_sessions == 1 and two.open_sessions == 0


async def test_notes_about_a_chats_run_are_written_once(tmp_path: Path, store_kind: StoreKind) -> None:
    env = shared(tmp_path, store_kind)
    async with open_chats(tmp_path / "a", env=env) as (_, one), open_chats(tmp_path / "b", env=env) as (_, two):
        chat = await one.create(ANA)
        sent = await two.post(ANA, chat.id, "/run tiny")  # the first message makes this server the host
        await wait_for(one, ANA, chat.id, reply_to(sent.seq))
        await wait_for(one, ANA, chat.id, lambda e: isinstance(e.data, ChatMessage) and e.data.note is NoteKind.CHECKPOINT)
        decided = await one.post(ANA, chat.id, "/approve")  # through the other server
        await wait_for(two, ANA, chat.id, reply_to(decided.seq))
        await wait_for(two, ANA, chat.id, lambda e: isinstance(e.data, ChatMessage) and e.data.note is NoteKind.COMPLETED)
        await anyio.sleep(3 * LEASE_S)
        notes = Counter(m.note for m in await messages(one, ANA, chat.id) if m.role is ChatRole.NOTE)
        assert notes[NoteKind.CHECKPOINT] == 1 and notes[NoteKind.COMPLETED] == 1
        assert replies(await messages(one, ANA, chat.id))[decided.seq] == 1


async def test_when_the_host_goes_away_the_other_server_answers(tmp_path: Path, store_kind: StoreKind) -> None:
    """The host stalls mid-reply and stops; the message the person then posted through the other
    server is answered there (the cut reply closed as interrupted, as after a restart)."""
    env = shared(tmp_path, store_kind)
    async with open_chats(tmp_path / "b", env=env) as (_, two):
        async with open_chats(tmp_path / "a", env=env, model="stalls", provider_for=lambda _: Stalls()) as (_, one):
            chat = await one.create(ANA)
            first = await one.post(ANA, chat.id, "tell me about flowrun")
            await wait_for(one, ANA, chat.id, lambda e: isinstance(e.data, ChatDelta), first.seq)
            second = await two.post(ANA, chat.id, "are you there?")
            await anyio.sleep(LEASE_S)
            assert not [m for m in await messages(two, ANA, chat.id) if m.reply_to == second.seq]
        # the host is gone: the server that stored the message takes the chat over
        answered = await wait_for(two, ANA, chat.id, reply_to(second.seq))
        assert answered.data.status is ReplyStatus.COMPLETE  # type: ignore[union-attr]
        said = await messages(two, ANA, chat.id)
        assert [m.status for m in said if m.role is ChatRole.ASSISTANT and m.text == "Half a "] == [ReplyStatus.INTERRUPTED]
        assert two.open_sessions == 1


async def test_what_a_message_through_another_server_changes_in_the_chat_is_kept(
    tmp_path: Path, store_kind: StoreKind,
) -> None:
    """The first message names the chat; stored through a server that does not host the chat,
    the name is kept when the host next rewrites the chat's row (linking a run)."""
    env = shared(tmp_path, store_kind)
    async with open_chats(tmp_path / "a", env=env) as (_, one), open_chats(tmp_path / "b", env=env) as (_, two):
        chat = await one.create(ANA)

        async def page() -> None:  # a page open on this server: it hosts the chat
            async for _ in one.subscribe(ANA, chat.id):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(page)
            with anyio.fail_after(10):
                for _ in itertools.count():
                    if one.open_sessions:
                        break
                    await anyio.sleep(0.01)
            sent = await two.post(ANA, chat.id, "/run tiny")
            await wait_for(one, ANA, chat.id, reply_to(sent.seq))
            await wait_for(one, ANA, chat.id,
                           lambda e: isinstance(e.data, ChatMessage) and e.data.note is NoteKind.CHECKPOINT)
            stored = await one.get(ANA, chat.id)
            assert stored.title == "/run tiny" and len(stored.runs) == 1
            assert one.open_sessions == 1 and two.open_sessions == 0
            tg.cancel_scope.cancel()
