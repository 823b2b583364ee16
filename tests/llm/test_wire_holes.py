"""Holes found by feeding the providers real captured stream shapes (issue 9 §4): each test is a
wire format the providers used to get wrong, driven through the real SDK over respx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from flowrun.flows.enums import Outcome, TranscriptKind
from flowrun.flows.errors import ModelError
from flowrun.llm.anthropic import AnthropicProvider, ThinkingConfig
from flowrun.llm.base import Message, TextBlock, ThinkingBlock, ToolUseBlock, TurnComplete
from flowrun.llm.openai_compat import OpenAICompatProvider, messages_to_chat
from flowrun.runtime import agent
from flowrun.runtime.agent import run_agent

from .test_agent_with_providers import Recorder, task
from .test_anthropic import (
    block_start,
    block_stop,
    collect,
    delta,
    message_end,
    message_start,
    ok,
    request,
)
from .test_openai_compat import chunk, fn
from .test_openai_compat import collect as collect_compat
from .test_openai_compat import request as compat_request
from .test_openai_compat import stream as compat_stream

URL = "https://api.anthropic.com/v1/messages"
pytestmark = pytest.mark.anyio


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


def _claude() -> AnthropicProvider:
    return AnthropicProvider(api_key="sk-ant-test", max_retries=0)


@pytest.mark.parametrize("fragments", [['{"pa', 'th": "READ'], []])
async def test_a_tool_call_cut_by_max_tokens_without_block_stop_never_runs(
    mock: respx.MockRouter, fragments: list[str]
) -> None:
    events: list[dict[str, Any]] = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Listing."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_c", "name": "read_file", "input": {}}),
        *[delta(1, {"type": "input_json_delta", "partial_json": f}) for f in fragments],
        *message_end("max_tokens", 4096),  # no content_block_stop for the call
    ]
    mock.post(URL).mock(return_value=ok(events))
    recorder = Recorder()
    provider = _claude()
    with pytest.raises(ModelError) as caught:
        await run_agent(task(provider, "claude-sonnet-4-6", recorder))
    await provider.aclose()
    assert not caught.value.retryable
    assert "max_tokens" in caught.value.message and "read_file" in caught.value.message
    assert TranscriptKind.TOOL_START not in [e.kind for e in recorder.entries]


async def test_a_refusal_is_reported_as_a_refusal(mock: respx.MockRouter) -> None:
    events = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "I can't help with that."}),
        block_stop(0),
        *message_end("refusal", 7),
    ]
    mock.post(URL).mock(return_value=ok(events))
    recorder = Recorder()
    provider = _claude()
    outcome = await run_agent(task(provider, "claude-sonnet-4-6", recorder))
    await provider.aclose()
    assert outcome.result.outcome == Outcome.ERROR
    assert "refused" in outcome.result.summary and "I can't help with that." in outcome.result.summary
    assert outcome.error == "the model refused to continue"
    assert recorder.entries[-1].kind == TranscriptKind.ERROR


async def test_a_server_tool_use_block_with_streamed_input(mock: respx.MockRouter) -> None:
    events = [
        message_start(),
        block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"query": "flow'}),
        delta(0, {"type": "input_json_delta", "partial_json": 'run docs"}'}),
        block_stop(0),
        block_start(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        block_stop(1),
        block_start(2, {"type": "text", "text": ""}),
        delta(2, {"type": "text_delta", "text": "Nothing found."}),
        block_stop(2),
        *message_end("end_turn", 30),
    ]
    mock.post(URL).mock(return_value=ok(events))
    provider = _claude()
    done = (await collect(provider, request()))[-1]
    await provider.aclose()
    assert isinstance(done, TurnComplete)
    assert done.message.content == [TextBlock(text="Nothing found.")]


# -- thinking is sent only as the model accepts it -------------------------------------------------


@pytest.mark.parametrize(
    ("model", "setting", "expected"),
    [
        ("claude-sonnet-4-6", "off", None),  # off sends nothing at all
        ("claude-opus-4-8", "off", None),
        ("claude-opus-4-8", "budget:2048", {"type": "adaptive"}),  # budget_tokens refused there
        ("claude-sonnet-4-6", "budget:2048", {"type": "enabled", "budget_tokens": 2048}),
        ("claude-sonnet-4-5", "adaptive", {"type": "enabled", "budget_tokens": 8192}),
        ("claude-sonnet-4-5-20250929", "budget:4096", {"type": "enabled", "budget_tokens": 4096}),
        ("claude-3-5-haiku-20241022", "adaptive", None),  # no extended thinking on this model
        ("claude-unknown-9", "budget:2048", {"type": "enabled", "budget_tokens": 2048}),  # as configured
    ],
)
def test_thinking_parameter_follows_the_model_catalogue(
    model: str, setting: str, expected: dict[str, Any] | None
) -> None:
    provider = AnthropicProvider(api_key="sk-ant-test", thinking=ThinkingConfig.parse(setting))
    params = provider.build_params(request(model=f"anthropic:{model}"))
    assert params.get("thinking") == expected
    if expected is None:
        assert "thinking" not in params and params["max_tokens"] == 4096


# -- OpenAI-compatible servers ---------------------------------------------------------------------

BASE = "http://127.0.0.1:8000/v1"
CHAT = f"{BASE}/chat/completions"


def _compat(**kw: Any) -> OpenAICompatProvider:
    return OpenAICompatProvider(base_url=BASE, api_key="k", kind=kw.pop("kind", "openai-compat"), max_retries=0, **kw)


async def test_reasoning_content_goes_back_with_the_assistant_message_that_called_tools(
    mock: respx.MockRouter,
) -> None:
    """DeepSeek, GLM and Kimi answer 400 without it; the fake answers the way Kimi does."""
    result = {"outcome": "success", "summary": "Reports.", "output": {"title": "Insights"}}

    def kimi(req: httpx.Request) -> httpx.Response:
        sent = json.loads(req.content)
        for message in sent["messages"]:
            if message["role"] == "assistant" and message.get("tool_calls") and not message.get("reasoning_content"):
                return httpx.Response(400, json={"error": {
                    "message": "thinking is enabled but reasoning_content is missing in assistant tool call message at index 2",
                    "type": "invalid_request_error"}})
        if len(sent["messages"]) == 2:
            return compat_stream(
                chunk({"role": "assistant", "reasoning_content": "I should read "}),
                chunk({"reasoning_content": "the README."}),
                chunk({"tool_calls": [{"index": 0, "id": "call_r", "function": fn("read_file", '{"path": "README.md"}')}]}),
                chunk({}, finish="tool_calls"),
            )
        return compat_stream(
            chunk({"tool_calls": [{"index": 0, "id": "call_s", "function": fn("submit_result", json.dumps(result))}]}),
            chunk({}, finish="tool_calls"),
        )

    route = mock.post(CHAT).mock(side_effect=kimi)
    provider = _compat()
    outcome = await run_agent(task(provider, "openai-compat:kimi-k2-thinking", Recorder()))
    await provider.aclose()
    assert outcome.result.outcome == Outcome.SUCCESS
    second = json.loads(route.calls[1].request.content)
    assert second["messages"][2]["reasoning_content"] == "I should read the README."
    # OpenAI itself has no such field: nothing extra is sent there
    thought = Message(role="assistant", content=[ThinkingBlock(thinking="hm"), ToolUseBlock(id="c", name="shell", input={})])
    assert "reasoning_content" not in messages_to_chat("", [thought], reasoning=False)[0]


async def test_kimis_400_about_reasoning_gets_no_tool_support_hint(mock: respx.MockRouter) -> None:
    mock.post(CHAT).mock(return_value=httpx.Response(400, json={"error": {
        "message": "thinking is enabled but reasoning_content is missing in assistant tool call message at index 2",
        "type": "invalid_request_error"}}))
    provider = _compat()
    with pytest.raises(ModelError) as caught:
        await collect_compat(provider, compat_request(model="openai-compat:kimi-k2-thinking"))
    await provider.aclose()
    assert "may not support tool calling" not in caught.value.message
    assert "reasoning_content" in caught.value.message
    # a server that really cannot call tools still gets that hint
    mock.post(CHAT).mock(return_value=httpx.Response(400, json={"error": {
        "message": "registry.ollama.ai/library/gemma:2b does not support tools", "type": "api_error"}}))
    provider = _compat(kind="ollama")
    with pytest.raises(ModelError) as caught:
        await collect_compat(provider, compat_request(model="ollama:gemma:2b"))
    await provider.aclose()
    assert "may not support tool calling" in caught.value.message


def _raw(body: str) -> httpx.Response:
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    "body",
    [
        # the connection dropped mid-text: no finish_reason, no [DONE]
        "".join(f"data: {json.dumps(chunk({'content': t}))}\n\n" for t in ("The answer ", "is")),
        # llama.cpp's legacy error line, which the SDK's SSE reader skips
        f"data: {json.dumps(chunk({'content': 'The answer '}))}\n\n"
        'error: {"code":500,"message":"slot unavailable","type":"server_error"}\n\n',
    ],
    ids=["cut-mid-text", "llama.cpp-error-line"],
)
async def test_a_stream_cut_mid_text_is_a_stream_error(mock: respx.MockRouter, body: str) -> None:
    mock.post(CHAT).mock(return_value=_raw(body))
    provider = _compat()
    with pytest.raises(ModelError) as caught:
        await collect_compat(provider, compat_request(model="openai-compat:llama"))
    await provider.aclose()
    assert caught.value.retryable and caught.value.code == "model_stream_cut"


async def test_openai_compatible_429_keeps_retry_after(mock: respx.MockRouter) -> None:
    mock.post(CHAT).mock(return_value=httpx.Response(
        429, json={"error": {"message": "slow down", "type": "rate_limit"}}, headers={"retry-after": "30"}))
    provider = _compat()
    with pytest.raises(ModelError) as caught:
        await collect_compat(provider, compat_request(model="openai-compat:llama"))
    await provider.aclose()
    assert caught.value.retryable and caught.value.details["retry_after"] == 30.0


# -- the agent loop honours retry-after, capped ----------------------------------------------------


@pytest.mark.parametrize(("asked", "waited"), [("30", 30.0), ("3600", 60.0), (None, 1.0)])
async def test_the_agent_loop_waits_as_long_as_the_server_asks_capped(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, asked: str | None, waited: float
) -> None:
    waits: list[float] = []

    async def record(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(agent, "_sleep", record)
    headers = {"retry-after": asked} if asked else {}
    result = {"outcome": "success", "summary": "ok", "output": {"title": "Insights"}}
    mock.post(URL).mock(side_effect=[
        httpx.Response(429, json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
                       headers=headers),
        ok([
            message_start(),
            block_start(0, {"type": "tool_use", "id": "toolu_s", "name": "submit_result", "input": {}}),
            delta(0, {"type": "input_json_delta", "partial_json": json.dumps(result)}),
            block_stop(0),
            *message_end("tool_use", 20),
        ]),
    ])
    provider = AnthropicProvider(api_key="sk-ant-test", max_retries=0, max_retry_after_s=3600)
    outcome = await run_agent(task(provider, "claude-sonnet-4-6", Recorder()))
    await provider.aclose()
    assert outcome.result.outcome == Outcome.SUCCESS
    assert waits == [waited]
