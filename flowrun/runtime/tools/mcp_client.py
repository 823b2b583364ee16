"""External MCP servers as a step's tools.

A sandbox profile may list MCP servers (`mcp_servers`: a stdio `command` or a streamable-HTTP
`url`). For a step, `mcp_server_tools` connects to all of them at once, lists their tools and
offers each as a flowrun tool named `mcp__<server>__<tool>`, whose input schema is the server's
own; calling it calls the server. The sessions live exactly as long as the context manager's body
(the step's agent loop), in the step's task. A server that does not come up within the timeout
(a bad command, a refused connection, a failed handshake) raises `BlockedError`
(`integration_unavailable`) naming the server and its error; a server that goes away later only
makes its tools' calls fail, so the agent can carry on.

Stdio servers run on this machine, beside the sandbox (like `web_fetch`), with the SDK's short
list of safe environment variables plus the server's own `env`: flowrun's keys are not passed on.
Importing `mcp` costs ~0.5 s, so it happens only when a profile lists servers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shlex
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict

from ...flows.enums import BlockedCause, TranscriptKind
from ...flows.errors import BlockedError
from ...flows.events import TranscriptEntry
from ...flows.profiles import McpServerSpec, SandboxProfile
from .base import Tool, ToolContext, ToolOutput

if TYPE_CHECKING:
    from mcp.client.session import ClientSession
    from mcp_types import CallToolResult
    from mcp_types import Tool as RemoteTool

log = logging.getLogger("flowrun.runtime")

CONNECT_TIMEOUT_S = 20.0  # start, handshake and tool listing, per server
CALL_TIMEOUT_S = 600.0  # one tool call
MAX_NAME = 64  # the strictest provider's limit on tool names (OpenAI: ^[a-zA-Z0-9_-]{1,64}$)
STDERR_TAIL = 1500  # characters of a failed stdio server's stderr quoted in the error

Emit = Callable[[TranscriptEntry], Awaitable[None]]


class McpArguments(BaseModel):
    """Takes any JSON object: the server validates against its own schema and says what is wrong."""

    model_config = ConfigDict(extra="allow")


class McpTool:
    """A tool of an external MCP server. `bind` makes one class per remote tool, so the names
    stay class-level like every other tool's."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_model: ClassVar[type[BaseModel]] = McpArguments
    input_schema: ClassVar[dict[str, Any]] = {}  # the server's, shown to the model as is
    server: ClassVar[str] = ""
    remote_name: ClassVar[str] = ""

    def __init__(self, session: ClientSession) -> None:
        self._session = session

    async def preview(self, ctx: ToolContext, args: McpArguments) -> dict[str, Any]:
        return {"server": self.server, "tool": self.remote_name}

    async def run(self, ctx: ToolContext, args: McpArguments) -> ToolOutput:
        detail = {"server": self.server, "tool": self.remote_name}
        try:
            result = await self._session.call_tool(self.remote_name, args.model_dump(),
                                                   read_timeout_seconds=CALL_TIMEOUT_S)
        except Exception as exc:  # a protocol error, a timeout, a server gone: the agent sees a failed call
            return ToolOutput(f"MCP server {self.server!r} could not run {self.remote_name!r}: {describe(exc)}",
                              is_error=True, data=detail)
        return ToolOutput(render_result(result), is_error=bool(result.is_error), data=detail)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", part) or "_"


def tool_name(server: str, remote: str) -> str:
    """`mcp__<server>__<tool>`, with characters providers refuse replaced, kept within MAX_NAME."""
    name = f"mcp__{_safe(server)}__{_safe(remote)}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(f"{server}\0{remote}".encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name


def bind(server: str, remote: RemoteTool, session: ClientSession, *, name: str) -> Tool:
    """A flowrun tool calling `remote` on `session`."""
    bound_name, bound_server, bound_remote = name, server, remote.name
    bound_schema = dict(remote.input_schema) if remote.input_schema else {"type": "object"}
    text = remote.description or remote.title or f"The {remote.name!r} tool of MCP server {server!r}."
    bound_description = f"[MCP server {server}] {text}"

    class Bound(McpTool):
        name = bound_name
        description = bound_description
        input_schema = bound_schema
        server = bound_server
        remote_name = bound_remote

    return Bound(session)


def render_result(result: CallToolResult) -> str:
    """The text a tool result carries; other content is described, not dropped silently."""
    from mcp_types import (
        AudioContent,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri} ({resource.mime_type or 'unknown type'})]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[resource link {block.uri}" + (f": {block.description}]" if block.description else "]"))
        elif isinstance(block, ImageContent | AudioContent):
            parts.append(f"[{block.type} content, {block.mime_type}, {len(block.data)} base64 characters]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


def describe(exc: BaseException) -> str:
    """One line per underlying error, unwrapping the task groups the SDK raises through."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(describe(e) for e in exc.exceptions))
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror}: {exc.filename!r}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(spec: McpServerSpec) -> str:
    return shlex.join(spec.command) if spec.command else str(spec.url)


def _fix(spec: McpServerSpec, profile: str) -> str:
    if bool(spec.command) == bool(spec.url):
        return (f"Give MCP server {spec.name!r} in sandbox profile {profile!r} either a `command` or a `url`, "
                "then resume the run.")
    if spec.command:
        return (f"Make the command of MCP server {spec.name!r} in sandbox profile {profile!r} ({_where(spec)}) "
                "start an MCP server on stdio, then resume the run.")
    return (f"Make MCP server {spec.name!r} answer at {spec.url} (sandbox profile {profile!r}), "
            "or point the profile at a server that does, then resume the run.")


@dataclass
class _Started:
    session: ClientSession
    tools: list[RemoteTool]
    seconds: float


async def _list_tools(session: ClientSession) -> list[RemoteTool]:
    from mcp_types import PaginatedRequestParams

    listing = await session.list_tools()
    tools = list(listing.tools)
    while listing.next_cursor:
        listing = await session.list_tools(params=PaginatedRequestParams(cursor=listing.next_cursor))
        tools += listing.tools
    return tools


async def _stderr_tail(errlog: IO[str] | None) -> str:
    if errlog is None:
        return ""

    def read() -> str:
        errlog.seek(0)
        return errlog.read()[-STDERR_TAIL:].strip()

    return await anyio.to_thread.run_sync(read)


async def _serve(spec: McpServerSpec, stop: anyio.Event, timeout_s: float, cwd: str | None,
                 *, task_status: TaskStatus[_Started]) -> None:
    """Hold one server's session open until `stop`. Raises `_NotUp` (before `started`) if it
    does not come up in time; never after, so a server going away cannot take the step down."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_types import Implementation

    from ... import __version__

    begun = anyio.current_time()
    started = False
    errlog: IO[str] | None = None
    try:
        with anyio.CancelScope(deadline=begun + timeout_s) as scope:  # lifted once it is up
            async with AsyncExitStack() as stack:
                if spec.command:
                    errlog = await anyio.to_thread.run_sync(  # closed below, once its tail is read
                        lambda: tempfile.TemporaryFile("w+", encoding="utf-8"))  # noqa: SIM115
                    params = StdioServerParameters(command=spec.command[0], args=spec.command[1:],
                                                   env=spec.env or None, cwd=cwd)
                    try:
                        read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
                    except OSError as exc:  # the spawn itself: say what could not run
                        raise _NotUp(f"cannot run {spec.command[0]!r}: {exc.strerror or exc}") from exc
                else:
                    read, write = await stack.enter_async_context(streamable_http_client(str(spec.url)))
                session = await stack.enter_async_context(ClientSession(read, write, client_info=Implementation(name="flowrun", version=__version__)))
                await session.initialize()
                tools = await _list_tools(session)
                scope.deadline = math.inf
                started = True
                task_status.started(_Started(session, tools, anyio.current_time() - begun))
                await stop.wait()
        if not started:
            raise TimeoutError(f"no answer within {timeout_s:g}s")
    except Exception as exc:
        if started:
            log.warning("MCP server %r ended with an error: %s", spec.name, describe(exc))
            return
        if isinstance(exc, _NotUp):
            raise
        tail = await _stderr_tail(errlog)
        raise _NotUp(describe(exc) + (f"; its stderr ends: {tail}" if tail else "")) from exc
    finally:
        if errlog is not None:
            errlog.close()


class _NotUp(Exception):
    """Why a server did not come up, said once."""


@asynccontextmanager
async def mcp_server_tools(profile: SandboxProfile, *, emit: Emit, step: int,
                           timeout_s: float = CONNECT_TIMEOUT_S) -> AsyncIterator[dict[str, Tool]]:
    """The tools of the profile's MCP servers, usable inside the `async with` body.

    Raises:
        BlockedError: `integration_unavailable` when a server does not come up, naming it, its
            error and what to fix.
    """
    if not profile.mcp_servers:
        yield {}
        return
    stop = anyio.Event()
    servers = list(profile.mcp_servers)
    up: dict[int, _Started] = {}
    failed: dict[int, str] = {}

    async def setup(text: str, **data: Any) -> None:
        await emit(TranscriptEntry(kind=TranscriptKind.SETUP, step=step, text=text, data=data))

    async with anyio.create_task_group() as tg:

        async def start(i: int, spec: McpServerSpec) -> None:
            if bool(spec.command) == bool(spec.url):
                failed[i] = "it needs exactly one of `command` (stdio) or `url` (streamable HTTP)"
                return
            verb = "Starting" if spec.command else "Connecting to"
            await setup(f"{verb} MCP server {spec.name!r} ({_where(spec)})", server=spec.name)
            try:
                up[i] = await tg.start(_serve, spec, stop, timeout_s, profile.source_dir,
                                       name=f"MCP server {spec.name}")
            except _NotUp as exc:
                failed[i] = str(exc)
                return
            names = [tool_name(spec.name, t.name) for t in up[i].tools]
            await setup(f"MCP server {spec.name!r} ready in {up[i].seconds:.2f}s with {len(names)} tools: "
                        + ", ".join(names), server=spec.name, tools=names)

        async with anyio.create_task_group() as starting:  # all at once: the slowest sets the wait
            for i, spec in enumerate(servers):
                starting.start_soon(start, i, spec)
        tools: dict[str, Tool] = {}
        for i in sorted(up):  # in the profile's order, whichever came up first: a stable tool list
            for remote in up[i].tools:
                name, n = tool_name(servers[i].name, remote.name), 1
                while name in tools:  # two servers of one name, or names equal once made safe
                    n += 1
                    name = tool_name(servers[i].name, f"{remote.name}_{n}")
                tools[name] = bind(servers[i].name, remote, up[i].session, name=name)
        body_error: Exception | None = None
        try:
            if not failed:
                yield tools
        except Exception as exc:  # re-raised below as itself, not wrapped in the task group's ExceptionGroup
            body_error = exc
        finally:
            stop.set()
    if body_error is not None:
        raise body_error
    if failed:
        first = min(failed)
        spec, error = servers[first], failed[first]
        others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise BlockedError(BlockedCause.INTEGRATION_UNAVAILABLE.value,
                           f"MCP server {spec.name!r} did not come up: {error}{others}",
                           fix=_fix(spec, profile.name), server=spec.name)
