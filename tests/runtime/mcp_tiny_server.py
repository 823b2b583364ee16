"""A tiny MCP server for test_mcp_step_tools.py: run as a script it serves stdio; `server` is
also served over streamable HTTP in-process by the tests.

With TINY_PIDFILE set it writes its process id there, so a test can see it stopped."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("tiny")


class Point(BaseModel):
    x: int
    y: int


@server.tool()
def shout(text: str, times: int = 1) -> str:
    """Upper-case the text, `times` times."""
    return " ".join([text.upper()] * times)


@server.tool()
def span(points: list[Point]) -> str:
    """The width and height the points cover."""
    xs, ys = [p.x for p in points], [p.y for p in points]
    return f"{max(xs) - min(xs)} x {max(ys) - min(ys)}"


@server.tool()
def refuse(reason: str) -> str:
    """Always refuses, saying why."""
    raise ToolError(f"refused: {reason}")


@server.tool()
def greeting() -> str:
    """What the profile's env says."""
    return os.environ.get("TINY_GREETING", "(no greeting)")


@server.tool()
def vanish() -> str:
    """Exits the server without answering."""
    os._exit(0)


if __name__ == "__main__":
    if pidfile := os.environ.get("TINY_PIDFILE"):
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    server.run()
