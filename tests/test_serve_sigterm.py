"""`flowrun serve` and SIGTERM: it honours it promptly (within `--grace`), even with a run in
progress and a client waiting on it over MCP (uvicorn would otherwise wait for that connection for
as long as the wait lasts), and drains like `flowrun worker`: the step in flight finishes, the
run is handed over to a worker, websockets are closed cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections import Counter
from contextlib import suppress
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from flowrun.flows.enums import RunStatus, StepStatus
from tests.cli import workerkit
from tests.cli.chaoskit import ANA, PARKED, face
from tests.storekinds import StoreKind, store_kind

from .tools.mcpkit import FLOWRUN, call, environment, http_session

pytestmark = pytest.mark.anyio
__all__ = ["store_kind"]  # the fixture: SQLite and PostgreSQL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sigterm_stops_serve_with_a_run_in_progress_and_a_client_waiting(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = _free_port()
    command = [str(FLOWRUN), "--debug", "serve", "--port", str(port), "--grace", "1"]
    process = await anyio.open_process(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        seen = ""
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
                if "Application startup complete" in seen:
                    break
        tokens = (Path(env["FLOWRUN_HOME"]) / "tokens").read_text().splitlines()
        token = next(line for line in tokens if not line.startswith("#")).split("=")[0]
        base = f"http://127.0.0.1:{port}"
        async with http_session(base, token) as operator:
            run_id = (await call(operator, "start_flow", flow="slow"))["id"]  # its model turn takes 30 s
            waiting = anyio.Event()

            async def wait() -> None:
                waiting.set()
                with suppress(Exception):  # the server going away ends the wait, one way or another
                    await operator.call_tool("wait_for_run", {"run_id": run_id, "until": "finished", "timeout_s": 45})

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await waiting.wait()
                await anyio.sleep(0.5)  # the wait is on the wire
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(20):  # the run's turn would take 30 s, the wait 45 s
                    await process.wait()
                tg.cancel_scope.cancel()
        assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def test_sigterm_drains_serve_like_a_worker(tmp_path: Path, store_kind: StoreKind) -> None:
    """`flowrun serve` drives runs; SIGTERM is a deploy: it claims nothing more, lets the step in
    flight finish (within `--grace`), closes its websockets cleanly, releases its leases and
    exits; the worker beside it goes on with the run, and no step runs twice."""
    env = workerkit.environment(tmp_path, store_kind.url(tmp_path / "flowrun.db"), steps=3, delay_s=2.0, lease_s=1.0)
    port = _free_port()
    command = [str(FLOWRUN), "--debug", "serve", "--port", str(port), "--grace", "60"]
    async with face(env) as engine, workerkit.worker(env) as other:
        other.process.send_signal(signal.SIGSTOP)  # so the run is serve's
        process = await anyio.open_process(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
        try:
            assert process.stderr is not None
            stderr = TextReceiveStream(process.stderr)
            seen = ""
            with anyio.fail_after(60):
                async for chunk in stderr:
                    seen += chunk
                    if "Application startup complete" in seen:
                        break
            run = await engine.start_run(ANA, "relay")
            with anyio.fail_after(60):
                async for event in engine.subscribe(ANA, run.id):
                    if event.data.type == "step_status" and event.data.status == StepStatus.RUNNING:
                        break
            other.process.send_signal(signal.SIGCONT)
            owners = {lease.owner for lease in await engine.deps.store.leases()}
            assert other.owner not in owners and len(owners) == 1  # serve drives it
            token = next(line for line in (Path(env["FLOWRUN_HOME"]) / "tokens").read_text().splitlines()
                         if line and not line.startswith("#")).split("=")[0]
            url = f"ws://127.0.0.1:{port}/ws"
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None) as ws:
                await ws.send(json.dumps({"type": "subscribe", "run_id": run.id, "after_seq": 0}))
                with anyio.fail_after(30):
                    await ws.recv()
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(60), suppress(ConnectionClosed):
                    while True:
                        await ws.recv()
                assert ws.close_code in (1000, 1001, 1012), ws.close_code  # closed, not dropped
            with anyio.fail_after(90):
                async for chunk in stderr:
                    seen += chunk
            await process.wait()
            assert process.returncode in (0, -signal.SIGTERM), seen[-3000:]
            done = await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=90)
            assert done.status == RunStatus.COMPLETED, done.error
            assert [s.attempt for s in done.steps] == [1, 1, 1]  # the step in flight finished in serve
            events = await engine.events(ANA, run.id)
            starts = Counter(e.data.step for e in events
                             if e.data.type == "step_status" and e.data.status == StepStatus.RUNNING)
            assert starts == Counter({0: 1, 1: 1, 2: 1})
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
