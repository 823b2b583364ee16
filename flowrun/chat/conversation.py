"""A chat's state rebuilt from its log: the model conversation, what is still unanswered, the
reply a restart cut short, and where each linked run's notes stopped.

Pure: the session reads the chat's events and hands them here, at start and after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..flows.chat import ChatAgentMessages, ChatDelta, ChatMessage, ChatRole, ChatRunLinked
from ..flows.events import Event
from ..llm.base import ContentBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock

ENDINGS = frozenset({"completed", "failed", "blocked", "interrupted", "cancelled", "rejected"})
INTERRUPTED_TOOL = "not run: flowrun restarted before this call finished; check the run before retrying"


@dataclass(frozen=True, slots=True)
class Input:
    """A message the agent has yet to answer: the person's, or a run's note."""

    seq: int
    role: ChatRole
    text: str
    run_id: str | None = None

    def for_model(self) -> str:
        if self.role is ChatRole.NOTE:
            return f"[flowrun note about run {self.run_id}] {self.text}"
        return self.text


@dataclass
class ChatState:
    messages: list[Message] = field(default_factory=list)
    consumed: int = 0
    pending: list[Input] = field(default_factory=list)
    open_reply: tuple[str, str] | None = None  # (message_id, text streamed so far) with no end
    runs: dict[str, int] = field(default_factory=dict)  # run id -> last run seq noted
    endings: dict[str, str] = field(default_factory=dict)  # run id -> the last status a note told
    needs_continue: bool = False  # inputs were consumed but the reply never finished


def rebuild(events: Iterable[Event]) -> ChatState:
    state = ChatState()
    inputs: list[Input] = []
    streamed: dict[str, list[str]] = {}
    for event in events:
        data = event.data
        if isinstance(data, ChatAgentMessages):
            state.messages += [Message.model_validate(m) for m in data.messages]
            if data.consumed is not None:
                state.consumed = max(state.consumed, data.consumed)
        elif isinstance(data, ChatDelta):
            streamed.setdefault(data.message_id, []).append(data.text)
        elif isinstance(data, ChatMessage):
            streamed.pop(data.message_id, None)
            if data.role is ChatRole.USER or (data.role is ChatRole.NOTE and data.wants_reply):
                inputs.append(Input(event.seq, data.role, data.text, data.run_id))
            if data.run_id is not None and data.run_seq is not None:
                state.runs[data.run_id] = max(state.runs.get(data.run_id, 0), data.run_seq)
                if data.note is not None and data.note.value in ENDINGS:
                    state.endings[data.run_id] = data.note.value
        elif isinstance(data, ChatRunLinked):
            state.runs.setdefault(data.run_id, 0)
    state.pending = [i for i in inputs if i.seq > state.consumed]
    if streamed:
        message_id, pieces = list(streamed.items())[-1]
        state.open_reply = (message_id, "".join(pieces))
    dangling = pending_calls(state.messages)
    if dangling:
        results: list[ContentBlock] = [ToolResultBlock(tool_use_id=c.id, content=INTERRUPTED_TOOL, is_error=True)
                                       for c in dangling]
        state.messages.append(Message(role="user", content=results))
    state.needs_continue = bool(state.messages) and state.messages[-1].role == "user"
    return state


def has_news(state: ChatState, run_id: str, status: str) -> bool:
    """A linked run may have something the chat was not told: it is going, or it ended in a
    way no note has told yet."""
    return status not in ENDINGS or state.endings.get(run_id) != status


def pending_calls(messages: Sequence[Message]) -> list[ToolUseBlock]:
    if not messages or messages[-1].role != "assistant":
        return []
    return [b for b in messages[-1].content if isinstance(b, ToolUseBlock)]


def normalize(messages: Sequence[Message]) -> list[Message]:
    """A conversation every provider accepts: roles alternate starting with the person (merged
    where a failed turn left two in a row), and every tool call has a result right after it."""
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role == message.role:
            merged[-1] = Message(role=message.role, content=[*merged[-1].content, *message.content])
        else:
            merged.append(message)
    if merged and merged[0].role != "user":
        merged.insert(0, Message(role="user", content=[TextBlock(text="(the conversation starts)")]))
    fixed: list[Message] = []
    for index, message in enumerate(merged):
        if message.role == "user" and index > 0:
            calls = [b.id for b in merged[index - 1].content if isinstance(b, ToolUseBlock)]
            answered = {b.tool_use_id for b in message.content if isinstance(b, ToolResultBlock)}
            missing: list[ContentBlock] = [ToolResultBlock(tool_use_id=c, content=INTERRUPTED_TOOL, is_error=True)
                                           for c in calls if c not in answered]
            results = [b for b in message.content if isinstance(b, ToolResultBlock)]
            rest = [b for b in message.content if not isinstance(b, ToolResultBlock)]
            message = Message(role="user", content=[*results, *missing, *rest])
        fixed.append(message)
    return fixed
