"""`ChatService`: chats for every face (web, terminal). Create, list, read, post, follow.

It owns one session per open chat (a task in its task group: the agent and the run followers).
A person's message is acknowledged once it is durably stored; the reply follows as events.
On start it reopens the chats that have something to do: an unanswered message, a reply a
restart cut short, a run still going. A session with nothing to do for `idle_s` (nothing to
answer, no run to follow) closes; the next message or subscriber opens it again from the log.

Several servers may share one database: a chat is hosted by one engine process at a time, on a
lease like a run's (`Store.host_chat`), renewed while its session is open. Only the host answers
and writes notes about the chat's runs; a message posted through another server is stored there
and reaches the host through the chat's log. Should the host go away before answering, the
server that stored the message takes the chat over once the lease lapses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..flows.chat import MAX_MESSAGE_CHARS, Chat, ChatDelta, ChatMessage, ChatRole, new_message_id
from ..flows.enums import Scope
from ..flows.errors import NotFound, UsageError
from ..flows.events import Event
from ..llm.base import ModelProvider
from ..runtime.access import Actor
from ..runtime.engine import Engine
from ..storage.base import ChatStore
from .conversation import Input, has_news, rebuild
from .session import ChatSession

log = logging.getLogger("flowrun.chat")
RECOVER_LIMIT = 200
TITLE_CHARS = 60
IDLE_S = 600.0


class ChatService:
    """Args:
        engine: the running engine; its store must also be a `ChatStore` (SQLite is).
        public_url: where run pages live (links in the agent's replies).
        model: the chat model string (`scripted` is the offline chat model).
        provider_for: model string -> provider, as the engine's steps get theirs.
        idle_s: how long a session with nothing to do stays open.
    """

    def __init__(self, engine: Engine, *, public_url: str, model: str = "scripted",
                 provider_for: Callable[[str], ModelProvider] | None = None, idle_s: float = IDLE_S) -> None:
        store = engine.deps.store
        if not hasattr(store, "append_chat"):
            raise UsageError(f"the store {type(store).__name__} does not keep chats")
        self.engine = engine
        self.store: ChatStore = store  # type: ignore[assignment]  # checked just above
        self.public_url = public_url.rstrip("/")
        self.model = model
        self._provider_for = provider_for or engine.deps.provider_for
        self.idle_s = idle_s
        self._sessions: dict[str, ChatSession] = {}
        self._tg: TaskGroup | None = None
        self.host = engine.leases.owner  # this process, as the host of the chats it answers in
        self._lease_s = engine.leases.lease_s

    @classmethod
    def from_settings(cls, engine: Engine, settings: object) -> ChatService:
        """The chat model is `FLOWRUN_CHAT_MODEL`, else the configured model (`FLOWRUN_MODEL`)."""
        env: Mapping[str, str] = getattr(settings, "env", {})
        model = env.get("FLOWRUN_CHAT_MODEL", "").strip() or str(getattr(settings, "model", "scripted"))
        return cls(engine, public_url=str(getattr(settings, "public_url", "")), model=model)

    async def __aenter__(self) -> ChatService:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._tg.start_soon(self._keep_hosting, name="renew chat leases")
            await self._recover()
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # a reply cut here is marked `interrupted` at the next start
        try:
            await self._tg.__aexit__(None, None, None)  # the caller's own exception goes on unwrapped
        finally:
            self._tg = None
            hosted, self._sessions = sorted(self._sessions), {}
            with anyio.CancelScope(shield=True):  # another server may take them over at once
                try:
                    await self.store.release_chat_hosts(self.host, hosted)
                except Exception:  # the leases lapse by themselves
                    log.warning("could not let go of %d chat(s)", len(hosted), exc_info=True)

    def provider_for_chat(self, chat: Chat) -> tuple[ModelProvider, str]:
        model = chat.model or self.model
        if model.strip() == "scripted":
            from .offline import OfflineChatModel

            return OfflineChatModel(), "scripted"
        return self._provider_for(model), model

    # -- chats -----------------------------------------------------------------------------------------

    async def create(self, actor: Actor, *, title: str = "", model: str = "") -> Chat:
        """A new, empty chat owned by `actor`. Needs flows.read (a chat that can see nothing is useless)."""
        actor.require(Scope.READ, "chat")
        if len(title) > 200:
            raise UsageError("a chat title is at most 200 characters", code="title_too_long")
        chat = Chat(owner=actor.id, workspace=actor.workspace, scopes=sorted(s.value for s in actor.scopes),
                    title=title.strip(), model=model.strip())
        chat, _ = await self.store.create_chat(chat)
        return chat

    async def list_chats(self, actor: Actor, *, limit: int = 50) -> list[Chat]:
        """The actor's chats, most recently active first."""
        actor.require(Scope.READ, "list chats")
        return await self.store.list_chats(workspace=actor.workspace, owner=actor.id, limit=limit)

    async def get(self, actor: Actor, chat_id: str) -> Chat:
        """Raises NotFound for a chat that does not exist or is not the actor's (the same answer:
        another person's chat does not exist for you)."""
        try:
            chat = await self.store.get_chat(chat_id)
        except NotFound:
            chat = None
        if chat is None or chat.owner != actor.id or chat.workspace != actor.workspace:
            raise NotFound(f"no chat {chat_id!r} of yours", chat_id=chat_id)
        return chat

    async def post(self, actor: Actor, chat_id: str, text: str) -> Event:
        """Store the person's message (durably) and return its event; the agent answers after.

        Raises:
            UsageError: `empty_message`, `message_too_long`.
            NotFound: no such chat of yours.
        """
        if not text.strip():
            raise UsageError("the message is empty: write something", code="empty_message")
        if len(text) > MAX_MESSAGE_CHARS:
            raise UsageError(f"the message is {len(text)} characters; at most {MAX_MESSAGE_CHARS} are accepted",
                             code="message_too_long", limit=MAX_MESSAGE_CHARS)
        chat = await self.get(actor, chat_id)
        session = await self._session(chat)
        current = session.chat if session is not None else chat
        changes: dict[str, Any] = {}
        scopes = sorted(s.value for s in actor.scopes)
        if scopes != sorted(current.scopes):
            changes["scopes"] = scopes
        if not current.title:
            line = text.strip().splitlines()[0]
            changes["title"] = line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
        message = ChatMessage(message_id=new_message_id(), role=ChatRole.USER, text=text, actor=actor.id)
        if session is None:  # hosted by another server: it reads the message from the log
            if changes:  # the row as stored now (the host may have just changed it)
                fresh = (await self.store.get_chat(chat_id)).model_copy(update=changes)
                events = await self.store.append_chat(chat_id, [message], chat=fresh)
            else:
                events = await self.store.append_chat(chat_id, [message])
            assert self._tg is not None
            self._tg.start_soon(self._stand_by, chat, events[0].seq, name=f"chat {chat_id} stand-by")
        elif changes:
            events = await session.append_with_row([message], **changes)
        else:
            events = await self.store.append_chat(chat_id, [message])
        if session is not None and session.closed:  # it went idle meanwhile: a new one reads the log
            await self._session(session.chat)
        elif session is not None:
            session.notify(Input(events[0].seq, ChatRole.USER, text))
        return events[0]

    async def events(self, actor: Actor, chat_id: str, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        await self.get(actor, chat_id)
        return await self.store.events(chat_id, after_seq, limit)

    async def subscribe(self, actor: Actor, chat_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Stored events after `after_seq`, then live ones (the chat's own log, like a run's)."""
        chat = await self.get(actor, chat_id)
        await self._session(chat)
        async for event in self.store.subscribe(chat_id, after_seq):
            yield event

    async def last_seq(self, chat_id: str) -> int:
        """The chat's newest seq (no ownership check: for a feed the caller has authorized)."""
        return (await self.store.get_chat(chat_id)).last_seq

    def follow(self, chat_id: str, after_seq: int) -> AsyncIterator[Event]:
        """The chat's events after `after_seq`, stored then live (no ownership check)."""
        return self.store.subscribe(chat_id, after_seq)

    async def wait_idle(self, chat_id: str, timeout_s: float = 30.0) -> None:
        """Wait until the chat's agent has nothing left to answer (tests, the terminal), here or
        on the server that hosts the chat (then it shows in the log)."""
        with anyio.fail_after(timeout_s):
            while (session := self._sessions.get(chat_id)) is None:
                state = rebuild(await self.store.events(chat_id))
                if not (state.pending or state.needs_continue or state.open_reply):
                    return
                await anyio.sleep(0.1)
            await session.wait_idle()

    # -- sessions --------------------------------------------------------------------------------------

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def closing(self, session: ChatSession) -> None:
        """Called by an idle session as it closes (with no await before it returns)."""
        if self._sessions.get(session.chat.id) is session:
            del self._sessions[session.chat.id]
            if self._tg is not None:
                self._tg.start_soon(self._let_go, session.chat.id)

    async def _let_go(self, chat_id: str) -> None:
        """An idle session closed: another server may host the chat from now on. (Should this
        process open it again meanwhile, `_keep_hosting` takes the lease back.)"""
        if chat_id not in self._sessions:
            try:
                await self.store.release_chat_hosts(self.host, [chat_id])
            except Exception:  # the lease lapses by itself
                log.warning("could not let go of chat %s", chat_id, exc_info=True)

    async def _session(self, chat: Chat) -> ChatSession | None:
        """The chat's session here, opened if this process can host the chat; None while
        another live process hosts it."""
        session = self._sessions.get(chat.id)
        if session is None:
            if self._tg is None:
                raise UsageError("the chat service is not running (use `async with`)")
            if not await self.store.host_chat(chat.id, self.host, lease_s=self._lease_s,
                                              dead_owners=await self.engine.leases.dead_owners()):
                return None
            session = self._sessions.get(chat.id)  # opened while the lease was being taken
            if session is not None:
                await session.ready.wait()
                return session
            session = self._sessions[chat.id] = ChatSession(self, chat)
            try:
                await self._tg.start(session.run)
            except BaseException:
                self._sessions.pop(chat.id, None)
                raise
        await session.ready.wait()
        return session

    async def _keep_hosting(self) -> None:
        """Renew the leases of the chats with a session here, every third of the lease time. A
        lease that lapsed (this process stalled) is taken again if nobody took it meanwhile;
        a session whose chat another process now hosts is closed: that host answers."""
        while True:
            await anyio.sleep(self._lease_s / 3)
            hosted = sorted(self._sessions)
            try:
                kept = set(await self.store.renew_chat_hosts(self.host, hosted, lease_s=self._lease_s))
                for chat_id in hosted:
                    if chat_id in kept or chat_id not in self._sessions:
                        continue
                    if not await self.store.host_chat(chat_id, self.host, lease_s=self._lease_s):
                        log.warning("chat %s is answered by another process now; its session here closes", chat_id)
                        self._sessions.pop(chat_id).close()
            except Exception:  # the database is away for a moment: try again next round
                log.warning("could not renew the leases of %d chat(s)", len(hosted), exc_info=True)

    async def _stand_by(self, chat: Chat, seq: int) -> None:
        """A message stored here in a chat another process hosts: that host answers it. Should
        the host go away first (it stopped, or it let go of the chat as it went idle), this
        process takes the chat over once its lease lapses, and answers."""
        while self._tg is not None:
            await anyio.sleep(self._lease_s / 3)
            later = [e.data for e in await self.store.events(chat.id, seq)]
            if any(isinstance(d, ChatDelta) or (isinstance(d, ChatMessage) and d.role is ChatRole.ASSISTANT)
                   for d in later):
                return  # being answered
            if chat.id in self._sessions or await self._session(chat) is not None:
                return  # hosted here now: the session read the message from the log

    async def _recover(self) -> None:
        """Reopen chats with work left: something unanswered or cut short, or a run still going."""
        for chat in await self.store.list_chats(limit=RECOVER_LIMIT):
            state = rebuild(await self.store.events(chat.id))
            busy = bool(state.pending or state.needs_continue or state.open_reply)
            if not busy:
                for run_id in chat.runs:
                    try:
                        run = await self.engine.deps.store.get_run(run_id)
                    except NotFound:
                        continue
                    if has_news(state, run_id, run.status.value):
                        busy = True
                        break
            if busy:
                try:
                    await self._session(chat)
                except Exception:
                    log.exception("chat %s could not be reopened", chat.id)
