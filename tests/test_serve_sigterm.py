"""`flowrun serve` honours SIGTERM promptly, even with a run in progress and a client waiting on
it over MCP (uvicorn would otherwise wait for that connection for as long as the wait lasts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from contextlib import suppress
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from .tools.mcpkit import FLOWRUN, call, environment, http_session

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_sigterm_stops_serve_with_a_run_in_progress_and_a_client_waiting(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = _free_port()
    command = [str(FLOWRUN), "--debug", "serve", "--port", str(port)]
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
