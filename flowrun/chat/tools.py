"""The chat agent's tools: flowrun's own MCP tools, through a real MCP client session to the MCP
server over the SDK's in-memory transport (JSON-RPC on memory streams), so the chat uses exactly
what IDE assistants use and acts with the person's actor and scopes.

`mcp` is imported here only, when a chat session opens (it is slow to import).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..llm.base import ToolSpec
from ..runtime.access import Actor
from ..runtime.engine import Engine

CHAT_TOOLS = ("list_flows", "start_flow", "get_run", "list_runs", "decide_checkpoint", "cancel_run",
              "resume_run", "retry_run")
"""Not `wait_for_run`: a chat never blocks on a run; it is told (a note) when the run gets somewhere."""
MAX_RESULT_CHARS = 12_000


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    text: str  # what the model reads
    is_error: bool
    data: dict[str, Any] | None  # the structured result (a RunView for most tools)

    @property
    def run_id(self) -> str | None:
        value = (self.data or {}).get("id")
        return value if isinstance(value, str) and value.startswith("run_") else None


class ChatTools:
    def __init__(self, client: Any, specs: list[ToolSpec]) -> None:
        self._client = client
        self.specs = specs

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call a tool; refusals (scopes, bad arguments, unknown runs) come back as an error
        outcome whose text says why, for the agent to tell the person."""
        if name not in {s.name for s in self.specs}:
            return ToolOutcome(f"there is no tool {name!r} in this chat (tools: {', '.join(CHAT_TOOLS)})", True, None)
        result = await self._client.call_tool(name, arguments)
        data = result.structured_content if isinstance(result.structured_content, dict) else None
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        text = "\n".join(texts) if texts else json.dumps(data or {}, default=str)
        if data is not None and not result.is_error:
            text = json.dumps(_compact(data), default=str, ensure_ascii=False)
        return ToolOutcome(text[:MAX_RESULT_CHARS], bool(result.is_error), data)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop empty fields: a model reads fewer tokens and the same facts."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, dict):
            value = _compact(value)
        elif isinstance(value, list):
            value = [_compact(v) if isinstance(v, dict) else v for v in value]
        out[key] = value
    return out


@asynccontextmanager
async def open_chat_tools(engine: Engine, public_url: str, actor_for: Callable[[], Actor],
                          chat_id: str) -> AsyncIterator[ChatTools]:
    """A client session to the chat's own MCP server (its runs launch as this chat)."""
    from mcp import Client

    from ..tools.face import EngineSlot
    from ..tools.server import build_mcp_server

    server = build_mcp_server(EngineSlot(engine), public_url, actor_for, chat_id=chat_id)
    async with Client(server, mode="legacy") as client:
        listed = await client.list_tools()
        specs = [ToolSpec(name=t.name, description=t.description or "", input_schema=dict(t.input_schema))
                 for t in listed.tools if t.name in CHAT_TOOLS]
        yield ChatTools(client, specs)
