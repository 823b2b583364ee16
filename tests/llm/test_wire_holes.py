"""Holes found by feeding the providers real captured stream shapes (issue 9 §4): each test is a
wire format the providers used to get wrong, driven through the real SDK over respx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import respx

from flowrun.flows.enums import Outcome, TranscriptKind
from flowrun.flows.errors import ModelError
from flowrun.llm.anthropic import AnthropicProvider
from flowrun.llm.base import TextBlock, TurnComplete
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
