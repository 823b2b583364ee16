"""Real MCP clients against flowrun: `flowrun mcp` as a subprocess (stdio) and the ASGI app
served by uvicorn on an ephemeral loopback port (streamable HTTP), plus a catalog of small
Flows that refuse, fail, block or take their time, next to the bundled demo."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from flowrun.config import EXAMPLES_DIR, Settings
from flowrun.server import create_app
from flowrun.tools.auth import TokenTable

FLOWRUN = Path(sys.executable).with_name("flowrun")
SESSION_TIMEOUT_S = 60

ANA = "ana-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
OPS = "ops-token-0123456789abcdef"
STRANGER = "stranger-token-0123456789abcdef"
NOBODY = "nobody-token-0123456789abcdef"
TOKENS = {
    ANA: "ana:flows.read,flows.run",
    READER: "reader:flows.read",
    BOB: "bob:flows.read,flows.run",
    OPS: "ops:*",
    STRANGER: "stranger@elsewhere:*",
    NOBODY: "nobody:flows.cancel.any",  # no flows.read, and no flows.run (which implies it)
}

_SKILL = "slug: {slug}\nname: {slug}\ninstructions: Do it.\nallowed_tools: []\noutput_schema: {{type: object}}\n"
_FLOWS = {
    "needs-ticket": """id: needs-ticket
name: Needs Ticket
defaults: {sandbox_profile: quiet}
parameters:
  - {name: ticket, type: integer, required: true, description: The ticket number.}
steps:
  - {name: Check, skill: flaky}
""",
    "flaky": "id: flaky\nname: Flaky\ndefaults: {sandbox_profile: quiet}\nsteps:\n  - {name: Try, skill: flaky}\n",
    "slow": "id: slow\nname: Slow\ndefaults: {sandbox_profile: quiet}\nsteps:\n  - {name: Wait, skill: slow}\n",
    "stuck": "id: stuck\nname: Stuck\ndefaults: {sandbox_profile: quiet}\nsteps:\n  - {name: Try, skill: stuck}\n",
}
_SCRIPTS = {
    "flaky": "skill: flaky\nturns:\n  - tools:\n      - {name: submit_result, input: {outcome: error, summary: The tests fail.}}\n",
    "slow": "skill: slow\nturns:\n  - {text: Waiting a while., delay_s: 30}\n"
            "  - tools:\n      - {name: submit_result, input: {outcome: success, summary: Waited.}}\n",
    "stuck": "skill: stuck\nturns:\n  - tools:\n      - {name: report_blocked, input: {reason: I need a deploy key., needs: a deploy key}}\n",
}


def environment(tmp_path: Path) -> dict[str, str]:
    """FLOWRUN_* for a fresh home with the demo plus the test Flows (no-op sandbox)."""
    root, scripts = tmp_path / "catalog", tmp_path / "scripts"
    for folder in ("flows", "skills", "profiles"):
        (root / folder).mkdir(parents=True)
    (root / "profiles" / "quiet.yaml").write_text("name: quiet\nbackend: noop\n")
    for name, text in _FLOWS.items():
        (root / "flows" / f"{name}.yaml").write_text(text)
    for slug in _SCRIPTS:
        (root / "skills" / f"{slug}.yaml").write_text(_SKILL.format(slug=slug))
    shutil.copytree(EXAMPLES_DIR / "scripts", scripts)
    for slug, text in _SCRIPTS.items():
        (scripts / f"{slug}.yaml").write_text(text)
    return {"FLOWRUN_HOME": str(tmp_path / "home"), "FLOWRUN_PATH": str(root), "FLOWRUN_SCRIPTS": str(scripts)}


@asynccontextmanager
async def stdio_session(env: Mapping[str, str], errlog: TextIO, **client: Any) -> AsyncIterator[ClientSession]:
    """`flowrun mcp` as a subprocess; the SDK's client closes its stdin, then stops it."""
    params = StdioServerParameters(command=str(FLOWRUN), args=["mcp"], env=dict(env))
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write, **client) as session:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            await session.initialize()
        yield session


@asynccontextmanager
async def served(env: Mapping[str, str], tokens: Mapping[str, str] = TOKENS) -> AsyncIterator[str]:
    """The app under uvicorn on 127.0.0.1:<ephemeral>; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the lifespan has opened the engine
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env({**env, "FLOWRUN_PUBLIC_URL": base})
    table = TokenTable.parse((f"{token}={who}", "test") for token, who in tokens.items())
    server = uvicorn.Server(uvicorn.Config(create_app(settings, table), lifespan="on", log_level="warning", ws="none"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield base
        finally:
            server.should_exit = True


@asynccontextmanager
async def http_session(base: str, token: str | None, **client: Any) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=SESSION_TIMEOUT_S) as http, \
            streamable_http_client(f"{base}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, **client) as session:
        with anyio.fail_after(SESSION_TIMEOUT_S):
            await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The structured result of a tool call that must succeed."""
    with anyio.fail_after(SESSION_TIMEOUT_S):
        result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refusal(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of a tool call that must come back as a tool error."""
    with anyio.fail_after(SESSION_TIMEOUT_S):
        result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have been refused: {result.structured_content}"
    text = result.content[0]
    assert text.type == "text"
    return text.text


async def wait(session: ClientSession, run_id: str, until: str = "paused", rounds: int = 3) -> dict[str, Any]:
    """wait_for_run until it reports reached (a few bounded rounds), returning the run."""
    for _ in range(rounds):
        result = await call(session, "wait_for_run", run_id=run_id, until=until, timeout_s=15)
        if result["reached"]:
            run: dict[str, Any] = result["run"]
            return run
    raise AssertionError(f"run {run_id} did not reach {until!r}")
