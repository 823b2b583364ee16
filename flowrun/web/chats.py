"""Chats in the web face: what the API, the websocket and Sessions need of them, as a protocol.

The chat service (`flowrun.chat.ChatService`) satisfies `ChatSource`; the app fills a `ChatSlot`
in its lifespan (like the engine's slot), so the web face never imports the chat room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ..flows.chat import Chat
from ..flows.errors import StartRefused
from ..flows.events import Event
from ..runtime.access import Actor
from .models import SessionView


class ChatSource(Protocol):
    async def get(self, actor: Actor, chat_id: str) -> Chat:
        """Raises NotFound for a chat that is not there or not the actor's."""
        ...

    async def events(self, actor: Actor, chat_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        ...

    async def list_chats(self, actor: Actor, *, limit: int = 50) -> list[Chat]: ...

    async def last_seq(self, chat_id: str) -> int:
        """The chat's newest seq (a feed's starting point; the caller has authorized)."""
        ...

    def follow(self, chat_id: str, after_seq: int) -> AsyncIterator[Event]:
        """The chat's events after `after_seq`, stored then live (the caller has authorized)."""
        ...


@dataclass
class ChatSlot:
    chats: ChatSource | None = None

    def get(self) -> ChatSource:
        if self.chats is None:
            raise StartRefused("Chats are still coming up; retry in 2 seconds.", code="warming_up",
                               retryable=True, retry_after=2.0)
        return self.chats


def is_chat_id(value: str) -> bool:
    return value.startswith("chat_")


def chat_session_view(chat: Chat, public_url: str) -> SessionView:
    return SessionView(kind="chat", id=chat.id, title=chat.title or "New chat", status=None, who=chat.owner,
                       created_at=chat.created_at, updated_at=chat.updated_at,
                       url=f"{public_url.rstrip('/')}/chats/{chat.id}", version=chat.last_seq, runs=list(chat.runs))
