"""Layer 2: the engine. Runs, checkpoints, resume/retry/cancel, recovery, the agent loop."""

from .access import LOCAL_OPERATOR, Actor
from .catalog import Catalog
from .context import EngineConfig, EngineDeps
from .engine import Engine
from .tools import Tool, ToolContext, ToolOutput, builtin_tools

__all__ = [
    "LOCAL_OPERATOR",
    "Actor",
    "Catalog",
    "Engine",
    "EngineConfig",
    "EngineDeps",
    "Tool",
    "ToolContext",
    "ToolOutput",
    "builtin_tools",
]
