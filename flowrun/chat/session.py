"""One chat, live: its agent answering in turn, and a follower per run it started.

The session is rebuilt from the chat's log when it opens (after a restart too): a reply that was
cut off is closed and marked `interrupted`, tool calls left without a result get one, and
whatever is still unanswered is answered. Everything the agent says is streamed as events, so
the websocket and the terminal see each piece as it is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..flows.chat import (
    Chat,
    ChatDelta,
    ChatMessage,
    ChatRole,
    ChatToolUsed,
    NoteKind,
    ReplyStatus,
    new_message_id,
)
from ..flows.enums import Scope
from ..flows.errors import FlowrunError, NotFound, PermissionDenied
from ..flows.events import ChatEventData, Event
from ..flows.redact import Redactor, StreamRedactor
from ..runtime.access import Actor
from .conversation import ChatState, Input, has_news, rebuild
from .notes import QUIET, note_for
from .reply import Replier
from .tools import ChatTools, open_chat_tools

if TYPE_CHECKING:
    from .service import ChatService

log = logging.getLogger("flowrun.chat")
STEERING_TOOLS = frozenset({"start_flow", "decide_checkpoint", "resume_run", "retry_run"})


def chat_actor(chat: Chat) -> Actor:
    return Actor(id=chat.owner, workspace=chat.workspace,
                 scopes=frozenset(Scope(s) for s in chat.scopes if s in Scope._value2member_map_))


class ChatSession:
    def __init__(self, service: ChatService, chat: Chat) -> None:
        self.service = service
        self.chat = chat
        self.state = ChatState()
        self.ready = anyio.Event()
        self._wake = anyio.Event()
        self._following: set[str] = set()
        self._tg: TaskGroup | None = None
        self._tools: ChatTools | None = None
        self._replying = False
        self._idle = anyio.Event()
        self._streams: dict[str, StreamRedactor] = {}  # replies being streamed, by message id
        self._row_lock = anyio.Lock()
        self._notified: set[int] = set()
        self.closed = False

    def close(self) -> None:
        """Another process hosts the chat now (this one stalled past its lease): stop here."""
        self.closed = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    @property
    def busy(self) -> bool:
        return self._replying or bool(self.state.pending) or self.state.needs_continue

    async def wait_idle(self) -> None:
        """Until the agent has answered everything pending."""
        while self.busy:
            await self._idle.wait()

    @property
    def actor(self) -> Actor:
        return chat_actor(self.chat)

    # -- writing to the chat's log -----------------------------------------------------------------

    async def append(self, *events: ChatEventData) -> int:
        tails = self._end_streams(events)
        written = await self.service.store.append_chat(self.chat.id, [*tails, *events])
        return written[-1].seq if written else 0

    async def append_with_row(self, events: list[ChatEventData], **changes: Any) -> list[Event]:
        """Append and rewrite the chat row in one transaction; row changes are serialized, so two
        writers (a run linked, a message that sets the title) never drop each other's change."""
        async with self._row_lock:
            chat = self.chat.model_copy(update=changes)
            tails = self._end_streams(events)
            written = await self.service.store.append_chat(self.chat.id, [*tails, *events], chat=chat)
            self.chat = chat
            return written

    def notify(self, item: Input) -> None:
        """Something to answer. Once per seq: a person's message arrives both from `post` here
        and through the chat's log (where messages stored by other processes arrive)."""
        if item.seq in self._notified:
            return
        self._notified.add(item.seq)
        self.state.pending.append(item)
        self._wake.set()

    # -- the session's life --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        events = await self.service.store.events(self.chat.id)
        self.state = rebuild(events)
        self._notified.update(item.seq for item in self.state.pending)
        if self.state.open_reply is not None:
            message_id, partial = self.state.open_reply
            await self.append(ChatMessage(message_id=message_id, role=ChatRole.ASSISTANT, text=partial,
                                          status=ReplyStatus.INTERRUPTED,
                                          error="flowrun stopped while this reply was being written"))
        async with open_chat_tools(self.service.engine, self.service.public_url, lambda: self.actor,
                                   self.chat.id) as tools, anyio.create_task_group() as tg:
            self._tools, self._tg = tools, tg
            for run_id, noted in self.state.runs.items():
                await self._maybe_follow(run_id, noted, on_open=True)
            tg.start_soon(self._follow_log, events[-1].seq if events else 0)
            self.ready.set()
            task_status.started()
            replier = Replier(self, tools)
            while True:
                if self.state.pending or self.state.needs_continue:
                    self._replying = True
                    try:
                        await replier.answer()
                    except Exception as exc:  # a bug must not take every chat (and the server) down
                        log.exception("chat %s: answering failed", self.chat.id)
                        self.state.pending.clear()
                        self.state.needs_continue = False
                        with anyio.CancelScope(shield=True):
                            await self.tell(f"flowrun failed while answering ({type(exc).__name__}); your message "
                                            "is stored. Send another message to try again.")
                    finally:
                        self._replying = False
                    continue
                self._idle.set()
                self._idle = anyio.Event()
                with anyio.move_on_after(self.service.idle_s):
                    await self._wake.wait()
                if not self._wake.is_set() and not self.busy and not self._following:
                    self.closed = True  # no await between the check and this: a message finds it closed
                    self.service.closing(self)
                    tg.cancel_scope.cancel()
                    return
                self._wake = anyio.Event()

    async def _follow_log(self, after_seq: int) -> None:
        """This process hosts the chat (see `ChatService`), so it answers every message stored in
        it, also those a person posted through another server: they arrive through the log."""
        async for event in self.service.store.subscribe(self.chat.id, after_seq):
            data = event.data
            if isinstance(data, ChatMessage) and data.role is ChatRole.USER:
                if event.seq not in self._notified:  # stored elsewhere, with the row it changed
                    async with self._row_lock:  # (a title, the person's scopes): keep it
                        self.chat = await self.service.store.get_chat(self.chat.id)
                self.notify(Input(event.seq, ChatRole.USER, data.text))

    # -- following runs ------------------------------------------------------------------------------

    async def link_run(self, run_id: str, flow: str, flow_name: str, url: str,
                       before: list[ChatEventData] | None = None) -> None:
        """A run this chat started: record the link (after `before`, in the same commit), then
        follow it."""
        from ..flows.chat import ChatRunLinked

        if run_id not in self.chat.runs:
            link = ChatRunLinked(run_id=run_id, flow=flow, flow_name=flow_name, url=url)
            await self.append_with_row([*(before or []), link], runs=[*self.chat.runs, run_id])
        elif before:
            await self.append(*before)
        self.state.runs.setdefault(run_id, 0)
        await self._maybe_follow(run_id, self.state.runs[run_id], on_open=False)

    async def touched_run(self, tool: str, run_id: str | None) -> None:
        """A steering tool acted on a run of this chat: follow it again if it had gone quiet."""
        if tool in STEERING_TOOLS and run_id in self.chat.runs:
            await self._maybe_follow(run_id, self.state.runs.get(run_id, 0), on_open=False)

    async def _maybe_follow(self, run_id: str, after_seq: int, *, on_open: bool) -> None:
        if run_id in self._following or self._tg is None:
            return
        if on_open:
            try:
                run = await self.service.engine.get_run(self.actor, run_id)
            except (NotFound, PermissionDenied):
                return
            if not has_news(self.state, run_id, run.status.value):
                return
        self._following.add(run_id)
        self._tg.start_soon(self._follow, run_id, after_seq)

    async def _follow(self, run_id: str, after_seq: int) -> None:
        engine = self.service.engine
        try:
            async for event in engine.subscribe(self.actor, run_id, after_seq):
                if event.data.type not in ("checkpoint", "decision", "run_status"):
                    continue
                run = await engine.get_run(self.actor, run_id)
                note = note_for(run, event)
                if note is not None:
                    seq = await self.append(note)
                    self.state.runs[run_id] = event.seq
                    if note.wants_reply:
                        self.notify(Input(seq, ChatRole.NOTE, note.text, run_id))
                if event.data.type == "run_status" and event.data.status in QUIET and await self._quiet(run_id, event.seq):
                    break
        except FlowrunError as exc:
            log.warning("chat %s stopped following run %s: %s", self.chat.id, run_id, exc.message)
        except Exception:  # the run goes on; only this chat's notes about it stop
            log.exception("chat %s stopped following run %s", self.chat.id, run_id)
        finally:
            self._following.discard(run_id)

    async def _quiet(self, run_id: str, seq: int) -> bool:
        """Nothing changed the run's status after `seq`: it has gone quiet (until resumed)."""
        later = await self.service.engine.events(self.actor, run_id, after_seq=seq)
        return not any(e.data.type == "run_status" for e in later)

    # -- telling the person something went wrong -------------------------------------------------------

    async def tell(self, text: str, *, kind: NoteKind = NoteKind.ERROR) -> None:
        await self.append(ChatMessage(message_id=new_message_id(), role=ChatRole.NOTE, text=text, note=kind))

    async def stream_piece(self, message_id: str, text: str) -> None:
        """A piece of a streamed reply, redacted as a stream: a secret split across pieces is
        caught (the store redacts each piece on its own), the held tail follows with the next
        piece or before the event that ends the stretch (a tool use, the whole message)."""
        stream = self._streams.get(message_id)
        if stream is None:
            redactor = self.service.engine.deps.redactor or Redactor()
            stream = self._streams[message_id] = redactor.stream()
        safe = stream.feed(text)
        if safe:
            await self.append(ChatDelta(message_id=message_id, text=safe))

    def _end_streams(self, events: Sequence[ChatEventData]) -> list[ChatDelta]:
        tails: list[ChatDelta] = []
        for event in events:
            if isinstance(event, ChatMessage | ChatToolUsed) and event.message_id in self._streams:
                tail = self._streams.pop(event.message_id).finish()
                if tail:
                    tails.append(ChatDelta(message_id=event.message_id, text=tail))
        return tails

