"""The websocket protocol of `/ws`: typed JSON messages, discriminated by `type`.

Client to server:
  `auth {token}` (only if the handshake carried no bearer header or session cookie),
  `subscribe {run_id, after_seq}`, `subscribe {chat_id, after_seq}` (a chat's log, exactly like a
  run's) or `subscribe {topic: "sessions" | "tasks"}`,
  `unsubscribe {run_id | chat_id | topic}`,
  `decide {run_id, decision, comment, step, decision_id, expected_version}`,
  `ping`.
Server to client:
  `event {run_id, seq, event}` (the stored event: `{run_id, seq, at, data}`; a chat's events carry
  the chat id as `run_id`); on a topic
  subscription `event {topic, run_id, seq, event}` where `event` is the run's row (a SessionView
  or TaskView), sent whole whenever the run changes,
  `ack {ref, op, ...}`, `error {ref, code, message, ...}`, `pong {ref}`, and
  `batch {messages: [...]}`: several of the messages above, in the order they were sent. A
  server sends a batch when messages queued up for a connection faster than it wrote them (a
  busy run, a replay): one websocket frame instead of many. A client handles each message of a
  batch exactly as if it had arrived alone; batches never nest.

Every client message may carry a `ref` (string or number) that the answer to it echoes. A
`subscribe` is acknowledged first (with the run's `last_seq` at that moment, so a client knows
when the replay is complete), then the stored events after `after_seq` arrive, then live ones:
no gap and no duplicate. `docs/ws-protocol.schema.json` is generated from these models
(`python scripts/ws_schema.py`); a test keeps it in sync.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ..flows.enums import DecisionKind, RunStatus
from .models import SessionView, TaskView

MAX_MESSAGE_BYTES = 64 * 1024
"""A client message longer than this is refused with `error` (code `message_too_large`)."""

Ref = Annotated[str | int | None, Field(default=None, description="echoed in the answer to this message")]
Topic = Literal["sessions", "tasks"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Auth(_Message):
    type: Literal["auth"] = "auth"
    ref: Ref = None
    token: str = Field(min_length=1, max_length=4096)


class _Target(_Message):
    run_id: str | None = Field(default=None, min_length=1, max_length=200)
    chat_id: str | None = Field(default=None, min_length=1, max_length=200,
                                description="a chat's log: its messages, streamed reply pieces, tools, runs")
    topic: Topic | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _Target:
        if sum(v is not None for v in (self.run_id, self.chat_id, self.topic)) != 1:
            raise ValueError("name exactly one of run_id, chat_id or topic")
        return self


class Subscribe(_Target):
    type: Literal["subscribe"] = "subscribe"
    ref: Ref = None
    after_seq: int = Field(default=0, ge=0, description="the last seq the client has; replay starts after it")


class Unsubscribe(_Target):
    type: Literal["unsubscribe"] = "unsubscribe"
    ref: Ref = None


class Decide(_Message):
    type: Literal["decide"] = "decide"
    ref: Ref = None
    run_id: str = Field(min_length=1, max_length=200)
    decision: DecisionKind
    comment: str = Field(default="", max_length=20_000)
    step: int | str | None = Field(default=None, description="the step the decision is meant for (index or name)")
    decision_id: str | None = Field(default=None, max_length=200, description="idempotency key")
    expected_version: int | None = Field(default=None, ge=0)


class Ping(_Message):
    type: Literal["ping"] = "ping"
    ref: Ref = None


ClientMessage = Annotated[Auth | Subscribe | Unsubscribe | Decide | Ping, Field(discriminator="type")]
client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class EventMessage(_Message):
    type: Literal["event"] = "event"
    run_id: str
    seq: int = Field(description="the event's seq; on a topic row, the run's last seq")
    topic: Topic | None = Field(
        default=None, description="set on the rows of a topic subscription: `event` is then a SessionView "
                                  "(sessions) or a TaskView (tasks), sent whole whenever the run changes")
    event: dict[str, Any] = Field(description="the stored event: {run_id, seq, at, data}; data is typed by "
                                              "data.type (or, with `topic`, the row)")


TopicRow = SessionView | TaskView
"""What `event` holds on a topic row (documented in the schema through `$defs`)."""


class Ack(_Message):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["ack"] = "ack"
    ref: Ref = None
    op: Literal["auth", "subscribe", "unsubscribe", "decide"]
    run_id: str | None = None
    chat_id: str | None = None
    topic: Topic | None = None
    actor: str | None = Field(default=None, description="auth: who the connection speaks for")
    last_seq: int | None = Field(default=None, description="subscribe: the run's (or chat's) last seq when subscribed")
    status: RunStatus | None = Field(default=None, description="subscribe, decide: the run's status then")
    version: int | None = Field(default=None, description="subscribe, decide: the run's version then")
    run: dict[str, Any] | None = Field(default=None, description="decide: the run after the decision (a RunView)")


class Error(_Message):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["error"] = "error"
    ref: Ref = None
    code: str
    message: str
    retryable: bool = False


class Pong(_Message):
    type: Literal["pong"] = "pong"
    ref: Ref = None


SingleMessage = Annotated[EventMessage | Ack | Error | Pong, Field(discriminator="type")]


class Batch(_Message):
    type: Literal["batch"] = "batch"
    messages: list[SingleMessage] = Field(
        min_length=1, description="messages that queued up, in order: handle each as if it had arrived alone")


ServerMessage = Annotated[
    EventMessage | Ack | Error | Pong | Batch, Field(discriminator="type")
]
server_message: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)

MAX_BATCH_CHARS = 256 * 1024
"""A batch stops growing past this many characters (a single larger message goes alone)."""


def batch_frames(frames: list[str], limit: int = MAX_BATCH_CHARS) -> list[str]:
    """Encoded messages to websocket frames: consecutive ones joined into `batch` messages of at
    most `limit` characters each (an encoded message is valid JSON, so joining is just text)."""
    if len(frames) == 1:
        return frames
    out: list[str] = []
    group: list[str] = []
    size = 0
    for frame in frames:
        if group and size + len(frame) > limit:
            out.append(_joined(group))
            group, size = [], 0
        group.append(frame)
        size += len(frame) + 1
    out.append(_joined(group))
    return out


def _joined(group: list[str]) -> str:
    return group[0] if len(group) == 1 else '{"type":"batch","messages":[' + ",".join(group) + "]}"


CLOSE_SLOW_CONSUMER = 4008
"""Close code when a client reads too slowly: it should reconnect and resubscribe from its last seq."""
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SHUTTING_DOWN = 1001


def json_schema() -> dict[str, Any]:
    """The published JSON Schema: both directions, every message."""
    client = client_message.json_schema()
    server = server_message.json_schema()
    rows: dict[str, Any] = TypeAdapter(TopicRow).json_schema()
    defs = {**client.pop("$defs", {}), **server.pop("$defs", {}), **rows.pop("$defs", {})}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://flowrun.dev/schemas/ws-protocol.schema.json",
        "title": "flowrun /ws protocol",
        "description": "JSON messages over the /ws websocket. client: what a client sends; server: what it receives.",
        "type": "object",
        "properties": {"client": client, "server": server, "topic_row": rows},
        "$defs": defs,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"

