"""Layer 1: models. The provider-neutral `ModelProvider` protocol, the offline scripted model, and
the registry that picks a provider by model name (real providers are imported only when used)."""

from .base import (
    ContentBlock,
    Message,
    ModelProvider,
    ModelRequest,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    ToolUseStarted,
    TurnComplete,
)
from .registry import default_model, provider_for
from .scripted import Script, ScriptedProvider, ScriptError

__all__ = [
    "ContentBlock",
    "Message",
    "ModelProvider",
    "ModelRequest",
    "Script",
    "ScriptError",
    "ScriptedProvider",
    "StreamEvent",
    "TextBlock",
    "TextDelta",
    "ThinkingBlock",
    "ThinkingDelta",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "ToolUseStarted",
    "TurnComplete",
    "default_model",
    "provider_for",
]
