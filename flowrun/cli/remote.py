"""`flowrun watch RUN_ID --server URL`: follow a run served by another machine's `flowrun serve`.

The run's summary comes from the JSON API, its events from `/ws` through `flowrun.web.client`,
which reconnects after a dropped connection and resubscribes from the last seq it printed. It
stops where the local `watch` stops: when the run parks (a checkpoint, the end, a block).
"""

from __future__ import annotations

import os
from typing import Any

import httpx2
from rich.console import Console
from rich.text import Text

from ..flows.enums import RunStatus
from ..flows.errors import FlowrunError, NotFound, PermissionDenied, UsageError, WorldError
from .render import EventPrinter, status_badge

TOKEN_ENV = "FLOWRUN_TOKEN"
PARKED = frozenset(s for s in RunStatus if s.finished)
OK = frozenset({RunStatus.COMPLETED, RunStatus.PAUSED})


async def _get_run(server: str, token: str | None, run_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx2.AsyncClient(base_url=server.rstrip("/"), headers=headers, timeout=30, trust_env=False) as http:
            response = await http.get(f"/api/runs/{run_id}")
    except httpx2.HTTPError as exc:
        raise WorldError(f"cannot reach {server}: {exc}", code="unavailable") from None
    body: dict[str, Any] = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    if response.status_code == 200:
        return body
    message = str(body.get("message") or f"{server} answered {response.status_code}")
    if response.status_code == 404:
        raise NotFound(message, run_id=run_id)
    if response.status_code in (401, 403):
        raise PermissionDenied(f"{message} (pass --token or set {TOKEN_ENV})")
    raise UsageError(message, code=str(body.get("code", "refused")))


def _header(console: Console, run: dict[str, Any]) -> None:
    line = Text(f"{run['flow_name']}  ", style="bold")
    line.append_text(status_badge(RunStatus(run["status"])))
    line.append(f"\nrun {run['id']} · started by {run['started_by']} · {run['url']}", style="dim")
    console.print(line)


async def watch_remote(console: Console, server: str, run_id: str, token: str | None, *, from_start: bool) -> int:
    from ..web.client import ClientError, follow

    token = token or os.environ.get(TOKEN_ENV) or None
    run = await _get_run(server, token, run_id)
    _header(console, run)
    parked = RunStatus(run["status"]) in PARKED
    if parked and not from_start:
        return 0 if RunStatus(run["status"]) in OK else 1
    start = 0 if from_start else int(run["last_seq"])
    printer = EventPrinter(console)

    def reconnecting(last: int, exc: ClientError) -> None:
        printer.flush()
        console.print(f"connection lost ({exc.code}); reconnecting from seq {last}…", style="dim")

    try:
        async for event in follow(server, run_id, token=token, after_seq=start, on_reconnect=reconnecting):
            printer(event)
            data = event.data
            if parked and event.seq >= int(run["last_seq"]):
                break  # replayed up to where it is parked
            if data.type == "run_status" and data.status in PARKED and event.seq > int(run["last_seq"]):
                break
    except ClientError as exc:
        raise FlowrunError(f"{server}: {exc.message}", code=exc.code) from None
    printer.flush()
    final = await _get_run(server, token, run_id)
    _header(console, final)
    status = RunStatus(final["status"])
    if status == RunStatus.PAUSED and final.get("checkpoint"):
        console.print(f"Waiting at step {final['checkpoint']['step_index'] + 1} '{final['checkpoint']['step']}': "
                      f"{final['checkpoint']['message']}", style="yellow")
    return 0 if status in OK else 1
