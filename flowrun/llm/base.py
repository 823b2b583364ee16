"""The `ModelProvider` protocol: one streamed model turn, provider-neutral.

Messages follow the shape of the Anthropic Messages API (blocks with a `type`), which every
provider maps to and from its own wire format. A provider yields deltas as they arrive (for the
live transcript) and ends every turn with exactly one `TurnComplete` carrying the whole assistant
message and the turn's usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..flows.run import Usage


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextBlock(_Block):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(_Block):
    """Passed back unmodified on the next turn (Anthropic checks the signature)."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Block):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class ToolUseBlock(_Block):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str
    is_error: bool = False


ContentBlock = Annotated[
    TextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock | ToolResultBlock,
    Field(discriminator="type"),
]


class Message(_Block):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class ToolSpec(_Block):
    name: str
    description: str
    input_schema: dict[str, Any]


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = 8192
    # who is asking: lets the scripted provider pick the script and real ones tag requests
    skill: str = ""
    run_id: str = ""
    step: int = 0
    subagent: str | None = None


class TextDelta(_Block):
    type: Literal["text_delta"] = "text_delta"
    index: int
    text: str


class ThinkingDelta(_Block):
    type: Literal["thinking_delta"] = "thinking_delta"
    index: int
    thinking: str


class ToolUseStarted(_Block):
    type: Literal["tool_use_started"] = "tool_use_started"
    index: int
    id: str
    name: str


class TurnComplete(_Block):
    type: Literal["turn_complete"] = "turn_complete"
    message: Message
    usage: Usage  # turns=1, tokens; cost filled by the provider from its pricing table
    stop_reason: str = "end_turn"


StreamEvent = TextDelta | ThinkingDelta | ToolUseStarted | TurnComplete


class ModelProvider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream one assistant turn.

        Raises:
            ModelError: retryable failures the loop may retry (overloaded, a stream cut off).
            BlockedError: `credential_needed` when the key is missing or refused.
            FlowrunError: anything else, with a message that says what to fix.
        """
        ...
