"""Fan-out of run events to websocket connections: one store subscription per watched run.

However many connections watch a run, the server follows its log once (a `RunFeed`: the
store's subscription, which also picks up events other processes commit) and encodes each event
once; connections get the encoded frame. A connection that joins replays the stored events
itself and then switches to the feed:

    1. the feed is started and knows its tail T (every event up to T is committed);
    2. the connection registers with the feed: from now on it is handed every event after T;
    3. it reads the stored events after its `after_seq` (up to at least T, since those are
       committed) while the feed's events are held back;
    4. it sends the held-back events it has not sent yet (by seq), and is live.
No gap and no duplicate, by construction. Topic feeds (`sessions`, `tasks`) poll the workspace's
runs and send a row whenever a run's version changes; they and the `notifications` feeds are
pollers (`poller`: one loop, one registry, for every polled topic).

Every outgoing frame goes through the connection's bounded `Outbox`; a live frame that does not
fit marks the connection as a slow consumer, which is then closed (the client reconnects from
its last seq). Replay waits for room instead: it is the client's own backlog.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..flows.enums import Scope
from ..flows.errors import FlowrunError
from ..flows.events import Event
from ..runtime.access import Actor
from ..tools.face import EngineSlot
from .chats import ChatSlot, is_chat_id
from .models import session_view, task_view
from .notefeed import NoteFeed
from .poller import Poller, Pollers
from .protocol import EventMessage, Topic

log = logging.getLogger("flowrun.web")

OUTBOX_LIMIT = 2048
"""Frames a connection may have waiting to be written before it counts as a slow consumer."""
TOPIC_ROWS = 100
_FRAME_CACHE = 8192


class Outbox:
    """One connection's frames waiting to be written, bounded."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self.limit = limit
        self._frames: deque[str] = deque()
        self._wakeup = anyio.Event()
        self._room = anyio.Event()
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: str) -> bool:
        """Queue a live frame; past the limit, flag the connection as a slow consumer instead."""
        if self.closed or self.overflowed:
            return False
        if len(self._frames) >= self.limit:
            self.mark_slow()
            return False
        self._frames.append(frame)
        self._wakeup.set()
        return True

    async def put(self, frame: str) -> None:
        """Queue a frame the sender may wait for (replay, answers): waits for room."""
        while len(self._frames) >= self.limit and not (self.closed or self.overflowed):
            self._room = anyio.Event()
            await self._room.wait()
        self.offer(frame)

    async def ready(self) -> None:
        """Wait until there is a frame to take (or the outbox is closed or overflowed)."""
        while not self._frames and not (self.closed or self.overflowed):
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def take(self) -> list[str]:
        """Every queued frame, oldest first (empty if none)."""
        frames = list(self._frames)
        self._frames.clear()
        self._room.set()
        return frames

    def mark_slow(self) -> None:
        self.overflowed = True
        self._frames.clear()
        self._wakeup.set()
        self._room.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._room.set()


@dataclass(eq=False)
class RunListener:
    """One connection's subscription to one run: held back while it replays, then live."""

    outbox: Outbox
    last_seq: int
    replaying: bool = True
    held: list[tuple[int, str]] = field(default_factory=list)
    failed: FlowrunError | None = None
    on_failure: Callable[[FlowrunError], None] | None = None
    live: anyio.Event = field(default_factory=anyio.Event)

    def deliver(self, seq: int, frame: str) -> None:
        if self.replaying:
            self.held.append((seq, frame))
            if len(self.held) > self.outbox.limit:  # replay is too slow to ever catch up
                self.held.clear()
                self.outbox.mark_slow()
            return
        if seq > self.last_seq:
            self.last_seq = seq
            self.outbox.offer(frame)

    def go_live(self) -> None:
        """Replay is done (up to `last_seq`): send what was held back and is newer."""
        held, self.held = self.held, []
        self.replaying = False
        for seq, frame in held:
            self.deliver(seq, frame)
        self.live.set()

    def fail(self, exc: FlowrunError) -> None:
        self.failed = exc
        if self.on_failure is not None:
            self.on_failure(exc)


def encode_event(event: Event) -> str:
    return ('{"type":"event","run_id":' + json.dumps(event.run_id) + ',"seq":' + str(event.seq)
            + ',"event":' + event.model_dump_json() + "}")


class FrameCache:
    """Encoded frames by (run, seq): a stored event never changes, so encode it once."""

    def __init__(self, size: int = _FRAME_CACHE) -> None:
        self._size = size
        self._frames: OrderedDict[tuple[str, int], str] = OrderedDict()

    def frame(self, event: Event) -> str:
        key = (event.run_id, event.seq)
        found = self._frames.get(key)
        if found is None:
            found = self._frames[key] = encode_event(event)
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return found


class RunFeed:
    """Follows one run's log for every listener; ends when the last one leaves."""

    def __init__(self, hub: Hub, run_id: str, workspace: str) -> None:
        self.hub = hub
        self.run_id = run_id
        self.reader = Actor(id="flowrun-web", workspace=workspace, scopes=frozenset({Scope.READ}))
        self.listeners: set[RunListener] = set()
        self.tail = 0
        self.started = anyio.Event()
        self.failed: FlowrunError | None = None
        self.scope = anyio.CancelScope()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            try:
                stream = await self._open()
                self.started.set()
                task_status.started()
                async for event in stream:
                    self.tail = event.seq
                    frame = self.hub.frames.frame(event)
                    for listener in list(self.listeners):
                        listener.deliver(event.seq, frame)
            except FlowrunError as exc:
                log.info("the feed of run %s ended: %s", self.run_id, exc.code)
                self.failed = exc
                for listener in list(self.listeners):
                    listener.fail(exc)
                if not self.started.is_set():
                    self.started.set()
                    task_status.started()
            finally:
                self.started.set()
                self.hub.feed_ended(self)


    async def _open(self) -> AsyncIterator[Event]:
        """The log to follow from its tail: a run's (through the engine) or a chat's (the
        connection authorized the chat; the feed reads it for every listener)."""
        if is_chat_id(self.run_id) and self.hub.chats is not None:
            source = self.hub.chats.get()
            self.tail = await source.last_seq(self.run_id)
            return source.follow(self.run_id, self.tail)
        engine = self.hub.slot.get()
        self.tail = (await engine.get_run(self.reader, self.run_id)).last_seq
        return engine.subscribe(self.reader, self.run_id, self.tail)


class TopicFeed(Poller):
    """The newest runs of a workspace; a row goes out whenever a run's version changes."""

    def __init__(self, hub: Hub, topic: Topic, workspace: str) -> None:
        super().__init__(f"the {topic} feed of {workspace}")
        self.hub = hub
        self.topic = topic
        self.reader = Actor(id="flowrun-web", workspace=workspace, scopes=frozenset({Scope.READ}))
        self.rows: dict[str, tuple[int, str]] = {}  # run id -> (version, frame), newest first

    async def poll(self) -> list[str]:
        engine = self.hub.slot.get()
        runs = await engine.list_runs(self.reader, limit=TOPIC_ROWS)
        rows: dict[str, tuple[int, str]] = {}
        changed: list[str] = []
        for run in reversed(runs):  # oldest first, so a client that prepends ends newest-first
            known = self.rows.get(run.id)
            if known is not None and known[0] == run.version:
                rows[run.id] = known
                continue
            frame = self._frame(run)
            if frame is None:
                continue
            rows[run.id] = (run.version, frame)
            changed.append(frame)
        self.rows = rows
        return changed

    def _frame(self, run: object) -> str | None:
        from ..flows.run import Run

        assert isinstance(run, Run)
        public_url = self.hub.public_url
        row = session_view(run, public_url) if self.topic == "sessions" else task_view(run, public_url)
        if row is None:
            return None
        return EventMessage(topic=self.topic, run_id=run.id, seq=run.last_seq,
                            event=row.model_dump(mode="json")).model_dump_json()

    def snapshot(self) -> list[str]:
        return [frame for _, frame in self.rows.values()]


@dataclass(eq=False)
class Hub:
    """Owns the feeds (in the app's lifespan task group) and the shared frame cache."""

    slot: EngineSlot
    public_url: str
    chats: ChatSlot | None = None
    frames: FrameCache = field(default_factory=FrameCache)
    feeds: dict[str, RunFeed] = field(default_factory=dict)
    topics: Pollers = field(default_factory=Pollers)  # the polled topics' feeds
    tg: TaskGroup | None = None
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def changed(self) -> None:
        """Wait until a listener joins or leaves (tests and the benchmark watch the hub)."""
        await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _group(self) -> TaskGroup:
        if self.tg is None:
            raise RuntimeError("the websocket hub is not running (it starts with the app's lifespan)")
        return self.tg

    async def join_run(self, run_id: str, workspace: str, listener: RunListener) -> RunFeed:
        """Register `listener` with the run's feed (started if needed); returns the feed, whose
        `tail` every listener is handed events after."""
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(self, run_id, workspace)
            await self._group().start(feed.run)
        else:
            await feed.started.wait()
        if feed.failed is not None:
            raise feed.failed
        feed.listeners.add(listener)
        self._touch()
        return feed

    def leave_run(self, run_id: str, listener: RunListener) -> None:
        feed = self.feeds.get(run_id)
        if feed is None:
            return
        feed.listeners.discard(listener)
        self._touch()
        if not feed.listeners:
            self.feeds.pop(run_id, None)
            feed.scope.cancel()

    def feed_ended(self, feed: RunFeed) -> None:
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    async def join_topic(self, topic: Topic, actor: Actor, outbox: Outbox) -> list[str]:
        """Register `outbox` for the topic; returns the frames to send first (the current rows,
        or the person's unread count). `sessions` and `tasks` are the workspace's, polled once
        for all its people; `notifications` are each person's own (see `notefeed`)."""
        key, make = self._topic_feed(topic, actor)
        return await self.topics.join(key, make, outbox, self._group())

    def leave_topic(self, topic: Topic, actor: Actor, outbox: Outbox) -> None:
        self.topics.leave(self._topic_feed(topic, actor)[0], outbox)

    def _topic_feed(self, topic: Topic, actor: Actor) -> tuple[Hashable, Callable[[], Poller]]:
        if topic == "notifications":
            return (topic, actor), lambda: NoteFeed(self, actor)
        return (topic, actor.workspace), lambda: TopicFeed(self, topic, actor.workspace)

    def stats(self) -> dict[str, int]:
        return {"run_feeds": len(self.feeds), "listeners": sum(len(f.listeners) for f in self.feeds.values()),
                "topic_feeds": len(self.topics)}  # sessions, tasks and notifications feeds

