"""The agent loop driven by the real providers over respx-mocked HTTP.

Proves the seams: deltas become transcript entries, tool calls run, results go back in each
provider's format (thinking unmodified for Claude), a mid-stream error is retried by the loop,
and turns and cost add up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from flowrun.flows.enums import Outcome, TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.run import Usage
from flowrun.flows.skills import Skill
from flowrun.llm.anthropic import AnthropicProvider
from flowrun.llm.base import ModelProvider
from flowrun.llm.openai_compat import OpenAICompatProvider
from flowrun.runtime.agent import AgentTask, run_agent
from flowrun.runtime.tools.base import Tool
from flowrun.runtime.tools.core import ReadFile
from flowrun.runtime.tools.search import SearchFiles
from flowrun.sandboxes.noop import NoopSandbox

from .test_anthropic import (
    SIGNATURE,
    block_start,
    block_stop,
    delta,
    frame,
    message_end,
    message_start,
    ok,
    sse,
)
from .test_openai_compat import chunk, fn, stream

SKILL = Skill(
    slug="summarise",
    instructions="Summarise the README.",
    output_schema={
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
    },
)
TOOLS: dict[str, Tool] = {"read_file": ReadFile(), "search_files": SearchFiles()}


class Recorder:
    def __init__(self) -> None:
        self.entries: list[TranscriptEntry] = []
        self.usage = Usage()

    async def emit(self, entry: TranscriptEntry) -> None:
        self.entries.append(entry)

    async def on_usage(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.entries]


def task(provider: ModelProvider, model: str, recorder: Recorder) -> AgentTask:
    sandbox = NoopSandbox("run_1", {"README.md": b"# Insights\nQuarterly reports.\n"}, [])
    return AgentTask(
        run_id="run_1",
        step=0,
        skill=SKILL,
        model=model,
        provider=provider,
        sandbox=sandbox,
        tools=TOOLS,
        system="You are careful.",
        instructions=SKILL.instructions,
        emit=recorder.emit,
        on_usage=recorder.on_usage,
        max_turns=5,
    )


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


def claude_read_turn() -> list[dict[str, Any]]:
    return [
        message_start(input_tokens=1000),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Read it first."}),
        delta(0, {"type": "signature_delta", "signature": SIGNATURE}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_r", "name": "read_file", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"path": '}),
        delta(1, {"type": "input_json_delta", "partial_json": '"README.md"}'}),
        block_stop(1),
        *message_end("tool_use", 100),
    ]


def claude_submit_turn() -> list[dict[str, Any]]:
    result = {
        "outcome": "success",
        "summary": "It is about reports.",
        "output": {"title": "Insights"},
    }
    return [
        message_start(input_tokens=200, cache_read=1000),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Submitting."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_s", "name": "submit_result", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": json.dumps(result)}),
        block_stop(1),
        *message_end("tool_use", 50),
    ]


@pytest.mark.anyio
async def test_a_step_with_claude(mock: respx.MockRouter) -> None:
    overloaded = sse(*claude_submit_turn()[:3]) + frame(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    route = mock.post("https://api.anthropic.com/v1/messages").mock(
        side_effect=[
            ok(claude_read_turn()),
            httpx.Response(200, text=overloaded, headers={"content-type": "text/event-stream"}),
            ok(claude_submit_turn()),
        ]
    )
    provider = AnthropicProvider(api_key="sk-ant-test", max_retries=0)
    recorder = Recorder()
    outcome = await run_agent(task(provider, "claude-sonnet-4-6", recorder))
    await provider.aclose()

    assert outcome.result.outcome == Outcome.SUCCESS
    assert outcome.result.output == {"title": "Insights"}
    assert outcome.turns == 2
    assert route.call_count == 3  # the mid-stream error was retried by the loop
    assert recorder.kinds() == [
        "thinking",
        "tool_start",
        "tool_end",
        "text",  # the attempt that broke off had streamed a little
        "info",  # "Model error, retrying the turn ..."
        "text",
        "tool_start",
        "tool_end",
    ]
    read_end = recorder.entries[2]
    assert read_end.kind == TranscriptKind.TOOL_END and "Quarterly reports." in read_end.text
    assert recorder.usage.turns == 2
    assert recorder.usage.cost_usd == pytest.approx(
        (1000 * 3 + 100 * 15 + 200 * 3 + 1000 * 0.3 + 50 * 15) / 1e6
    )

    second = json.loads(route.calls[1].request.content)
    assert second["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Read it first.",
        "signature": SIGNATURE,
    }
    tool_result = second["messages"][2]["content"][0]
    assert (
        tool_result["tool_use_id"] == "toolu_r" and "Quarterly reports." in tool_result["content"]
    )
    assert (
        route.calls[2].request.content == route.calls[1].request.content
    )  # the same turn, re-sent


@pytest.mark.anyio
async def test_a_step_with_an_openai_compatible_server(mock: respx.MockRouter) -> None:
    result = {"outcome": "success", "summary": "Reports.", "output": {"title": "Insights"}}
    route = mock.post("http://127.0.0.1:11434/v1/chat/completions").mock(
        side_effect=[
            stream(
                chunk({"role": "assistant", "reasoning": "Read it first."}),
                chunk(
                    {
                        "tool_calls": [
                            {"id": "call_r", "function": fn("read_file", '{"path": "README.md"}')}
                        ]
                    }
                ),
                chunk({}, finish="stop"),
                chunk(
                    None, usage={"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 520}
                ),
            ),
            stream(
                chunk({"content": "Done."}),
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "call_s", "function": fn("submit_result", "")}
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": fn(arguments=json.dumps(result))}]}),
                chunk({}, finish="tool_calls"),
            ),
        ]
    )
    provider = OpenAICompatProvider(
        base_url="http://127.0.0.1:11434/v1", api_key="ollama", kind="ollama"
    )
    recorder = Recorder()
    outcome = await run_agent(task(provider, "ollama:llama3.1", recorder))
    await provider.aclose()

    assert outcome.result.outcome == Outcome.SUCCESS and outcome.turns == 2
    assert recorder.kinds() == [
        "thinking",
        "tool_start",
        "tool_end",
        "text",
        "tool_start",
        "tool_end",
    ]
    assert (
        recorder.usage.turns == 2
        and recorder.usage.input_tokens == 500
        and recorder.usage.cost_usd == 0
    )
    second = json.loads(route.calls[1].request.content)
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert second["messages"][3]["tool_call_id"] == "call_r"
    assert "Quarterly reports." in second["messages"][3]["content"]
