"""Notifications: a run waits at a checkpoint, is blocked, fails or completes; someone should know.

A notifier loop (in `flowrun serve`) looks at the runs that changed, records one notification per
moment (a claim keyed by the run and the moment, so several servers notify once) and delivers it
to the workspace's outgoing webhook, if one is configured: a JSON POST signed like GitHub's
(`X-Flowrun-Signature-256: sha256=<HMAC-SHA256 of the body>`), retried with exponential backoff.
Deliveries run in the notifier's own task group with their own deadlines: a receiver that hangs
holds up nothing but its own delivery, never the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import BaseModel

from ..flows.enums import ExecutionMode, RunStatus
from ..flows.errors import FlowrunError, UsageError
from ..flows.run import Run, new_id, now
from ..storage.base import RecordRow

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("flowrun.runtime")

NOTIFICATION = "notification"
NOTIFY_STATUSES = (RunStatus.PAUSED, RunStatus.BLOCKED, RunStatus.FAILED, RunStatus.COMPLETED)
RECENT_RUNS = 200
POLL_S = 1.0


class Notification(BaseModel):
    id: str
    workspace: str
    run_id: str
    flow: str
    status: RunStatus
    title: str
    message: str
    url: str
    at: datetime
    delivered: bool | None = None  # None: no webhook configured; False: gave up
    attempts: int = 0
    error: str = ""


@dataclass(frozen=True)
class Webhooks:
    """Outgoing webhook URLs per workspace, and the secret they are signed with.

    `FLOWRUN_NOTIFY_WEBHOOK`: `URL` (the default workspace) or `WORKSPACE=URL` entries separated
    by `;`. `FLOWRUN_NOTIFY_SECRET`: the HMAC key (required with a webhook)."""

    urls: Mapping[str, str] = field(default_factory=dict)
    secret: bytes = b""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Webhooks:
        urls: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in env.get("FLOWRUN_NOTIFY_WEBHOOK", "").split(";"))):
            workspace, sep, url = entry.partition("=") if "=" in entry.split("://", 1)[0] else ("", "", entry)
            workspace = workspace.strip() if sep else "default"
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"FLOWRUN_NOTIFY_WEBHOOK: {entry!r} is not an http(s) URL")
            urls[workspace] = url.strip()
        secret = env.get("FLOWRUN_NOTIFY_SECRET", "")
        if urls and not secret:
            raise UsageError("FLOWRUN_NOTIFY_WEBHOOK needs FLOWRUN_NOTIFY_SECRET: deliveries are always signed")
        return cls(urls=urls, secret=secret.encode())


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def moment(run: Run) -> str | None:
    """What a notification is about, as a key: one per checkpoint reached, block, or ending."""
    if run.status == RunStatus.PAUSED and run.checkpoint is not None:
        return f"paused:{run.checkpoint.step}:{run.checkpoint.reached_at.isoformat()}"
    if run.status == RunStatus.BLOCKED and run.blocked is not None:
        return f"blocked:{run.blocked.step}:{run.version}"
    if run.status in (RunStatus.FAILED, RunStatus.COMPLETED):
        return f"{run.status.value}:{run.finished_at.isoformat() if run.finished_at else run.version}"
    return None


def _when(run: Run) -> datetime | None:
    if run.status == RunStatus.PAUSED and run.checkpoint is not None:
        return run.checkpoint.reached_at
    return run.finished_at or (run.steps[run.blocked.step].finished_at
                               if run.blocked and run.blocked.step is not None else None)


def describe(run: Run, url: str) -> tuple[str, str]:
    flow = run.flow.name
    if run.status == RunStatus.PAUSED and run.checkpoint is not None:
        step = run.steps[run.checkpoint.step].name
        review = " (background run waiting for review)" if run.execution_mode == ExecutionMode.BACKGROUND else ""
        return f"{flow}: waiting for you at {step!r}{review}", run.checkpoint.message
    if run.status == RunStatus.BLOCKED and run.blocked is not None:
        return f"{flow}: blocked ({run.blocked.cause.value})", f"{run.blocked.message} Fix: {run.blocked.fix}"
    if run.status == RunStatus.FAILED:
        return f"{flow}: failed", run.error or "The run failed."
    return f"{flow}: completed", f"Open {url} for the timeline and the transcript."


Post = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


async def _httpx_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx2

    async with httpx2.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        response = await client.post(url, content=body, headers=headers)
        return response.status_code


class Notifier:
    """Records and delivers notifications; `run` loops, `tick` looks once (tests drive it)."""

    def __init__(self, engine: Engine, webhooks: Webhooks, *, run_url: str = "", post: Post = _httpx_post,
                 backoff_s: float = 1.0, attempts: int = 6, timeout_s: float = 15.0,
                 since: datetime | None = None) -> None:
        self.engine = engine
        self.webhooks = webhooks
        self.run_url = run_url
        self.post = post
        self.backoff_s = backoff_s
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.since = since or now()  # moments before the notifier first ran are history, not news

    @property
    def _store(self) -> Any:
        return self.engine.deps.store

    async def tick(self, tg: TaskGroup) -> list[Notification]:
        """Record a notification for each new moment; start its delivery in `tg`."""
        store = self._store
        runs: dict[str, Run] = {r.id: r for r in await store.runs_with_status([RunStatus.PAUSED, RunStatus.BLOCKED])}
        from ..storage.base import RunFilter

        for run in await store.list_runs(RunFilter(status=[RunStatus.FAILED, RunStatus.COMPLETED], limit=RECENT_RUNS)):
            runs.setdefault(run.id, run)
        made: list[Notification] = []
        for run in runs.values():
            key, when = moment(run), _when(run)
            if key is None or when is None or when < self.since:
                continue
            if not await store.claim(f"notify:{run.id}:{key}", {"run_id": run.id, "status": run.status.value}):
                continue
            url = self.run_url.format(run_id=run.id) if self.run_url else ""
            title, message = describe(run, url)
            note = Notification(id=new_id("note"), workspace=run.workspace, run_id=run.id, flow=run.flow.id,
                                status=run.status, title=title, message=message, url=url, at=now())
            target = self.webhooks.urls.get(run.workspace)
            if target is not None:
                note = note.model_copy(update={"delivered": False})
            await self._save(note)
            made.append(note)
            if target is not None:
                tg.start_soon(self._deliver, note, target, name=f"notify {note.id}")
        return made

    async def _save(self, note: Notification) -> None:
        await self._store.put_record(RecordRow(id=note.id, kind=NOTIFICATION, title=note.title, body=note.message,
                                               data=note.model_dump(mode="json")))

    async def _deliver(self, note: Notification, url: str) -> None:
        body = json.dumps({"type": "flowrun.notification", **note.model_dump(mode="json",
                           exclude={"delivered", "attempts", "error"})}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "flowrun",
                   "X-Flowrun-Event": note.status.value, "X-Flowrun-Delivery": note.id,
                   "X-Flowrun-Signature-256": sign(self.webhooks.secret, body)}
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                with anyio.fail_after(self.timeout_s):
                    status = await self.post(url, body, headers)
                if 200 <= status < 300:
                    await self._save(note.model_copy(update={"delivered": True, "attempts": attempt, "error": ""}))
                    return
                error = f"the receiver answered {status}"
            except TimeoutError:
                error = f"the receiver did not answer within {self.timeout_s:g} s"
            except Exception as exc:  # any failure of the network is a failed attempt, retried
                error = f"{type(exc).__name__}: {exc}"
            log.info("notification %s to %s failed (attempt %d): %s", note.id, url, attempt, error)
            await anyio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning("notification %s could not be delivered to %s: %s", note.id, url, error)
        await self._save(note.model_copy(update={"delivered": False, "attempts": self.attempts, "error": error}))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                try:
                    await self.tick(tg)
                except FlowrunError as exc:
                    log.warning("notifications: %s", exc.message)
                await anyio.sleep(POLL_S)


async def list_notifications(engine: Engine, workspace: str, limit: int = 50) -> list[Notification]:
    """Newest first."""
    rows = await engine.deps.store.list_records(NOTIFICATION)
    notes = [Notification.model_validate(r.data) for r in rows]
    return sorted((n for n in notes if n.workspace == workspace), key=lambda n: n.at, reverse=True)[:limit]
