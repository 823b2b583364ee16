"""What faces show of a chat: the chat row and its conversation folded from the log (replies
joined from their streamed pieces, tool calls attached to the reply that made them). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ..flows.chat import (
    Chat,
    ChatDelta,
    ChatMessage,
    ChatRole,
    ChatRunLinked,
    ChatToolUsed,
    NoteKind,
    ReplyStatus,
)
from ..flows.events import Event


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatView(_View):
    id: str
    title: str
    owner: str
    runs: list[str] = Field(description="the runs this chat started, oldest first")
    created_at: datetime
    updated_at: datetime
    last_seq: int = Field(description="the seq of the chat's newest event (subscribe after it)")
    url: str = Field(description="the chat's page")


class ToolUseView(_View):
    tool: str
    is_error: bool = False
    result: str = ""
    run_id: str | None = None


class MessageView(_View):
    seq: int = Field(description="the seq of the event that holds the message (a streaming reply: its last piece)")
    message_id: str
    role: ChatRole
    text: str
    status: ReplyStatus = ReplyStatus.COMPLETE
    streaming: bool = Field(default=False, description="a reply still being written")
    error: str | None = None
    actor: str = ""
    run_id: str | None = None
    note: NoteKind | None = None
    at: datetime
    tools: list[ToolUseView] = Field(default_factory=list)


class RunLinkView(_View):
    run_id: str
    flow: str
    flow_name: str
    url: str


class ChatDetail(_View):
    chat: ChatView
    messages: list[MessageView]
    runs: list[RunLinkView]


class ChatList(_View):
    chats: list[ChatView] = Field(description="most recently active first")


def chat_url(public_url: str, chat_id: str) -> str:
    return f"{public_url.rstrip('/')}/chats/{chat_id}"


def chat_view(chat: Chat, public_url: str) -> ChatView:
    return ChatView(id=chat.id, title=chat.title or "New chat", owner=chat.owner, runs=list(chat.runs),
                    created_at=chat.created_at, updated_at=chat.updated_at, last_seq=chat.last_seq,
                    url=chat_url(public_url, chat.id))


def fold(events: Iterable[Event]) -> tuple[list[MessageView], list[RunLinkView]]:
    """The conversation in order, and the runs it started. A reply appears where it began."""
    messages: list[MessageView] = []
    by_id: dict[str, MessageView] = {}
    runs: list[RunLinkView] = []
    for event in events:
        data = event.data
        if isinstance(data, ChatDelta):
            view = by_id.get(data.message_id)
            if view is None:
                view = by_id[data.message_id] = MessageView(
                    seq=event.seq, message_id=data.message_id, role=ChatRole.ASSISTANT, text="", streaming=True,
                    at=event.at)
                messages.append(view)
            view.text += data.text
            view.seq = event.seq
        elif isinstance(data, ChatToolUsed):
            view = by_id.get(data.message_id)
            if view is None:
                view = by_id[data.message_id] = MessageView(
                    seq=event.seq, message_id=data.message_id, role=ChatRole.ASSISTANT, text="", streaming=True,
                    at=event.at)
                messages.append(view)
            view.tools.append(ToolUseView(tool=data.tool, is_error=data.is_error, result=data.result[:500],
                                          run_id=data.run_id))
        elif isinstance(data, ChatMessage):
            view = by_id.get(data.message_id)
            fields = {"seq": event.seq, "text": data.text, "status": data.status, "streaming": False,
                      "error": data.error, "actor": data.actor, "run_id": data.run_id, "note": data.note}
            if view is None:
                view = by_id[data.message_id] = MessageView(message_id=data.message_id, role=data.role, at=event.at,
                                                            **fields)
                messages.append(view)
            else:
                for key, value in fields.items():
                    setattr(view, key, value)
        elif isinstance(data, ChatRunLinked):
            runs.append(RunLinkView(run_id=data.run_id, flow=data.flow, flow_name=data.flow_name, url=data.url))
    return messages, runs
