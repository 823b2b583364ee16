"""The tools a step's agent can call, by name."""

from __future__ import annotations

from .base import MAX_TOOL_OUTPUT_CHARS, Tool, ToolContext, ToolOutput, cap_output
from .core import EditFile, ReadFile, Shell, TodoWrite, WriteFile
from .pull_request import OpenPullRequest
from .records import SaveRecord


def builtin_tools() -> dict[str, Tool]:
    tools: list[Tool] = [Shell(), ReadFile(), WriteFile(), EditFile(), TodoWrite(), OpenPullRequest(), SaveRecord()]
    try:
        from .search import ListFiles, SearchFiles

        tools += [ListFiles(), SearchFiles()]
    except ImportError:  # pragma: no cover - during development only
        pass
    try:
        from .web import WebFetch

        tools.append(WebFetch())
    except ImportError:  # pragma: no cover
        pass
    return {tool.name: tool for tool in tools}


__all__ = ["MAX_TOOL_OUTPUT_CHARS", "Tool", "ToolContext", "ToolOutput", "builtin_tools", "cap_output"]
