"""Layer 3: the MCP face. Tools and resources over the engine, for stdio and streamable HTTP.

Importing this package costs nothing: every public name loads its module on first use, so the
CLI can reach `flowrun.tools.config_snippets` while `flowrun --help` stays instant, and the
`mcp` package (over half a second to import) loads only when a server is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import BearerTokens, TokenTable, create_operator_token
    from .face import EngineSlot, Face
    from .models import (
        CheckpointView,
        DecisionForm,
        FlowList,
        FlowView,
        RunList,
        RunView,
        StepView,
        TranscriptLine,
        WaitResult,
    )
    from .server import FlowrunMCP, build_mcp_server

_HOMES = {
    "BearerTokens": "auth", "TokenTable": "auth", "create_operator_token": "auth",
    "EngineSlot": "face", "Face": "face",
    "CheckpointView": "models", "DecisionForm": "models", "FlowList": "models", "FlowView": "models",
    "RunList": "models", "RunView": "models", "StepView": "models", "TranscriptLine": "models",
    "WaitResult": "models",
    "FlowrunMCP": "server", "build_mcp_server": "server",
}

__all__ = [
    "BearerTokens",
    "CheckpointView",
    "DecisionForm",
    "EngineSlot",
    "Face",
    "FlowList",
    "FlowView",
    "FlowrunMCP",
    "RunList",
    "RunView",
    "StepView",
    "TokenTable",
    "TranscriptLine",
    "WaitResult",
    "build_mcp_server",
    "create_operator_token",
]


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
