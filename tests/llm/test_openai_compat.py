"""The OpenAI-compatible provider against respx-mocked chat completion streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from flowrun.flows.errors import BlockedError, ModelError
from flowrun.llm.base import (
    Message,
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
from flowrun.llm.openai_compat import OpenAICompatProvider, messages_to_chat
from flowrun.llm.pricing import PriceTable

BASE = "http://127.0.0.1:11434/v1"
URL = f"{BASE}/chat/completions"
TOOLS = [
    ToolSpec(name="shell", description="Run a command.", input_schema={"type": "object"}),
    ToolSpec(name="read_file", description="Read a file.", input_schema={"type": "object"}),
]


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1764100000,
        "model": "llama3.1",
        "choices": choices,
        **extra,
    }


def stream(*chunks: dict[str, Any]) -> httpx.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def fn(name: str | None = None, arguments: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name is not None:
        out["name"] = name
    if arguments is not None:
        out["arguments"] = arguments
    return out


def request(messages: list[Message] | None = None, model: str = "ollama:llama3.1") -> ModelRequest:
    return ModelRequest(
        model=model,
        system="Be brief.",
        messages=messages or [Message(role="user", content=[TextBlock(text="List the files.")])],
        tools=TOOLS,
        max_tokens=2048,
    )


async def collect(provider: OpenAICompatProvider, req: ModelRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def last(events: list[StreamEvent]) -> TurnComplete:
    done = events[-1]
    assert isinstance(done, TurnComplete)
    return done


@pytest.fixture
async def provider() -> AsyncIterator[OpenAICompatProvider]:
    p = OpenAICompatProvider(base_url=BASE, api_key="ollama", kind="ollama", max_retries=0)
    yield p
    await p.aclose()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


@pytest.mark.anyio
async def test_indexed_tool_call_fragments_reasoning_and_usage(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    """OpenAI / vLLM style: fragments keyed by index, two calls interleaved."""
    route = mock.post(URL).mock(
        return_value=stream(
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Need the listing "}),
            chunk({"reasoning_content": "and the README."}),
            chunk({"content": "Checking."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": fn("shell", ""),
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": fn(arguments='{"comm')}]}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "type": "function",
                            "function": fn("read_file"),
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": fn(arguments='and": "ls"}')}]}),
            chunk(
                {"tool_calls": [{"index": 1, "function": fn(arguments='{"path": "README.md"}')}]}
            ),
            chunk({}, finish="tool_calls"),
            chunk(
                None,
                usage={
                    "prompt_tokens": 900,
                    "completion_tokens": 80,
                    "total_tokens": 980,
                    "prompt_tokens_details": {"cached_tokens": 600},
                },
            ),
        )
    )
    events = await collect(provider, request())

    assert [type(e).__name__ for e in events] == [
        "ThinkingDelta",
        "ThinkingDelta",
        "TextDelta",
        "ToolUseStarted",
        "ToolUseStarted",
        "TurnComplete",
    ]
    assert events[0] == ThinkingDelta(index=0, thinking="Need the listing ")
    assert events[2] == TextDelta(index=1, text="Checking.")
    assert events[3] == ToolUseStarted(index=2, id="call_a", name="shell")
    assert events[4] == ToolUseStarted(index=3, id="call_b", name="read_file")
    done = last(events)
    assert done.stop_reason == "tool_use"
    assert done.message.content == [
        ThinkingBlock(thinking="Need the listing and the README."),
        TextBlock(text="Checking."),
        ToolUseBlock(id="call_a", name="shell", input={"command": "ls"}),
        ToolUseBlock(id="call_b", name="read_file", input={"path": "README.md"}),
    ]
    u = done.usage
    assert (u.turns, u.input_tokens, u.cache_read_tokens, u.output_tokens, u.cost_usd) == (
        1,
        300,
        600,
        80,
        0.0,
    )

    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "llama3.1"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 2048
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["tools"][1] == {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {"type": "object"},
        },
    }


@pytest.mark.anyio
async def test_whole_calls_in_one_chunk_without_index(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    """Ollama style: each call complete in one chunk, no index, finish_reason `stop`."""
    mock.post(URL).mock(
        return_value=stream(
            chunk({"role": "assistant", "reasoning": "Two things to do."}),
            chunk(
                {
                    "tool_calls": [
                        {"id": "call_1", "function": fn("shell", '{"command": "ls"}')},
                        {"id": "call_2", "function": fn("read_file", '{"path": "a.py"}')},
                    ]
                }
            ),
            chunk({"content": ""}, finish="stop"),
        )
    )
    done = last(await collect(provider, request()))
    assert done.stop_reason == "tool_use"
    assert done.message.content == [
        ThinkingBlock(thinking="Two things to do."),
        ToolUseBlock(id="call_1", name="shell", input={"command": "ls"}),
        ToolUseBlock(id="call_2", name="read_file", input={"path": "a.py"}),
    ]
    assert done.usage.input_tokens == 0  # this server reported no usage


@pytest.mark.anyio
async def test_calls_without_index_or_id_and_reused_index(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(
        return_value=stream(
            chunk({"tool_calls": [{"function": fn("shell", '{"command": ')}]}),
            chunk(
                {"tool_calls": [{"function": fn(arguments='"pwd"}')}]}
            ),  # continues the last call
            chunk(
                {"tool_calls": [{"function": fn("shell", '{"command": "id"}')}]}
            ),  # a new name: a new call
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "x1", "function": fn("read_file", '{"path": "1"}')}
                    ]
                }
            ),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "x2", "function": fn("read_file", '{"path": "2"}')}
                    ]
                }
            ),
            chunk({}, finish="tool_calls"),
        )
    )
    done = last(await collect(provider, request()))
    assert [(b.id, b.input) for b in done.message.content if isinstance(b, ToolUseBlock)] == [
        ("call_0", {"command": "pwd"}),
        ("call_1", {"command": "id"}),
        ("x1", {"path": "1"}),
        ("x2", {"path": "2"}),
    ]


@pytest.mark.anyio
async def test_plain_answer_and_configured_price(mock: respx.MockRouter) -> None:
    prices = PriceTable().with_overrides({"openai:gpt-5": {"input": 1.25, "output": 10}})
    provider = OpenAICompatProvider(
        base_url="https://api.openai.com/v1", api_key="sk-test", kind="openai", prices=prices
    )
    route = mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=stream(
            chunk({"role": "assistant", "content": "Hel"}),
            chunk({"content": "lo"}, finish="stop"),
            chunk(
                None, usage={"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
            ),
        )
    )
    done = last(await collect(provider, request(model="openai:gpt-5")))
    await provider.aclose()
    assert done.message.content == [TextBlock(text="Hello")]
    assert done.stop_reason == "end_turn"
    assert done.usage.cost_usd == pytest.approx((1000 * 1.25 + 100 * 10) / 1e6)
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "gpt-5"
    assert sent["max_completion_tokens"] == 2048 and "max_tokens" not in sent


def test_messages_to_chat_format() -> None:
    messages = [
        Message(role="user", content=[TextBlock(text="Fix the bug.")]),
        Message(
            role="assistant",
            content=[
                ThinkingBlock(thinking="hmm", signature="sig"),
                TextBlock(text="Looking."),
                ToolUseBlock(id="c1", name="shell", input={"command": "pytest"}),
            ],
        ),
        Message(
            role="user",
            content=[
                ToolResultBlock(tool_use_id="c1", content="1 failed", is_error=True),
                TextBlock(text="Also check lint."),
            ],
        ),
        Message(role="assistant", content=[ToolUseBlock(id="c2", name="shell", input={})]),
    ]
    assert messages_to_chat("sys", messages) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Fix the bug."},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command": "pytest"}'},
                }
            ],
            "reasoning_content": "hmm",  # DeepSeek, GLM and Kimi need it back with tool calls
        },
        {"role": "tool", "tool_call_id": "c1", "content": "[tool error] 1 failed"},
        {"role": "user", "content": "Also check lint."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "shell", "arguments": "{}"}}
            ],
        },
    ]


@pytest.mark.anyio
async def test_unauthorized_blocks(mock: respx.MockRouter) -> None:
    provider = OpenAICompatProvider(
        base_url="https://api.openai.com/v1", api_key="sk-bad", kind="openai"
    )
    mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(
            401, json={"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}
        )
    )
    with pytest.raises(BlockedError) as caught:
        await collect(provider, request(model="openai:gpt-5"))
    await provider.aclose()
    assert caught.value.cause == "credential_needed"
    assert "OPENAI_API_KEY" in caught.value.fix


@pytest.mark.anyio
async def test_missing_key_blocks(mock: respx.MockRouter) -> None:
    provider = OpenAICompatProvider(
        base_url="https://api.openai.com/v1", api_key=None, kind="openai"
    )
    with pytest.raises(BlockedError, match="no API key"):
        await collect(provider, request(model="openai:gpt-5"))
    assert not mock.calls


@pytest.mark.anyio
async def test_server_down_is_retryable_with_a_hint(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(side_effect=httpx.ConnectError("Connection refused"))
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert caught.value.retryable
    assert caught.value.code == "model_unreachable"
    assert "ollama serve" in caught.value.message


@pytest.mark.anyio
async def test_unknown_model_is_not_retryable(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(
        return_value=httpx.Response(404, json={"error": {"message": 'model "nope" not found'}})
    )
    with pytest.raises(ModelError) as caught:
        await collect(provider, request(model="ollama:nope"))
    assert not caught.value.retryable
    assert "ollama pull nope" in caught.value.message


@pytest.mark.anyio
async def test_error_inside_the_stream_is_retryable(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(
        return_value=stream(
            chunk({"content": "par"}), {"error": {"message": "upstream overloaded"}}
        )
    )
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert caught.value.retryable
    assert "upstream overloaded" in caught.value.message


@pytest.mark.anyio
async def test_truncated_arguments_at_length_are_not_retryable(
    provider: OpenAICompatProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(
        return_value=stream(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": fn("shell", '{"command": "ec')}
                    ]
                }
            ),
            chunk({}, finish="length"),
        )
    )
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert not caught.value.retryable
    assert "max_tokens" in caught.value.message


def test_wire_model_names() -> None:
    provider = OpenAICompatProvider(base_url=BASE, api_key="x", model="fallback")
    assert provider.wire_model("ollama:llama3.1:8b") == "llama3.1:8b"
    assert provider.wire_model("openai-compat:qwen3@http://10.0.0.2:8000/v1") == "qwen3"
    assert provider.wire_model("") == "fallback"
