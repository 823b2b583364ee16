"""Chat writes, planned inside a group commit like the run writes in `ops.py`.

A chat's events go to the `events` table under the chat id; the chat row's `last_seq` is read and
moved inside the transaction, so seqs stay gapless and two appends in one group commit see each
other (the row is updated at once, the event rows are inserted with the rest at flush).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from ..flows.chat import Chat, ChatMessage, ChatRole
from ..flows.errors import NotFound, UsageError
from ..flows.events import ChatEventData, Event
from ..flows.redact import Redactor
from .codec import EncodedEvent, _corrupt, _dump, encode_events, format_time
from .transaction import Op, Planned, RunState, Transaction

CHAT_EXCLUDE = {"last_seq"}


@dataclass(frozen=True, slots=True)
class EncodedChat:
    id: str
    workspace: str
    owner: str
    created_at: str
    json: str


def encode_chat(chat: Chat) -> EncodedChat:
    if not isinstance(chat, Chat):
        raise UsageError(f"expected a Chat, got {type(chat).__name__}")
    return EncodedChat(chat.id, chat.workspace, chat.owner, format_time(chat.created_at),
                       _dump(chat, f"chat {chat.id}", exclude=CHAT_EXCLUDE))


def encode_chat_events(
    chat_id: str, events: Sequence[ChatEventData], redactor: Redactor | None = None
) -> list[EncodedEvent]:
    return encode_events(chat_id, events, redactor)


def decode_chat(label: str, chat_id: str, last_seq: int, json: str) -> Chat:
    try:
        chat = Chat.model_validate_json(json)
    except ValidationError as exc:
        raise _corrupt(label, "chats", f"chat {chat_id}", exc) from exc
    return chat.model_copy(update={"last_seq": last_seq})


def _durable(events: Sequence[EncodedEvent]) -> bool:
    """A person's message is acknowledged only once it is on disk."""
    return any(isinstance(e.data, ChatMessage) and e.data.role is ChatRole.USER for e in events)


@dataclass(slots=True)
class CreateChat(Op[tuple[Chat, list[Event]]]):
    chat: Chat
    encoded: EncodedChat
    events: list[EncodedEvent]

    @property
    def size(self) -> int:
        return len(self.events) + 1

    def plan(self, tx: Transaction) -> Planned[tuple[Chat, list[Event]]]:
        clash = tx.conn.execute(
            "SELECT 1 FROM chats WHERE id = ? UNION ALL SELECT 1 FROM runs WHERE id = ?",
            (self.chat.id, self.chat.id)).fetchall()
        if clash:
            raise UsageError(f"chat {self.chat.id} already exists", code="already_exists", chat_id=self.chat.id)
        state = RunState(version=1, last_seq=0)
        events = tx.append_events(self.chat.id, state, self.events)
        row = self.encoded
        tx.conn.execute(
            "INSERT INTO chats (id, workspace, created_at, json, owner, updated_at, last_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.workspace, row.created_at, row.json, row.owner, tx.at_text, state.last_seq))
        chat = self.chat.model_copy(update={"last_seq": state.last_seq, "updated_at": tx.at})
        return Planned((chat, events), [(chat.id, events)])


@dataclass(slots=True)
class AppendChat(Op[list[Event]]):
    """Append events to a chat's log; with `encoded`, also rewrite its row (runs, scopes, title)."""

    chat_id: str
    events: list[EncodedEvent]
    encoded: EncodedChat | None = None

    def run_ids(self) -> Iterable[str]:
        return ()

    @property
    def size(self) -> int:
        return len(self.events) + 1

    @property
    def durable(self) -> bool:
        return _durable(self.events)

    def plan(self, tx: Transaction) -> Planned[list[Event]]:
        rows = tx.conn.execute("SELECT last_seq FROM chats WHERE id = ?", (self.chat_id,)).fetchall()
        if not rows:
            raise NotFound(f"chat {self.chat_id} not found", chat_id=self.chat_id)
        state = RunState(version=1, last_seq=rows[0][0])
        events = tx.append_events(self.chat_id, state, self.events)
        if self.encoded is not None:
            tx.conn.execute("UPDATE chats SET json = ?, last_seq = ?, updated_at = ? WHERE id = ?",
                            (self.encoded.json, state.last_seq, tx.at_text, self.chat_id))
        else:
            tx.conn.execute("UPDATE chats SET last_seq = ?, updated_at = ? WHERE id = ?",
                            (state.last_seq, tx.at_text, self.chat_id))
        return Planned(events, [(self.chat_id, events)])
