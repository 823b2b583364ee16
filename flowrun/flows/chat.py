"""Chats: a person's conversation with the chat agent, and the events that make up its log.

A chat's messages live in the same event log as runs, under the chat id: every message, every
streamed piece of a reply, every tool the agent used and every run it linked is an event with a
per-chat gapless `seq`, so a websocket replays and streams a chat exactly as it does a run.
The `Chat` row is the materialized summary (owner, the runs it started), like the run row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .run import new_id, now

CHAT_SCHEMA_VERSION = 1
MAX_MESSAGE_CHARS = 16_000
"""A person's message longer than this is refused (a paste of a whole log belongs in a file)."""


class ChatRole(StrEnum):
    USER = "user"  # the person
    ASSISTANT = "assistant"  # the chat agent
    NOTE = "note"  # flowrun itself: a run the chat started reached a checkpoint, ended, ...


class ReplyStatus(StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"  # the model failed mid-reply: the partial text is kept, marked
    INTERRUPTED = "interrupted"  # the process stopped mid-reply: the partial text is kept, marked


class NoteKind(StrEnum):
    CHECKPOINT = "checkpoint"
    DECISION = "decision"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    ERROR = "error"  # something went wrong on flowrun's side while answering


class Chat(BaseModel):
    """The chat row. `scopes` are the person's, as last seen: the agent acts with them (also
    when it answers a run's note with nobody's request in flight)."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = CHAT_SCHEMA_VERSION
    id: str = Field(default_factory=lambda: new_id("chat"))
    workspace: str = "default"
    owner: str
    scopes: list[str] = Field(default_factory=list)
    title: str = ""
    model: str = ""  # "" is the configured default
    runs: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    last_seq: int = 0


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChatMessage(_Data):
    """A whole message. An assistant's reply was streamed first as `chat_delta` pieces under the
    same `message_id`; this event closes it with the full text and how it ended."""

    type: Literal["chat_message"] = "chat_message"
    message_id: str
    role: ChatRole
    text: str
    actor: str = ""
    status: ReplyStatus = ReplyStatus.COMPLETE
    error: str | None = None
    run_id: str | None = None  # notes: the run they are about
    note: NoteKind | None = None
    run_seq: int | None = None  # notes: the run event they answer (so a restart resumes after it)
    wants_reply: bool = False  # notes the agent should tell the person about
    reply_to: int | None = None  # replies: the seq of the last input they answer


class ChatDelta(_Data):
    """A streamed piece of the reply `message_id`."""

    type: Literal["chat_delta"] = "chat_delta"
    message_id: str
    text: str


class ChatToolUsed(_Data):
    """The agent called one of flowrun's MCP tools while replying."""

    type: Literal["chat_tool"] = "chat_tool"
    message_id: str
    call_id: str
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    is_error: bool = False
    run_id: str | None = None


class ChatRunLinked(_Data):
    """The chat started this run: its progress overlay belongs in the chat from now on."""

    type: Literal["chat_run"] = "chat_run"
    run_id: str
    flow: str
    flow_name: str = ""
    url: str = ""


class ChatAgentMessages(_Data):
    """The agent's model conversation as it grows (log-only, never rendered): the inputs it
    consumed (through input seq `consumed`), its turns, the tool results. After a restart the
    conversation is exactly the concatenation of these."""

    type: Literal["chat_agent"] = "chat_agent"
    messages: list[dict[str, Any]]
    consumed: int | None = None


def new_message_id() -> str:
    return new_id("msg")
