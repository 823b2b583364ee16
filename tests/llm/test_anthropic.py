"""The Anthropic provider against respx-mocked HTTP with the real SSE wire format."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from flowrun.flows.errors import BlockedError, ModelError
from flowrun.llm.anthropic import AnthropicProvider, ThinkingConfig
from flowrun.llm.anthropic_wire import messages_to_params
from flowrun.llm.base import (
    Message,
    ModelRequest,
    RedactedThinkingBlock,
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

URL = "https://api.anthropic.com/v1/messages"
MODEL = "claude-sonnet-4-6"
SIGNATURE = "EqQBCkgIARABGAIiQL0dQ8x+sig/with+slashes=="
TOOLS = [
    ToolSpec(name="shell", description="Run a command.", input_schema={"type": "object"}),
    ToolSpec(
        name="read_file",
        description="Read a file.",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}},
    ),
]


def frame(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def sse(*events: dict[str, Any]) -> str:
    return "".join(frame(e) for e in events)


def message_start(
    input_tokens: int = 100, cache_write: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
            },
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_end(stop_reason: str, output_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def tool_turn() -> list[dict[str, Any]]:
    """Thinking with a signature, text, and a tool call whose input arrives in fragments."""
    return [
        message_start(input_tokens=1200, cache_write=3000, cache_read=0),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "The user wants the "}),
        {"type": "ping"},
        delta(0, {"type": "thinking_delta", "thinking": "README; read it."}),
        delta(0, {"type": "signature_delta", "signature": SIGNATURE}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Let me read "}),
        delta(1, {"type": "text_delta", "text": "the file."}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_01A", "name": "read_file", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": ""}),
        delta(2, {"type": "input_json_delta", "partial_json": '{"pa'}),
        delta(2, {"type": "input_json_delta", "partial_json": 'th": "READ'}),
        delta(2, {"type": "input_json_delta", "partial_json": 'ME.md"}'}),
        block_stop(2),
        *message_end("tool_use", 250),
    ]


def text_turn(text: str = "Done.") -> list[dict[str, Any]]:
    return [
        message_start(input_tokens=50, cache_read=4200),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": text}),
        block_stop(0),
        *message_end("end_turn", 12),
    ]


def ok(events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, text=sse(*events), headers={"content-type": "text/event-stream"})


def error_response(status: int, kind: str, message: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx.Response(status, json=body, headers=headers)


def request(messages: list[Message] | None = None, **kw: Any) -> ModelRequest:
    return ModelRequest(
        model=kw.pop("model", f"anthropic:{MODEL}"),
        system="You are a careful engineer.",
        messages=messages
        or [Message(role="user", content=[TextBlock(text="Summarise the README.")])],
        tools=TOOLS,
        max_tokens=4096,
        run_id="run_01",
        **kw,
    )


async def collect(provider: AnthropicProvider, req: ModelRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def body(call: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(call.request.content)
    return result


@pytest.fixture
async def provider() -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(
        api_key="sk-ant-test-key-000000000000", max_retries=2, max_retry_after_s=0.01
    )
    yield p
    await p.aclose()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


@pytest.mark.anyio
async def test_streams_thinking_text_and_tool_use(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    route = mock.post(URL).mock(return_value=ok(tool_turn()))

    events = await collect(provider, request())

    assert [type(e).__name__ for e in events] == [
        "ThinkingDelta",
        "ThinkingDelta",
        "TextDelta",
        "TextDelta",
        "ToolUseStarted",
        "TurnComplete",
    ]
    assert events[0] == ThinkingDelta(index=0, thinking="The user wants the ")
    assert events[3] == TextDelta(index=1, text="the file.")
    assert events[4] == ToolUseStarted(index=2, id="toolu_01A", name="read_file")
    done = events[-1]
    assert isinstance(done, TurnComplete)
    assert done.stop_reason == "tool_use"
    assert done.message.content == [
        ThinkingBlock(thinking="The user wants the README; read it.", signature=SIGNATURE),
        TextBlock(text="Let me read the file."),
        ToolUseBlock(id="toolu_01A", name="read_file", input={"path": "README.md"}),
    ]
    usage = done.usage
    assert (usage.turns, usage.input_tokens, usage.output_tokens) == (1, 1200, 250)
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (3000, 0)
    # Sonnet 4.6: $3 in, $15 out, $3.75 cache write per million tokens
    assert usage.cost_usd == pytest.approx((1200 * 3 + 250 * 15 + 3000 * 3.75) / 1e6)

    sent = body(route.calls.last)
    assert sent["model"] == MODEL
    assert sent["stream"] is True
    assert sent["thinking"] == {"type": "adaptive"}
    assert sent["system"] == [
        {
            "type": "text",
            "text": "You are a careful engineer.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert "cache_control" not in sent["tools"][0]
    assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert (
        route.calls.last.request.headers["authorization"] == "Bearer sk-ant-test-key-000000000000"
    )


@pytest.mark.anyio
async def test_deltas_are_yielded_as_they_arrive(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    first_delta_seen = anyio.Event()
    events = text_turn("streamed")

    async def body_stream() -> AsyncIterator[bytes]:
        for event in events[:3]:
            yield frame(event).encode()
        # the rest of the body is only sent once the consumer has seen the first delta
        with anyio.fail_after(5):
            await first_delta_seen.wait()
        for event in events[3:]:
            yield frame(event).encode()

    mock.post(URL).mock(
        return_value=httpx.Response(
            200, content=body_stream(), headers={"content-type": "text/event-stream"}
        )
    )
    seen: list[StreamEvent] = []
    with anyio.fail_after(10):
        async for event in provider.stream(request()):
            seen.append(event)
            if isinstance(event, TextDelta):
                first_delta_seen.set()
    assert isinstance(seen[-1], TurnComplete)
    assert seen[-1].message.content == [TextBlock(text="streamed")]


@pytest.mark.anyio
async def test_overloaded_529_is_retried_by_the_sdk_with_capped_retry_after(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    route = mock.post(URL).mock(
        side_effect=[
            error_response(529, "overloaded_error", "Overloaded", **{"retry-after": "3600"}),
            ok(text_turn()),
        ]
    )
    started = time.monotonic()
    events = await collect(provider, request())
    assert time.monotonic() - started < 5  # the server asked for an hour; we capped it at 10 ms
    assert route.call_count == 2
    assert isinstance(events[-1], TurnComplete)
    assert events[-1].message.content == [TextBlock(text="Done.")]


@pytest.mark.anyio
async def test_rate_limit_after_the_sdk_gives_up_is_retryable(mock: respx.MockRouter) -> None:
    provider = AnthropicProvider(api_key="sk-ant-test", max_retries=1, max_retry_after_s=0.01)
    route = mock.post(URL).mock(
        return_value=error_response(429, "rate_limit_error", "Slow down", **{"retry-after": "30"})
    )
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    await provider.aclose()
    assert route.call_count == 2
    assert caught.value.retryable
    assert caught.value.code == "model_rate_limited"
    assert "Slow down" in caught.value.message


@pytest.mark.anyio
async def test_error_event_mid_stream_is_a_retryable_model_error(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    events = tool_turn()[:5]
    broken = sse(*events) + frame(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    route = mock.post(URL).mock(
        return_value=httpx.Response(200, text=broken, headers={"content-type": "text/event-stream"})
    )
    seen: list[StreamEvent] = []
    with pytest.raises(ModelError) as caught:
        async for event in provider.stream(request()):
            seen.append(event)
    assert route.call_count == 1  # the SDK does not retry a failed 200 stream: the loop must
    assert caught.value.retryable
    assert caught.value.code == "model_stream_error"
    assert "overloaded_error" in caught.value.message
    assert any(isinstance(e, ThinkingDelta) for e in seen)


@pytest.mark.anyio
async def test_stream_cut_before_message_stop_is_retryable(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(return_value=ok(text_turn()[:4]))
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert caught.value.retryable
    assert caught.value.code == "model_stream_cut"


@pytest.mark.anyio
async def test_bad_request_is_not_retried_and_says_what_to_fix(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    route = mock.post(URL).mock(
        return_value=error_response(
            400, "invalid_request_error", "thinking.type: adaptive is not supported on this model"
        )
    )
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert route.call_count == 1
    assert not caught.value.retryable
    assert caught.value.to_dict()["retryable"] is False
    assert "HTTP 400" in caught.value.message
    assert "FLOWRUN_THINKING" in caught.value.message


@pytest.mark.anyio
async def test_unknown_model_404_names_the_model(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    mock.post(URL).mock(return_value=error_response(404, "not_found_error", "model: claude-nope"))
    with pytest.raises(ModelError) as caught:
        await collect(provider, request(model="claude-nope"))
    assert not caught.value.retryable
    assert "'claude-nope'" in caught.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_blocks_as_credential_needed(
    provider: AnthropicProvider, mock: respx.MockRouter, status: int
) -> None:
    route = mock.post(URL).mock(
        return_value=error_response(status, "authentication_error", "invalid x-api-key")
    )
    with pytest.raises(BlockedError) as caught:
        await collect(provider, request())
    assert route.call_count == 1
    assert caught.value.cause == "credential_needed"
    assert "ANTHROPIC_API_KEY" in caught.value.fix
    assert "sk-ant-test" not in caught.value.message


@pytest.mark.anyio
async def test_missing_key_blocks_without_a_request(mock: respx.MockRouter) -> None:
    provider = AnthropicProvider(api_key=None)
    with pytest.raises(BlockedError) as caught:
        await collect(provider, request())
    assert caught.value.cause == "credential_needed"
    assert not mock.calls


@pytest.mark.anyio
async def test_second_turn_sends_thinking_back_unmodified(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    route = mock.post(URL).mock(side_effect=[ok(tool_turn()), ok(text_turn())])
    first = request()
    done = (await collect(provider, first))[-1]
    assert isinstance(done, TurnComplete)
    result = Message(
        role="user", content=[ToolResultBlock(tool_use_id="toolu_01A", content="# flowrun\n")]
    )
    second = first.model_copy(update={"messages": [*first.messages, done.message, result]})
    final = (await collect(provider, second))[-1]
    assert isinstance(final, TurnComplete)
    assert final.usage.cache_read_tokens == 4200

    sent = body(route.calls[1])
    user, assistant, tool_result = sent["messages"]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants the README; read it.",
                "signature": SIGNATURE,
            },
            {"type": "text", "text": "Let me read the file."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "read_file",
                "input": {"path": "README.md"},
            },
        ],
    }
    assert "cache_control" not in user["content"][0]
    assert tool_result["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_01A",
            "content": "# flowrun\n",
            "is_error": False,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.anyio
async def test_redacted_thinking_round_trips(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    events = [
        message_start(),
        block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/opaque=="}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Hi"}),
        block_stop(1),
        *message_end("end_turn", 3),
    ]
    route = mock.post(URL).mock(side_effect=[ok(events), ok(text_turn())])
    done = (await collect(provider, request()))[-1]
    assert isinstance(done, TurnComplete)
    assert done.message.content[0] == RedactedThinkingBlock(data="EmwKAhgBEgy3va3pzix/opaque==")
    follow_up = Message(role="user", content=[TextBlock(text="go on")])
    await collect(provider, request([*request().messages, done.message, follow_up]))
    assert body(route.calls[1])["messages"][1]["content"][0] == {
        "type": "redacted_thinking",
        "data": "EmwKAhgBEgy3va3pzix/opaque==",
    }


@pytest.mark.anyio
async def test_budgeted_thinking_and_off(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=ok(text_turn()))
    budgeted = AnthropicProvider(
        api_key="sk-ant-test", thinking=ThinkingConfig("budgeted", budget_tokens=2048)
    )
    await collect(budgeted, request())
    sent = body(route.calls.last)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 2048 + 4096  # the budget must stay below max_tokens
    off = AnthropicProvider(
        api_key="sk-ant-test", thinking=ThinkingConfig.parse("off"), cache_prompt=False
    )
    await collect(off, request())
    sent = body(route.calls.last)
    assert "thinking" not in sent  # off sends no thinking parameter at all
    assert sent["max_tokens"] == 4096
    assert "cache_control" not in sent["system"][0]
    await budgeted.aclose()
    await off.aclose()


def test_thinking_config_parse() -> None:
    assert ThinkingConfig.parse("adaptive") == ThinkingConfig("adaptive")
    assert ThinkingConfig.parse("budget:4096") == ThinkingConfig("budgeted", budget_tokens=4096)
    with pytest.raises(Exception, match="budget:N"):
        ThinkingConfig.parse("budget:12")


@pytest.mark.anyio
async def test_tool_input_cut_by_max_tokens_is_not_retryable(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    events = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"command": "ls -'}),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 4096},
        },
        block_stop(0),
        {"type": "message_stop"},
    ]
    mock.post(URL).mock(return_value=ok(events))
    with pytest.raises(ModelError) as caught:
        await collect(provider, request())
    assert not caught.value.retryable
    assert "max_tokens" in caught.value.message


@pytest.mark.anyio
async def test_tool_without_arguments_gets_empty_input(
    provider: AnthropicProvider, mock: respx.MockRouter
) -> None:
    events = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_2", "name": "shell", "input": {}}),
        block_stop(0),
        *message_end("tool_use", 9),
    ]
    mock.post(URL).mock(return_value=ok(events))
    done = (await collect(provider, request()))[-1]
    assert isinstance(done, TurnComplete)
    assert done.message.content == [ToolUseBlock(id="toolu_2", name="shell", input={})]


def test_empty_text_blocks_are_not_sent_back() -> None:
    messages = [
        Message(role="user", content=[TextBlock(text="go")]),
        Message(
            role="assistant",
            content=[TextBlock(text=""), ToolUseBlock(id="t", name="shell", input={})],
        ),
        Message(
            role="user",
            content=[ToolResultBlock(tool_use_id="t", content="ok"), TextBlock(text="")],
        ),
    ]
    params = messages_to_params(messages)
    assert params[1]["content"] == [{"type": "tool_use", "id": "t", "name": "shell", "input": {}}]
    assert params[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t",
            "content": "ok",
            "is_error": False,
            "cache_control": {"type": "ephemeral"},
        }
    ]
