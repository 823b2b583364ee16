"""External MCP servers as a step's tools, through whole runs: a real server over stdio (a
subprocess) and over streamable HTTP (uvicorn on loopback), the real `mcp` client, the scripted model."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows.enums import BlockedCause, RunStatus, StepStatus, TranscriptKind
from flowrun.flows.errors import BlockedError
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.profiles import McpServerSpec, SandboxProfile
from flowrun.flows.run import Run
from flowrun.llm.base import ModelRequest, StreamEvent
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.engine import Engine
from flowrun.runtime.tools.mcp_client import mcp_server_tools, tool_name

from .harness import catalog, expecting, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
SERVER = Path(__file__).with_name("mcp_tiny_server.py")
STEP = [{"name": "Use the server", "skill": "use"}]


def tiny(name: str = "tiny", **env: str) -> McpServerSpec:
    return McpServerSpec(name=name, command=[sys.executable, str(SERVER)], env=env)


def profile(*servers: McpServerSpec) -> SandboxProfile:
    return SandboxProfile(name="with-mcp", backend="noop", mcp_servers=list(servers))


def flow(*servers: McpServerSpec, steps: Sequence[Mapping[str, Any]] = STEP) -> Catalog:
    return catalog(steps, defaults={"sandbox_profile": "with-mcp"}, profiles=[profile(*servers)])


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tools": [{"name": tool, "input": arguments}]}


@dataclass
class Seen:
    """The scripted model, keeping every request it was sent."""

    inner: ScriptedProvider
    name: str = "seen"
    requests: list[ModelRequest] = field(default_factory=list)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        async for event in self.inner.stream(request):
            yield event

    def conversation_done(self, request: ModelRequest) -> None:
        self.inner.conversation_done(request)


async def settle(engine: Engine, run: Run) -> Run:
    return await engine.wait_until(ANA, run.id, statuses=[s for s in RunStatus if s.finished], timeout_s=30)


async def transcript(engine: Engine, run: Run) -> list[TranscriptEntry]:
    return [e.data for e in await engine.events(ANA, run.id) if isinstance(e.data, TranscriptEntry)]


def ends(entries: list[TranscriptEntry], tool: str) -> list[TranscriptEntry]:
    return [e for e in entries if e.kind == TranscriptKind.TOOL_END and e.tool == tool]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_step_calls_a_stdio_servers_tools_which_live_as_long_as_the_step(tmp_path: Path) -> None:
    pidfile = tmp_path / "tiny.pid"
    provider = Seen(scripts(use=[
        call("mcp__tiny__shout", text="hello", times=2),
        call("mcp__tiny__span", points=[{"x": 1, "y": 5}, {"x": 4, "y": 1}]),
        expecting(call("mcp__tiny__refuse", reason="not today")),
        call("mcp__tiny__greeting"),
        submit("shouted", said="HELLO HELLO"),
    ]))
    async with running_engine(tmp_path, flow(tiny(TINY_GREETING="hi from the profile", TINY_PIDFILE=str(pidfile))),
                              provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED, run.error
        assert run.steps[0].output == {"said": "HELLO HELLO"}
        entries = await transcript(engine, run)

    [shout] = ends(entries, "mcp__tiny__shout")
    assert shout.text == "HELLO HELLO" and not shout.is_error
    assert shout.data == {"server": "tiny", "tool": "shout"}
    assert ends(entries, "mcp__tiny__span")[0].text == "3 x 4"
    [refused] = ends(entries, "mcp__tiny__refuse")
    assert refused.is_error and "refused: not today" in refused.text
    assert ends(entries, "mcp__tiny__greeting")[0].text == "hi from the profile"
    # the model got the tool's output back, and saw the server's own schemas
    first, second = provider.requests[:2]
    assert "HELLO HELLO" in second.messages[-1].model_dump_json()
    specs = {t.name: t for t in first.tools}
    shout_schema = specs["mcp__tiny__shout"].input_schema
    assert shout_schema["properties"]["times"] == {"default": 1, "title": "Times", "type": "integer"}
    assert shout_schema["required"] == ["text"]
    assert "Point" in specs["mcp__tiny__span"].input_schema["$defs"]
    assert specs["mcp__tiny__shout"].description == "[MCP server tiny] Upper-case the text, `times` times."
    setups = [e.text for e in entries if e.kind == TranscriptKind.SETUP]
    assert any(t.startswith("Starting MCP server 'tiny'") for t in setups)
    assert any("MCP server 'tiny' ready" in t and "mcp__tiny__shout" in t for t in setups)
    # the step is over, and so is the server it started
    assert gone(int(pidfile.read_text()))


async def test_subagents_share_the_steps_servers(tmp_path: Path) -> None:
    provider = scripts(
        use=[call("spawn_subagents", tasks=[{"task": "shout a"}, {"task": "shout b"}, {"task": "shout c"}]),
             submit("fanned out")],
        use__subagent=[call("mcp__tiny__shout", text="sub"), submit("shouted")],
    )
    cat = flow(tiny(), steps=[{**STEP[0], "subagents": 3}])
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED, run.error
        entries = await transcript(engine, run)
    shouts = ends(entries, "mcp__tiny__shout")
    assert sorted((e.subagent, e.text) for e in shouts) == [("sub-1", "SUB"), ("sub-2", "SUB"), ("sub-3", "SUB")]


async def test_a_server_that_goes_away_mid_step_only_fails_its_calls(tmp_path: Path) -> None:
    provider = scripts(use=[expecting(call("mcp__tiny__vanish")), expecting(call("mcp__tiny__shout", text="anyone?")),
                            submit("the server left", outcome="partial")])
    async with running_engine(tmp_path, flow(tiny()), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED and run.steps[0].summary == "the server left"
        entries = await transcript(engine, run)
    for tool in ("mcp__tiny__vanish", "mcp__tiny__shout"):
        [end] = ends(entries, tool)
        assert end.is_error and "MCP server 'tiny' could not run" in end.text


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


BROKEN = [
    pytest.param(McpServerSpec(name="ghost", command=["/nonexistent/mcp-server", "--stdio"]),
                 "cannot run '/nonexistent/mcp-server': No such file or directory", id="no-such-command"),
    pytest.param(McpServerSpec(name="grumpy", command=[sys.executable, "-c", "import sys; sys.exit('no config found')"]),
                 "its stderr ends: no config found", id="exits-at-once"),
    pytest.param(McpServerSpec(name="remote", url=f"http://127.0.0.1:{unused_port()}/mcp"),
                 "ConnectError", id="connection-refused"),
    pytest.param(McpServerSpec(name="both", command=["x"], url="http://127.0.0.1:1/mcp"),
                 "exactly one of `command` (stdio) or `url`", id="command-and-url"),
    pytest.param(McpServerSpec(name="neither"), "exactly one of", id="neither"),
]


@pytest.mark.parametrize(("broken", "error"), BROKEN)
async def test_a_server_that_does_not_come_up_blocks_the_run_naming_it(
        tmp_path: Path, broken: McpServerSpec, error: str) -> None:
    provider = scripts(use=[call("mcp__tiny__shout", text="hello"), submit("shouted")])
    cat = flow(tiny(), broken)
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.BLOCKED and run.blocked is not None
        assert run.blocked.cause == BlockedCause.INTEGRATION_UNAVAILABLE
        assert run.blocked.message.startswith(f"MCP server {broken.name!r} did not come up: ")
        assert error in run.blocked.message
        assert broken.name in run.blocked.fix and "with-mcp" in run.blocked.fix
        assert run.blocked.details["server"] == broken.name
        assert run.steps[0].status == StepStatus.BLOCKED
        # fixed in the catalog (the profile now lists only servers that work): resume completes
        cat.profiles["with-mcp"] = profile(tiny())
        run = await settle(engine, await engine.resume(ANA, run.id))
        assert run.status == RunStatus.COMPLETED, run.error
        assert ends(await transcript(engine, run), "mcp__tiny__shout")[-1].text == "HELLO"


async def test_a_server_that_never_answers_is_given_up_after_the_timeout() -> None:
    entries: list[TranscriptEntry] = []

    async def emit(entry: TranscriptEntry) -> None:
        entries.append(entry)

    # reads the handshake and never answers; ends when its stdin closes
    silent = McpServerSpec(name="silent", command=[sys.executable, "-c", "import sys; sys.stdin.read()"])
    with anyio.fail_after(15), pytest.raises(BlockedError) as caught:
        async with mcp_server_tools(profile(silent), emit=emit, step=0, timeout_s=0.5):
            raise AssertionError("not reached")
    assert caught.value.cause == "integration_unavailable"
    assert caught.value.message == "MCP server 'silent' did not come up: TimeoutError: no answer within 0.5s"


async def test_errors_of_the_body_pass_through_as_themselves() -> None:
    async def emit(entry: TranscriptEntry) -> None:
        pass

    with anyio.fail_after(30), pytest.raises(KeyError, match="mine"):
        async with mcp_server_tools(profile(tiny()), emit=emit, step=0) as tools:
            assert sorted(tools) == ["mcp__tiny__greeting", "mcp__tiny__refuse", "mcp__tiny__shout",
                                     "mcp__tiny__span", "mcp__tiny__vanish"]
            raise KeyError("mine")


@asynccontextmanager
async def served_over_http() -> AsyncIterator[str]:
    """The tiny server's streamable HTTP app under uvicorn on 127.0.0.1:<ephemeral>."""
    import uvicorn

    from .mcp_tiny_server import server as tiny_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until uvicorn serves
    app = tiny_server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    http = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", ws="none"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(http.serve, [sock])
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        finally:
            http.should_exit = True


async def test_a_step_calls_a_streamable_http_server(tmp_path: Path) -> None:
    provider = scripts(use=[call("mcp__remote__shout", text="over http"), submit("shouted")])
    with anyio.fail_after(60):
        async with served_over_http() as url, \
                running_engine(tmp_path, flow(McpServerSpec(name="remote", url=url)), provider) as engine:
            run = await settle(engine, await engine.start_run(ANA, "test-flow"))
            assert run.status == RunStatus.COMPLETED, run.error
            [end] = ends(await transcript(engine, run), "mcp__remote__shout")
    assert end.text == "OVER HTTP" and not end.is_error


async def test_cancelling_the_run_stops_the_server(tmp_path: Path) -> None:
    pidfile = tmp_path / "tiny.pid"
    provider = scripts(use=[call("mcp__tiny__shout", text="hello"), {"delay_s": 60, **submit("never")}])
    async with running_engine(tmp_path, flow(tiny(TINY_PIDFILE=str(pidfile))), provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        with anyio.fail_after(30):
            async for event in engine.subscribe(ANA, run.id):
                if isinstance(event.data, TranscriptEntry) and event.data.tool == "mcp__tiny__shout" \
                        and event.data.kind == TranscriptKind.TOOL_END:
                    break
        pid = int(pidfile.read_text())
        assert not gone(pid)
        with anyio.fail_after(30):
            run = await engine.cancel(ANA, run.id)
        assert run.status == RunStatus.CANCELLED
        assert gone(pid)


@pytest.mark.parametrize(("server", "tool", "expected"), [
    ("tiny", "shout", "mcp__tiny__shout"),
    ("git hub", "repos/list.all", "mcp__git_hub__repos_list_all"),
])
def test_tool_names_are_safe_for_every_provider(server: str, tool: str, expected: str) -> None:
    assert tool_name(server, tool) == expected


def test_long_tool_names_are_cut_and_stay_distinct() -> None:
    a, b = tool_name("server", "x" * 80 + "a"), tool_name("server", "x" * 80 + "b")
    assert len(a) == len(b) == 64 and a != b
