"""The websocket `/ws`: subscribe to runs (replay, then live), topics (sessions, tasks, a person's
notifications), and decide checkpoints.

One `Connection` per socket: a reader that parses and dispatches client messages, and a writer
that drains the connection's bounded `Outbox`. Replays run as tasks of the connection, so a ping
or an unsubscribe is answered while a long replay streams. Every refusal is an `error` message
and the connection goes on; only a bad token, a slow consumer or shutdown closes it. The engine
authorizes every subscribe and decide with the connection's actor.

The handshake is refused (403, no 101) when the Origin is foreign. Without a bearer header or
session cookie the connection is accepted but must send `auth` first (within `AUTH_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..flows.enums import Scope
from ..flows.errors import FlowrunError, PermissionDenied, UsageError
from ..flows.events import Event
from ..runtime.access import Actor
from ..tools.face import EngineSlot
from ..tools.views import run_view
from .auth import WebAuth
from .chats import ChatSlot, is_chat_id
from .errors import error_body, invalid_request
from .hub import Hub, Outbox, RunListener
from .protocol import (
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHENTICATED,
    MAX_MESSAGE_BYTES,
    Ack,
    Auth,
    Decide,
    Error,
    Ping,
    Pong,
    Subscribe,
    Topic,
    Unsubscribe,
    batch_frames,
    client_message,
)

log = logging.getLogger("flowrun.web")

AUTH_TIMEOUT_S = 10.0
REPLAY_PAGE = 500
CLOSE_TIMEOUT_S = 2.0
COALESCE_S = 0.004
"""A busy connection writes at most once per this many seconds (see `Connection._write`)."""


@dataclass(eq=False)
class Connection:
    websocket: WebSocket
    hub: Hub
    slot: EngineSlot
    auth: WebAuth
    actor: Actor | None
    chats: ChatSlot | None = None
    outbox: Outbox = field(default_factory=Outbox)
    runs: dict[str, tuple[RunListener, anyio.CancelScope]] = field(default_factory=dict)
    topics: set[Topic] = field(default_factory=set)
    close_code: int | None = None
    close_reason: str = ""
    _flushed: anyio.Event = field(default_factory=anyio.Event)

    async def serve(self) -> None:
        """Until the peer leaves or the server closes the connection (bad token, slow consumer,
        no auth in time); a close is sent after the frames already queued."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, tg)
                if self.actor is None:
                    tg.start_soon(self._auth_deadline, tg)
                await self._read(tg)
                if self.close_code is not None:  # let the writer flush what is queued first
                    with anyio.move_on_after(CLOSE_TIMEOUT_S):
                        await self._flushed.wait()
                tg.cancel_scope.cancel()
        finally:
            self._leave_all()
        if self.close_code is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True), \
                    contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):  # already gone
                await self.websocket.close(self.close_code, self.close_reason)

    def _leave_all(self) -> None:
        for run_id, (listener, scope) in list(self.runs.items()):
            scope.cancel()
            self.hub.leave_run(run_id, listener)
        self.runs.clear()
        if self.actor is not None:
            for topic in self.topics:
                self.hub.leave_topic(topic, self.actor, self.outbox)
        self.topics.clear()
        self.outbox.close()

    def _close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (the reader stops reading now)."""
        self.close_code, self.close_reason = code, reason
        self.outbox.close()

    # reading ------------------------------------------------------------------------------------

    async def _read(self, tg: TaskGroup) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                data = message.get("bytes") or b""
                size = len(data)
                try:
                    raw = data.decode()
                except UnicodeDecodeError:
                    await self._error(None, UsageError("Messages are UTF-8 JSON text.", code="invalid_message"))
                    continue
            else:
                size = len(raw.encode()) if len(raw) * 4 > MAX_MESSAGE_BYTES else len(raw)
            if size > MAX_MESSAGE_BYTES:
                await self._error(None, UsageError(
                    f"Message too large ({size} bytes; the limit is {MAX_MESSAGE_BYTES}).",
                    code="message_too_large", limit=MAX_MESSAGE_BYTES))
                continue
            await self._dispatch(raw, tg)
            if self.close_code is not None:
                return

    async def _dispatch(self, raw: str, tg: TaskGroup) -> None:
        try:
            msg = client_message.validate_json(raw)
        except ValidationError as exc:
            await self._error(_ref_of(raw), _message_error(exc, raw))
            return
        if isinstance(msg, Auth):
            await self._authenticate(msg, tg)
            return
        if isinstance(msg, Ping):
            await self.outbox.put(Pong(ref=msg.ref).model_dump_json())
            return
        if self.actor is None:
            await self._error(msg.ref, PermissionDenied(
                "Authenticate first: send {\"type\": \"auth\", \"token\": ...} or connect with a bearer token "
                "or session cookie.", code="unauthenticated"))
            return
        try:
            if isinstance(msg, Subscribe):
                await self._subscribe(msg, self.actor, tg)
            elif isinstance(msg, Unsubscribe):
                await self._unsubscribe(msg, self.actor)
            elif isinstance(msg, Decide):
                await self._decide(msg, self.actor)
        except FlowrunError as exc:
            await self._error(msg.ref, exc)

    async def _authenticate(self, msg: Auth, tg: TaskGroup) -> None:
        actor = self.auth.tokens.lookup(msg.token)
        if actor is None:
            await self._error(msg.ref, PermissionDenied("Unknown token.", code="unauthenticated"))
            self._close(CLOSE_UNAUTHENTICATED, "unknown token")
            return
        if self.actor is not None and self.actor != actor:
            await self._error(msg.ref, UsageError("This connection is already authenticated as someone else.",
                                                  code="already_authenticated"))
            return
        self.actor = actor
        await self.outbox.put(Ack(ref=msg.ref, op="auth", actor=actor.id).model_dump_json())

    async def _auth_deadline(self, tg: TaskGroup) -> None:
        await anyio.sleep(AUTH_TIMEOUT_S)
        if self.actor is None and self.close_code is None:
            self.close_code, self.close_reason = CLOSE_UNAUTHENTICATED, "authentication required"
            tg.cancel_scope.cancel()

    # subscriptions ------------------------------------------------------------------------------

    async def _subscribe(self, msg: Subscribe, actor: Actor, tg: TaskGroup) -> None:
        engine = self.slot.get()
        if msg.topic is not None:
            actor.require(Scope.READ, "watch sessions and tasks")
            if msg.topic in self.topics:
                raise UsageError(f"Already subscribed to {msg.topic}.", code="already_subscribed", topic=msg.topic)
            self.topics.add(msg.topic)
            await self.outbox.put(Ack(ref=msg.ref, op="subscribe", topic=msg.topic).model_dump_json())
            for frame in await self.hub.join_topic(msg.topic, actor, self.outbox):
                await self.outbox.put(frame)
            return
        if msg.chat_id is not None:
            await self._subscribe_chat(msg, msg.chat_id, actor, tg)
            return
        assert msg.run_id is not None
        run = await engine.get_run(actor, msg.run_id)  # flows.read and the workspace
        if run.id in self.runs:
            raise UsageError(f"Already subscribed to run {run.id}; unsubscribe first to start over.",
                             code="already_subscribed", run_id=run.id)
        listener = RunListener(self.outbox, last_seq=msg.after_seq)
        scope = anyio.CancelScope()

        def feed_failed(exc: FlowrunError) -> None:  # the run's log became unreadable: say so, once
            if self.runs.get(run.id, (None,))[0] is listener:
                del self.runs[run.id]
                self.outbox.offer(Error(ref=msg.ref, **error_body(exc)).model_dump_json())

        listener.on_failure = feed_failed
        self.runs[run.id] = (listener, scope)
        await self.outbox.put(Ack(ref=msg.ref, op="subscribe", run_id=run.id, last_seq=run.last_seq,
                                  status=run.status, version=run.version).model_dump_json())
        tg.start_soon(self._replay, msg.ref, run.id, actor, listener, scope)

    async def _subscribe_chat(self, msg: Subscribe, chat_id: str, actor: Actor, tg: TaskGroup) -> None:
        """A chat's log, replayed and live exactly like a run's (only its owner may follow it)."""
        if self.chats is None:
            raise UsageError("This server has no chats.", code="not_found", chat_id=chat_id)
        chat = await self.chats.get().get(actor, chat_id)
        if chat.id in self.runs:
            raise UsageError(f"Already subscribed to chat {chat.id}; unsubscribe first to start over.",
                             code="already_subscribed", chat_id=chat.id)
        listener = RunListener(self.outbox, last_seq=msg.after_seq)
        scope = anyio.CancelScope()
        self.runs[chat.id] = (listener, scope)
        await self.outbox.put(Ack(ref=msg.ref, op="subscribe", chat_id=chat.id, last_seq=chat.last_seq).model_dump_json())
        tg.start_soon(self._replay, msg.ref, chat.id, actor, listener, scope)

    async def _page(self, actor: Actor, log_id: str, after: int) -> list[Event]:
        if self.chats is not None and is_chat_id(log_id):
            return await self.chats.get().events(actor, log_id, after, REPLAY_PAGE)
        return await self.slot.get().events(actor, log_id, after, REPLAY_PAGE)

    async def _replay(self, ref: str | int | None, run_id: str, actor: Actor, listener: RunListener,
                      scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await self.hub.join_run(run_id, actor.workspace, listener)
                engine = self.slot.get()
                chat = self.chats is not None and is_chat_id(run_id)
                if not chat:
                    await engine.get_run(actor, run_id)  # still allowed (the engine's answer)
                # the store's raw JSON when it offers it: a replay then decodes and re-encodes nothing
                fetch_json = None if chat else getattr(engine.deps.store, "events_json", None)
                prefix = '{"type":"event","run_id":' + json.dumps(run_id) + ',"seq":'
                while True:
                    if fetch_json is not None:
                        rows: list[tuple[int, str]] = await fetch_json(run_id, listener.last_seq, REPLAY_PAGE)
                        for seq, text in rows:
                            await self.outbox.put(prefix + str(seq) + ',"event":' + text + "}")
                            listener.last_seq = seq
                        count = len(rows)
                    else:
                        page = await self._page(actor, run_id, listener.last_seq)
                        for event in page:
                            await self.outbox.put(self.hub.frames.frame(event))
                            listener.last_seq = event.seq
                        count = len(page)
                    if count < REPLAY_PAGE:
                        break
                listener.go_live()
            except FlowrunError as exc:
                self.runs.pop(run_id, None)
                self.hub.leave_run(run_id, listener)
                await self._error(ref, exc)

    async def _unsubscribe(self, msg: Unsubscribe, actor: Actor) -> None:
        if msg.topic is not None:
            if msg.topic not in self.topics:
                raise UsageError(f"Not subscribed to {msg.topic}.", code="not_subscribed", topic=msg.topic)
            self.topics.discard(msg.topic)
            self.hub.leave_topic(msg.topic, actor, self.outbox)
            await self.outbox.put(Ack(ref=msg.ref, op="unsubscribe", topic=msg.topic).model_dump_json())
            return
        log_id = msg.run_id or msg.chat_id
        assert log_id is not None
        found = self.runs.pop(log_id, None)
        if found is None:
            what = "chat" if msg.chat_id else "run"
            raise UsageError(f"Not subscribed to {what} {log_id}.", code="not_subscribed", run_id=msg.run_id,
                             chat_id=msg.chat_id)
        listener, scope = found
        scope.cancel()
        self.hub.leave_run(log_id, listener)
        await self.outbox.put(Ack(ref=msg.ref, op="unsubscribe", run_id=msg.run_id, chat_id=msg.chat_id,
                                  last_seq=listener.last_seq).model_dump_json())

    async def _decide(self, msg: Decide, actor: Actor) -> None:
        run = await self.slot.get().decide(actor, msg.run_id, msg.decision, comment=msg.comment, step=msg.step,
                                           expected_version=msg.expected_version, decision_id=msg.decision_id)
        view = run_view(run, self.hub.public_url, actor=actor)
        await self.outbox.put(Ack(ref=msg.ref, op="decide", run_id=run.id, status=run.status, version=run.version,
                                  run=view.model_dump(mode="json")).model_dump_json())

    # writing ------------------------------------------------------------------------------------

    async def _error(self, ref: str | int | None, exc: FlowrunError) -> None:
        body = error_body(exc)
        await self.outbox.put(Error(ref=ref, **body).model_dump_json())

    async def _write(self, tg: TaskGroup) -> None:
        """Drain the outbox. What queued up goes as one frame (a `batch`); a connection that
        sent less than `COALESCE_S` ago waits for the next tick of a grid shared by every
        connection, so a busy run costs each connection one write per tick (and the clients one
        wake-up), not one per event, while a frame after a quiet spell goes at once."""
        sent_at = float("-inf")
        try:
            while True:
                await self.outbox.ready()
                now = anyio.current_time()
                if now - sent_at < COALESCE_S and not self.outbox.closed:
                    await anyio.sleep((now // COALESCE_S + 1) * COALESCE_S - now)
                frames = self.outbox.take()
                if self.outbox.overflowed:
                    log.info("closing a websocket that reads too slowly")
                    self.close_code = CLOSE_SLOW_CONSUMER
                    self.close_reason = "slow consumer: reconnect and resubscribe from your last seq"
                    tg.cancel_scope.cancel()
                    return
                if not frames:  # closed and flushed
                    self._flushed.set()
                    return
                await self._send(frames)
                frames = []  # an idle writer keeps nothing it sent alive (1,000 idle sockets add up)
                sent_at = anyio.current_time()
        except (WebSocketDisconnect, OSError):
            tg.cancel_scope.cancel()  # the peer is gone

    async def _send(self, frames: list[str]) -> None:
        for frame in batch_frames(frames):
            await self.websocket.send_text(frame)


def _ref_of(raw: str) -> str | int | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str | int) and not isinstance(ref, bool) and len(str(ref)) <= 200 else None


def _message_error(exc: ValidationError, raw: str) -> FlowrunError:
    try:
        data = json.loads(raw)
    except ValueError:
        return UsageError("Messages are JSON objects with a `type`.", code="invalid_message")
    known = ("auth", "subscribe", "unsubscribe", "decide", "ping")
    if not isinstance(data, dict) or "type" not in data:
        return UsageError("Messages are JSON objects with a `type`.", code="invalid_message")
    if data["type"] not in known:
        return UsageError(f"Unknown message type {str(data['type'])[:40]!r} (known: {', '.join(known)}).",
                          code="unknown_message")
    invalid = invalid_request(exc, f"{data['type']} message")
    return UsageError(invalid.message, code="invalid_message", **invalid.details)


def ws_routes(hub: Hub, slot: EngineSlot, auth: WebAuth, chats: ChatSlot | None = None) -> list[BaseRoute]:
    async def endpoint(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not auth.origin_allowed(origin):
            log.info("refused a websocket from origin %r", origin)
            await websocket.send_denial_response(JSONResponse(
                {"code": "forbidden_origin", "message": f"Origin {origin!r} may not open /ws."}, status_code=403))
            return
        await websocket.accept()
        await Connection(websocket, hub, slot, auth, auth.authenticate(websocket), chats).serve()

    return [WebSocketRoute("/ws", endpoint)]
