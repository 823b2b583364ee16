"""Chats on PostgreSQL: the `ChatStore` half, with SQLite's write planner (`chats.py`).

Two processes appending to one chat at once: the second's event rows collide with the first's
on (chat id, seq) when it commits, and the writer plans it again on the chat's new `last_seq`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..flows.chat import Chat
from ..flows.errors import NotFound, UsageError
from ..flows.events import ChatEventData, Event
from ..flows.redact import Redactor
from .chats import AppendChat, CreateChat, decode_chat, encode_chat, encode_chat_events
from .codec import redact_all
from .writer import GroupWriter


class PostgresChats:
    """Mixed into `PostgresStore`."""

    path: str
    redactor: Redactor

    def _open_writer(self) -> GroupWriter:
        raise NotImplementedError

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def create_chat(self, chat: Chat, events: Sequence[ChatEventData] = ()) -> tuple[Chat, list[Event]]:
        writer = self._open_writer()
        chat = self.redactor.redact_obj(chat)
        events = redact_all(events, self.redactor)
        return await writer.submit(CreateChat(chat, encode_chat(chat), encode_chat_events(chat.id, events)))

    async def append_chat(
        self, chat_id: str, events: Sequence[ChatEventData], *, chat: Chat | None = None
    ) -> list[Event]:
        writer = self._open_writer()
        if chat is not None and chat.id != chat_id:
            raise UsageError(f"append_chat: the row is chat {chat.id}, not {chat_id}")
        chat = self.redactor.redact_obj(chat) if chat is not None else None
        events = redact_all(events, self.redactor)
        encoded = encode_chat(chat) if chat is not None else None
        return await writer.submit(AppendChat(chat_id, encode_chat_events(chat_id, events), encoded))

    async def get_chat(self, chat_id: str) -> Chat:
        chats = await self._load_chats("WHERE id = %s", (chat_id,))
        if not chats:
            raise NotFound(f"chat {chat_id} not found", chat_id=chat_id)
        return chats[0]

    async def list_chats(
        self, *, workspace: str | None = None, owner: str | None = None, limit: int = 50
    ) -> list[Chat]:
        if limit < 1:
            raise UsageError(f"limit must be >= 1, got {limit}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("workspace", workspace), ("owner", owner)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return await self._load_chats(f"{where} ORDER BY updated_at DESC, id DESC LIMIT %s", (*params, limit))

    async def _load_chats(self, where: str, params: Sequence[Any]) -> list[Chat]:
        rows = await self._rows(f"SELECT id, last_seq, updated_at, json FROM chats {where}", params)
        chats = []
        for chat_id, last_seq, updated_at, json in rows:
            chat = decode_chat(self.path, chat_id, last_seq, json)
            if updated_at:
                chat = chat.model_copy(update={"updated_at": datetime.fromisoformat(updated_at)})
            chats.append(chat)
        return chats
