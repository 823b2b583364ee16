"""`flowrun mcp` over stdio, driven by the SDK's real client: the demo Flow end to end, the reject
and skip paths, elicitation, progress, and every bad input answered as a tool error."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.client import Client
from mcp.client.context import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData, TextResourceContents

from .mcpkit import FLOWRUN, call, environment, refusal, stdio_session, wait

pytestmark = pytest.mark.anyio

TOOLS = {"start_flow", "decide_checkpoint", "get_run", "list_runs", "list_flows", "cancel_run", "resume_run",
         "retry_run", "wait_for_run"}


async def test_tools_and_resources_are_listed_with_their_schemas(tmp_path: Path) -> None:
    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            templates = (await session.list_resource_templates()).resource_templates
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        assert "\n " not in tool.description, "descriptions are dedented"
        assert tool.output_schema is not None, f"{tool.name} has no structured output"
        assert tool.input_schema["type"] == "object"
    start = tools["start_flow"].input_schema
    assert start["required"] == ["flow"]
    assert set(start["properties"]) == {"flow", "params", "sandbox_profile", "execution_mode", "checkpoint_mode",
                                        "record"}
    decide = tools["decide_checkpoint"].input_schema
    assert decide["required"] == ["run_id"]  # the decision may be asked of the person instead
    assert decide["properties"]["decision"]["anyOf"][0]["enum"] == ["approve", "reject", "skip"]
    assert "answer" not in decide["properties"]
    wait_schema = tools["wait_for_run"].input_schema["properties"]
    assert wait_schema["timeout_s"]["maximum"] == 50
    assert wait_schema["until"]["enum"] == ["paused", "finished", "any_change"]
    assert "ctx" not in wait_schema
    assert {"id", "status", "url", "steps", "checkpoint", "hint", "next_actions"} <= set(
        tools["get_run"].output_schema["properties"])  # type: ignore[index]
    assert tools["list_flows"].annotations is not None and tools["list_flows"].annotations.read_only_hint
    assert tools["cancel_run"].annotations is not None and tools["cancel_run"].annotations.destructive_hint
    assert {t.uri_template for t in templates} == {"run://{run_id}", "run://{run_id}/transcript"}


async def test_the_demo_flow_runs_to_its_checkpoint_and_completes_once_approved(tmp_path: Path) -> None:
    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log) as session:
            flows = await call(session, "list_flows")
            demo = next(f for f in flows["flows"] if f["id"] == "full-sdlc")
            assert demo["steps"][3] == {"name": "Create PR", "skill": "create-pr",
                                        "checkpoint_message": "Sign off before the PR opens."}

            began = anyio.current_time()
            started = await call(session, "start_flow", flow="full-sdlc", params={"goal": "CSV export"})
            assert anyio.current_time() - began < 1.0  # never waits for the run
            assert started["status"] in ("pending", "running")
            assert started["url"] is None  # no page server is known to this stdio server: no dead link
            assert [s["name"] for s in started["steps"]] == ["Plan", "Implement", "Verify", "Create PR"]
            assert started["params"]["goal"] == "CSV export"
            assert started["started_by"] == "local"

            paused = await wait(session, started["id"])
            assert paused["status"] == "paused"
            assert paused["checkpoint"]["step"] == "Create PR"
            assert paused["checkpoint"]["message"] == "Sign off before the PR opens."
            assert paused["checkpoint"]["previous_summary"]
            assert paused["next_actions"] == ["decide_checkpoint", "cancel_run"]
            assert "Sign off before the PR opens." in paused["hint"]

            decided = await call(session, "decide_checkpoint", run_id=started["id"], decision="approve",
                                 comment="Looks right.", step="Create PR", expected_version=paused["version"])
            assert decided["steps"][3]["decision"]["kind"] == "approve"
            assert decided["steps"][3]["decision"]["comment"] == "Looks right."

            done = await wait(session, started["id"], until="finished")
            assert done["status"] == "completed"
            assert [s["status"] for s in done["steps"]] == ["completed"] * 4
            assert done["pull_request"]
            assert done["next_actions"] == []

            with_tail = await call(session, "get_run", run_id=started["id"], transcript_tail=5)
            assert len(with_tail["transcript"]) == 5
            assert with_tail["transcript"][-1]["step"] == 3
            listed = await call(session, "list_runs", status="completed", flow="full-sdlc")
            assert [r["id"] for r in listed["runs"]] == [started["id"]]

            summary = await session.read_resource(f"run://{started['id']}")
            transcript = await session.read_resource(f"run://{started['id']}/transcript")
    summary_text, transcript_text = summary.contents[0], transcript.contents[0]
    assert isinstance(summary_text, TextResourceContents) and isinstance(transcript_text, TextResourceContents)
    assert summary_text.mime_type == "application/json" and '"status": "completed"' in summary_text.text
    assert transcript_text.mime_type == "text/markdown"
    assert "## Step 4: Create PR" in transcript_text.text and "open_pull_request" in transcript_text.text


async def test_reject_stops_the_run_and_skip_skips_the_step(tmp_path: Path) -> None:
    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log) as session:
            rejected = await call(session, "start_flow", flow="full-sdlc")
            skipped = await call(session, "start_flow", flow="full-sdlc")
            await wait(session, rejected["id"])
            await wait(session, skipped["id"])

            after = await call(session, "decide_checkpoint", run_id=rejected["id"], decision="reject",
                               comment="Not this sprint.")
            assert after["status"] == "rejected"
            assert after["error"] == "Not this sprint."
            assert after["next_actions"] == []

            await call(session, "decide_checkpoint", run_id=skipped["id"], decision="skip", step=3)
            done = await wait(session, skipped["id"], until="finished")
            assert done["status"] == "completed"
            assert done["steps"][3]["status"] == "skipped"
            assert done["pull_request"] is None


async def test_elicitation_asks_the_person_when_the_decision_is_left_out(tmp_path: Path) -> None:
    asked: list[str] = []
    answers = iter([ElicitResult(action="accept", content={"decision": "approve", "comment": "Ship it."}),
                    ElicitResult(action="decline")])

    async def person(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        asked.append(params.message)
        return next(answers)

    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log, elicitation_callback=person) as session:
            first = await call(session, "start_flow", flow="full-sdlc")
            second = await call(session, "start_flow", flow="full-sdlc")
            await wait(session, first["id"])
            await wait(session, second["id"])

            approved = await call(session, "decide_checkpoint", run_id=first["id"])
            assert approved["steps"][3]["decision"]["comment"] == "Ship it."
            declined = await refusal(session, "decide_checkpoint", run_id=second["id"])
            assert "did not decide (decline)" in declined and "(code: decision_declined)" in declined
            still = await call(session, "get_run", run_id=second["id"])
            assert still["status"] == "paused"
    assert "Sign off before the PR opens." in asked[0] and "step 4 'Create PR'" in asked[0]


async def test_wait_for_run_sends_progress_when_asked(tmp_path: Path) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log) as session:
            started = await call(session, "start_flow", flow="full-sdlc")
            with anyio.fail_after(30):
                result = await session.call_tool("wait_for_run", {"run_id": started["id"], "timeout_s": 20},
                                                  progress_callback=on_progress)
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["reached"]
    assert any("'Verify' completed" in m for m in messages), messages
    assert messages[-1].startswith("run paused")


def _bad_inputs(run: str, done: str) -> list[tuple[str, dict[str, Any], str]]:
    """(tool, arguments, a phrase the refusal must contain): one row per kind of bad input."""
    return [
        ("start_flow", {"flow": "nope"}, "no flow 'nope'"),
        ("start_flow", {}, "'flow' is required"),
        ("start_flow", {"flow": 42}, "'flow': Input should be a valid string"),
        ("start_flow", {"flow": "needs-ticket"}, "Fill in the required parameter 'ticket'"),
        ("start_flow", {"flow": "needs-ticket", "params": {"ticket": "abc"}}, "'ticket' must be an integer"),
        ("start_flow", {"flow": "full-sdlc", "params": {"colour": "red"}}, "has no parameter 'colour'"),
        ("start_flow", {"flow": "full-sdlc", "sandbox_profile": "moon"}, "no sandbox profile 'moon'"),
        ("start_flow", {"flow": "full-sdlc", "execution_mode": "turbo"}, "'execution_mode'"),
        ("start_flow", {"flow": "full-sdlc", "record": "plan-404"}, "record 'plan-404'"),
        ("get_run", {"run_id": "run_nope"}, "not found"),
        ("get_run", {"run_id": run, "transcript_tail": 500}, "less than or equal to 200"),
        ("cancel_run", {"run_id": "run_nope"}, "not found"),
        ("resume_run", {"run_id": run}, "cannot resume run"),
        ("retry_run", {"run_id": run}, "cannot retry run"),
        ("retry_run", {"run_id": run, "clone": "maybe"}, "'clone'"),
        ("list_runs", {"status": "sleeping"}, "'status"),
        ("list_runs", {"limit": "many"}, "'limit': Input should be a valid integer"),
        ("wait_for_run", {"run_id": run, "timeout_s": 600}, "less than or equal to 50"),
        ("wait_for_run", {"run_id": run, "until": "forever"}, "'until'"),
        ("wait_for_run", {"run_id": "run_nope"}, "not found"),
        ("decide_checkpoint", {"decision": "approve"}, "'run_id' is required"),
        ("decide_checkpoint", {"run_id": run, "decision": "maybe"}, "Input should be 'approve', 'reject' or 'skip'"),
        ("decide_checkpoint", {"run_id": "run_nope", "decision": "approve"}, "not found"),
        ("decide_checkpoint", {"run_id": run}, "needs `decision`"),
        ("decide_checkpoint", {"run_id": run, "decision": "approve", "step": "Plan"}, "stale checkpoint"),
        ("decide_checkpoint", {"run_id": run, "decision": "approve", "step": "Deploy"}, "has no step 'Deploy'"),
        ("decide_checkpoint", {"run_id": run, "decision": "approve", "expected_version": 1}, "changed since you saw"),
        ("decide_checkpoint", {"run_id": done, "decision": "approve", "step": "Create PR"},
         "already decided: approve by local"),
        ("decide_checkpoint", {"run_id": done, "decision": "skip"}, "already decided: approve by local"),
    ]


async def test_every_bad_input_is_a_tool_error_and_the_server_carries_on(tmp_path: Path) -> None:
    with (tmp_path / "server.log").open("w") as log:
        async with stdio_session(environment(tmp_path), log) as session:
            run = (await call(session, "start_flow", flow="full-sdlc"))["id"]
            done = (await call(session, "start_flow", flow="full-sdlc"))["id"]
            await wait(session, run)
            await wait(session, done)
            key = "decision-0001"
            await call(session, "decide_checkpoint", run_id=done, decision="approve", decision_id=key)
            repeated = await call(session, "decide_checkpoint", run_id=done, decision="approve", decision_id=key)
            assert repeated["steps"][3]["decision"]["kind"] == "approve"  # the first answer, again
            other = await refusal(session, "decide_checkpoint", run_id=done, decision="reject", decision_id=key)
            assert "(code: already_decided)" in other and "approve by local" in other  # and it says so
            await wait(session, done, until="finished")

            for tool, arguments, phrase in _bad_inputs(run, done):
                text = await refusal(session, tool, **arguments)
                assert phrase in text, (tool, arguments, text)
                assert "(code: " in text, text

            assert (await call(session, "get_run", run_id=run))["status"] == "paused"  # nothing was lost
            assert len((await call(session, "list_flows"))["flows"]) == 5


async def test_the_stateless_2026_protocol_elicits_through_input_required(tmp_path: Path) -> None:
    """The SDK's high-level client negotiates 2026-07-28 when it can; there elicitation rides on
    InputRequiredResult retries instead of a server-to-client request, and still asks the person."""
    asked: list[str] = []

    async def person(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"decision": "skip", "comment": "Not needed."})

    params = StdioServerParameters(command=str(FLOWRUN), args=["mcp"], env=environment(tmp_path))
    with anyio.fail_after(60):
        async with Client(params, mode="auto", elicitation_callback=person) as client:
            assert client.session.discover_result is not None  # not the initialize handshake
            started = await client.call_tool("start_flow", {"flow": "full-sdlc"})
            assert started.structured_content is not None
            run_id = started.structured_content["id"]
            waited = await client.call_tool("wait_for_run", {"run_id": run_id, "timeout_s": 20})
            assert waited.structured_content is not None and waited.structured_content["reached"]
            decided = await client.call_tool("decide_checkpoint", {"run_id": run_id})
    assert not decided.is_error and decided.structured_content is not None
    assert decided.structured_content["steps"][3]["decision"]["kind"] == "skip"
    assert len(asked) == 1 and "Sign off before the PR opens." in asked[0]


async def test_a_line_that_is_no_jsonrpc_message_is_answered_and_the_server_carries_on(tmp_path: Path) -> None:
    """The SDK's stdio transport only logs a line it cannot validate, so a client waits forever on
    it; flowrun answers it like the HTTP face does, and the next good request still works."""
    lines = ["this is not json",
             '{"jsonrpc": "2.0", "id": 7}',                                 # no method, no result
             '{"jsonrpc": "2.0", "id": "x", "method": "ping", "params": []}',  # params not an object
             '{"id": 8, "method": "ping"}',                                  # no "jsonrpc": "2.0"
             '[{"jsonrpc": "2.0", "id": 9, "method": "ping"}]',              # a batch
             '{"jsonrpc": "2.0", "id": 10, "method": "ping"}']               # good: answered normally
    answers: list[dict[str, Any]] = []
    with (tmp_path / "server.log").open("w") as log:
        async with await anyio.open_process([str(FLOWRUN), "mcp"], env={**os.environ, **environment(tmp_path)},
                                            stderr=log) as process:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send(("\n".join(lines) + "\n").encode())
            buffered = b""
            with anyio.fail_after(60):  # stdin stays open, as a client's does, until the last answer
                while not any(a.get("id") == 10 for a in answers):
                    buffered += await process.stdout.receive()
                    *complete, buffered = buffered.split(b"\n")
                    answers += [json.loads(line) for line in complete if line.strip()]
            await process.stdin.aclose()
            await process.wait()
    errors = [(a["id"], a["error"]["code"], a["error"]["message"]) for a in answers if "error" in a]
    assert errors == [
        (None, -32700, "Parse error: the line is not JSON"),
        (7, -32600, 'Invalid Request: a request needs "method" and "id" (a notification: "method" only; '
                    'a response: "id" and either "result" or "error")'),
        ("x", -32600, 'Invalid Request: "params" must be an object'),
        (8, -32600, 'Invalid Request: a JSON-RPC message needs "jsonrpc": "2.0"'),
        (None, -32600, "Invalid Request: the body must be one JSON-RPC message object, not an array "
                       "(batches are not part of MCP)"),
    ]
    assert [a for a in answers if "result" in a] == [{"jsonrpc": "2.0", "id": 10, "result": {}}]
