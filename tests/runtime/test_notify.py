"""Notifications: recorded once per moment, delivered signed, retried, never holding the engine."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from flowrun.flows.enums import RunStatus
from flowrun.flows.errors import UsageError
from flowrun.flows.run import now
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.engine import Engine
from flowrun.runtime.inbox import InboxFollower, inbox
from flowrun.runtime.notify import (
    NOTIFICATION,
    Notification,
    Notifier,
    Webhooks,
    list_notifications,
)
from flowrun.storage import RecordChanges, RecordRow
from tests.storekinds import StoreKind

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
SECRET = "notify-secret"
HOOKS = Webhooks.from_env({"FLOWRUN_NOTIFY_WEBHOOK": "https://hooks.example/flowrun", "FLOWRUN_NOTIFY_SECRET": SECRET})


def checkpointed(mode: str = "background") -> tuple[Catalog, ScriptedProvider]:
    cat = catalog([{"name": "Plan", "skill": "plan"},
                   {"name": "Ship", "skill": "ship", "checkpoint": {"message": "Sign off before the PR opens."}}],
                  defaults={"sandbox_profile": "noop", "execution_mode": mode})
    return cat, scripts(plan=[submit("planned")], ship=[submit("shipped")])


class Receiver:
    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers  # None: hang
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.done = anyio.Event()
        self.called = anyio.Event()

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append((url, body, headers))
        self.called.set()
        answer = self.answers.pop(0) if self.answers else 200
        if answer is None:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")
        if 200 <= answer < 300:
            self.done.set()
        return answer


async def parked(engine: Engine, status: RunStatus) -> str:
    run = await engine.start_run(ANA, "test-flow")
    await engine.wait_until(ANA, run.id, statuses=[status], timeout_s=10)
    return run.id


def test_webhook_settings_are_checked() -> None:
    assert HOOKS.urls == {"default": "https://hooks.example/flowrun"}
    both = Webhooks.from_env({"FLOWRUN_NOTIFY_WEBHOOK": "https://a.example/x; team=http://b.example/y",
                              "FLOWRUN_NOTIFY_SECRET": "k"})
    assert both.urls == {"default": "https://a.example/x", "team": "http://b.example/y"}
    with pytest.raises(UsageError, match="needs FLOWRUN_NOTIFY_SECRET"):
        Webhooks.from_env({"FLOWRUN_NOTIFY_WEBHOOK": "https://a.example/x"})
    with pytest.raises(UsageError, match="not an http"):
        Webhooks.from_env({"FLOWRUN_NOTIFY_WEBHOOK": "ftp://a.example/x", "FLOWRUN_NOTIFY_SECRET": "k"})


async def test_a_background_run_waiting_for_review_notifies_signed_and_retried(tmp_path: Path) -> None:
    cat, provider = checkpointed()
    receiver = Receiver([500, 503])
    async with running_engine(tmp_path, cat, provider) as engine:
        notifier = Notifier(engine, HOOKS, run_url="http://127.0.0.1:8765/runs/{run_id}", post=receiver,
                            backoff_s=0.01, since=now() - timedelta(seconds=1))
        run_id = await parked(engine, RunStatus.PAUSED)
        async with anyio.create_task_group() as tg:
            made = await notifier.tick(tg)
            assert await notifier.tick(tg) == []  # one notification per moment
            with anyio.fail_after(10):
                await receiver.done.wait()
        assert len(made) == 1 and made[0].run_id == run_id
        assert "waiting for you at 'Ship' (background run waiting for review)" in made[0].title
        assert len(receiver.calls) == 3  # 500, 503, then 200
        url, body, headers = receiver.calls[-1]
        assert url == "https://hooks.example/flowrun"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Flowrun-Signature-256"] == expected
        payload = json.loads(body)
        assert payload["run_id"] == run_id and payload["status"] == "paused"
        assert payload["url"] == f"http://127.0.0.1:8765/runs/{run_id}"
        [stored] = await list_notifications(engine, "default")
        assert stored.delivered is True and stored.attempts == 3

        # approving it: the completion is news too
        await engine.decide(ANA, run_id, "approve")
        await engine.wait_until(ANA, run_id, statuses=[RunStatus.COMPLETED], timeout_s=10)
        async with anyio.create_task_group() as tg:
            [done] = await notifier.tick(tg)
        assert done.status == RunStatus.COMPLETED
        assert [n.status for n in await list_notifications(engine, "default")] == [RunStatus.COMPLETED, RunStatus.PAUSED]


async def test_a_hanging_receiver_holds_up_nothing(tmp_path: Path) -> None:
    cat, provider = checkpointed("interactive")
    receiver = Receiver([None, None])
    async with running_engine(tmp_path, cat, provider) as engine:
        notifier = Notifier(engine, HOOKS, post=receiver, backoff_s=0.01, attempts=2, timeout_s=0.2,
                            since=now() - timedelta(seconds=1))
        async with anyio.create_task_group() as tg:
            await tg.start(notifier.run)
            run_id = await parked(engine, RunStatus.PAUSED)
            with anyio.fail_after(10):
                await receiver.called.wait()
            # the delivery hangs; the engine goes on deciding and running
            await engine.decide(ANA, run_id, "approve", comment="ship it")
            run = await engine.wait_until(ANA, run_id, statuses=[RunStatus.COMPLETED], timeout_s=10)
            assert run.status == RunStatus.COMPLETED
            with anyio.fail_after(10):
                while True:
                    notes = {n.status: n for n in await list_notifications(engine, "default")}
                    if RunStatus.PAUSED in notes and notes[RunStatus.PAUSED].error:
                        break
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        paused = notes[RunStatus.PAUSED]
        assert paused.delivered is False and "did not answer within 0.2 s" in paused.error


async def test_history_is_not_news_and_no_webhook_still_records(tmp_path: Path) -> None:
    cat, provider = checkpointed()
    async with running_engine(tmp_path, cat, provider) as engine:
        await parked(engine, RunStatus.PAUSED)
        async with anyio.create_task_group() as tg:
            assert await Notifier(engine, Webhooks()).tick(tg) == []  # it paused before the notifier started
            [note] = await Notifier(engine, Webhooks(), since=now() - timedelta(minutes=1)).tick(tg)
        assert note.delivered is None  # recorded for the pages; no webhook to deliver to


def recorded(note_id: str, at: datetime, workspace: str = "default", delivered: bool | None = None) -> RecordRow:
    note = Notification(id=note_id, workspace=workspace, run_id="run_x", flow="test-flow", status=RunStatus.PAUSED,
                        title=f"{note_id} is waiting", message="", url="", at=at, delivered=delivered)
    return RecordRow(id=note.id, kind=NOTIFICATION, title=note.title, data=note.model_dump(mode="json"))


async def test_the_inbox_poll_reads_only_what_changed_and_misses_nothing(
        tmp_path: Path, store_kind: StoreKind, monkeypatch: pytest.MonkeyPatch) -> None:
    cat, provider = checkpointed()
    async with running_engine(tmp_path, cat, provider, kind=store_kind) as engine:
        store = engine.deps.store
        start = now() - timedelta(hours=1)
        for i in range(30):
            await store.put_record(recorded(f"note_old_{i:02d}", start + timedelta(seconds=i)))
        await store.put_record(recorded("note_team", start, workspace="team"))  # not ana's to see

        rows: list[int] = []  # records each poll read from the store
        asked: list[int] = []  # notifications each poll asked the read state of
        changed, read = store.records_changed, store.notes_read

        async def counted(kind: str, after: int = 0, limit: int | None = None) -> RecordChanges:
            changes = await changed(kind, after, limit)
            rows.append(len(changes.records))
            return changes

        async def asking(workspace: str, actor: str, among: Sequence[str] | None = None) -> set[str]:
            asked.append(-1 if among is None else len(among))
            return await read(workspace, actor, among)

        monkeypatch.setattr(store, "records_changed", counted)
        monkeypatch.setattr(store, "notes_read", asking)
        follower = InboxFollower(ANA, limit=20)
        assert await follower.poll(engine) == []  # the first look: history, not news
        assert rows == [31] and asked == [20] and follower.inbox().unread == 20
        assert await follower.poll(engine) == []
        assert rows[-1] == 0 and asked[-1] == 20  # nothing re-read: the cost follows what changed

        same = now()  # two notifications in the same instant, written in one group commit
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.put_record, recorded("note_new_b", same))
            tg.start_soon(store.put_record, recorded("note_new_a", same))
        arrived = await follower.poll(engine)
        assert [n.id for n in arrived] == ["note_new_a", "note_new_b"] and rows[-1] == 2
        assert follower.inbox(limit=2).notifications == arrived[::-1]  # newest first
        assert follower.inbox().unread == 20  # still the newest 20

        await store.mark_notes_read("default", "ana", ["note_new_a"])
        assert await follower.poll(engine) == [] and rows[-1] == 0
        assert follower.inbox().unread == 19  # read in another tab: the count follows

        await store.put_record(recorded("note_new_b", same, delivered=True))  # written again: no news
        await store.put_record(recorded("note_old_00", start, delivered=True))  # older than all it holds
        assert await follower.poll(engine) == [] and rows[-1] == 2
        assert follower.inbox(limit=1).notifications[0].delivered is True
        assert "note_old_00" not in {n.id for n in follower.notes}
        fresh = await inbox(engine, ANA, limit=5)  # a fresh look (the page, the API) agrees with the follower
        assert fresh.notifications == follower.inbox(limit=5).notifications
        assert fresh.unread == 31  # its window is the newest 200: the 32 ana sees, one read
