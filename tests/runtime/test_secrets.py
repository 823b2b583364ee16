"""Secrets never stored or sent raw: planted keys are nowhere in the database file, whatever wrote
them (parameters, checkpoint comments, summaries, outputs, artifacts, failure reasons, model text
split across deltas, shell output split across the 8,192-character chunk boundary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowrun.flows.enums import RunStatus, TranscriptKind
from flowrun.flows.errors import ModelError
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.redact import Redactor
from flowrun.flows.run import Usage
from flowrun.llm.base import (
    ContentBlock,
    Message,
    ModelRequest,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    ToolUseStarted,
    TurnComplete,
)
from flowrun.runtime.access import Actor

from .harness import catalog, running_engine

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
ANTHROPIC = "sk-ant-api03-Zq9XwVuTsRqPoNmLkJiHgFeDcBa0123456789-_Q"
GITHUB = "ghp_Zq9XwVuTsRqPoNmLkJiHgFeDcBa0123456789"
AWS = "AKIAZQ9XWVUTSRQPONML"
CONFIGURED = "plain-words-secret-4711"  # matches no key format: only FLOWRUN_SECRETS knows it
KEYS = (ANTHROPIC, GITHUB, AWS, CONFIGURED)
ALL = f"a={ANTHROPIC} g={GITHUB} w={AWS} c={CONFIGURED}"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class LeakyModel:
    """A provider that streams keys split across tiny deltas and asks for a shell command whose
    output puts a key across the 8,192-character chunk boundary; its final results carry keys in
    the summary, the output and an artifact; step `Fail` ends with an error naming a key."""

    name = "leaky"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        turn = sum(m.role == "assistant" for m in request.messages)
        if request.skill == "fail":
            raise ModelError(f"the provider rejected the request for key {ANTHROPIC} and {CONFIGURED}", retryable=False)
        blocks: list[ContentBlock] = []
        if turn == 0:
            text = f"Let me look. The keys are {ALL}. Running the command now."
            for piece in _pieces(text, 5):
                yield TextDelta(index=0, text=piece)
            blocks.append(TextBlock(text=text))
            command = f"{{ head -c 8180 /dev/zero | tr '\\0' x; printf ' %s %s done' {GITHUB} {CONFIGURED}; }}"
            yield ToolUseStarted(index=1, id="call_1", name="shell")
            blocks.append(ToolUseBlock(id="call_1", name="shell", input={"command": command}))
        else:
            summary = f"Found {ALL}"
            blocks.append(ToolUseBlock(id="call_2", name="submit_result", input={
                "outcome": "success", "summary": summary, "output": {"found": ALL, "list": list(KEYS)},
                "artifacts": [{"kind": "file", "ref": f"keys-{GITHUB}.txt", "title": f"Keys {ANTHROPIC}"}],
            }))
        yield TurnComplete(message=Message(role="assistant", content=blocks), usage=Usage(turns=1), stop_reason="tool_use")


def _database_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("flowrun.db*")))


def _assert_no_key(blob: str | bytes, where: str) -> None:
    for key in KEYS:
        needle: Any = key.encode() if isinstance(blob, bytes) else key
        assert needle not in blob, f"{key[:8]}... found raw in {where}"


async def test_planted_keys_are_never_stored_or_returned_raw(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [
        {"name": "Look", "skill": "look"},
        {"name": "Fail", "skill": "fail", "checkpoint": {"message": "Go on?"}},
    ]
    cat = catalog(steps, parameters=[{"name": "note", "type": "string"}], defaults={"sandbox_profile": "local"})
    async with running_engine(tmp_path, cat, LeakyModel(), redactor=Redactor([CONFIGURED])) as engine:
        run = await engine.start_run(ANA, "test-flow", {"note": f"use {ALL}"})
        run = await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        await engine.decide(ANA, run.id, "approve", comment=f"approved, the key is {ALL}", step=1)
        run = await engine.wait_until(ANA, run.id, statuses=[RunStatus.FAILED], timeout_s=30)
        run = await engine.get_run(ANA, run.id)
        events = await engine.deps.store.events(run.id)
    db = _database_bytes(tmp_path)
    _assert_no_key(db, "the database file")
    _assert_no_key(run.model_dump_json(), "get_run")
    _assert_no_key("".join(e.model_dump_json() for e in events), "the event log")
    # the planted values were really there to redact, in every place the issue names
    dumped = run.model_dump_json()
    assert "[REDACTED]" in run.params["note"]
    assert "[REDACTED]" in (run.steps[0].summary or "")
    assert "[REDACTED]" in str(run.steps[0].output) and "[REDACTED]" in run.steps[0].artifacts[0].ref
    assert run.steps[1].decision is not None and "[REDACTED]" in (run.steps[1].decision.comment or "")
    assert "[REDACTED]" in (run.steps[1].error or dumped)
    # the joined stream (what `show --transcript` and the MCP transcript print) is whole and redacted
    entries = [e.data for e in events if isinstance(e.data, TranscriptEntry)]
    text = "".join(e.text for e in entries if e.kind == TranscriptKind.TEXT)
    assert text.startswith("Let me look. The keys are a=[REDACTED] g=[REDACTED] w=[REDACTED] c=[REDACTED].")
    shell = "".join(e.text for e in entries if e.kind == TranscriptKind.TOOL_DELTA)
    assert len([e for e in entries if e.kind == TranscriptKind.TOOL_DELTA]) >= 2  # it was chunked
    assert shell.endswith("x [REDACTED] [REDACTED] done")


async def test_chats_are_stored_redacted(tmp_path: Path) -> None:
    from flowrun.flows.chat import Chat, ChatMessage, ChatRole
    from flowrun.storage.sqlite import SQLiteStore

    async with SQLiteStore(tmp_path / "flowrun.db", redactor=Redactor([CONFIGURED])) as store:
        chat, _ = await store.create_chat(Chat(owner="ana", title=f"about {GITHUB}"))
        await store.append_chat(chat.id, [ChatMessage(message_id="m1", role=ChatRole.USER, text=f"my keys: {ALL}")])
        stored = await store.get_chat(chat.id)
        events = await store.events(chat.id)
    _assert_no_key(_database_bytes(tmp_path), "the database file")
    assert stored.title == "about [REDACTED]"
    assert "my keys: a=[REDACTED]" in events[-1].model_dump_json()
