"""The chat's offline model: with no model configured, a small deterministic agent that reads the
person's words and calls flowrun's tools, so the demo conversation ("run the full SDLC flow for
a CSV export", "looks good, ship it") works with no key and no network.

It is a real `ModelProvider`: the chat runs it through the same loop, the same MCP tools and the
same streaming as a real model. It understands starting a Flow, deciding the checkpoint it was
told about (approve / reject / skip, with the person's words as the comment), status, listing
Flows and cancelling; anything else gets a short help answer. Notes from runs are relayed.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from ..flows.run import Usage
from ..llm.base import (
    ContentBlock,
    Message,
    ModelRequest,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseStarted,
    TurnComplete,
)

NOTE_PREFIX = "[flowrun note about run "
_RUN_ID = re.compile(r"\brun_[0-9A-Za-z]{10,}\b")
_INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("skip", re.compile(r"\bskip\b")),
    ("reject", re.compile(r"\b(reject|don'?t ship|do not ship|stop it|not good)\b")),
    ("approve", re.compile(r"\b(approve|approved|looks good|lgtm|ship it|go ahead|continue|yes)\b")),
    ("cancel", re.compile(r"\bcancel\b")),
    ("run", re.compile(r"\b(run|start|kick off|launch)\b")),
    ("status", re.compile(r"\b(status|how is|how's|progress|where are we)\b")),
    ("flows", re.compile(r"\b(flows|what can you (do|run))\b")),
)
HELP = ("I'm flowrun's offline chat model (no model is configured). I can start a Flow (“run the full "
        "SDLC flow for a CSV export”), decide a checkpoint when a run asks (“looks good, ship it”, "
        "“reject: the tests are missing”, “skip it”), tell you the status, list the Flows, or cancel a run. "
        "Commands work too: type `/help`.")


def intent(text: str) -> str | None:
    lowered = text.lower()
    for name, pattern in _INTENTS:
        if pattern.search(lowered):
            return name
    return None


class OfflineChatModel:
    name = "scripted"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        text, call = self._decide(request.messages)
        blocks: list[ContentBlock] = []
        if text:
            for piece in re.findall(r"\S+\s*|\s+", text):
                yield TextDelta(index=0, text=piece)
            blocks.append(TextBlock(text=text))
        if call is not None:
            name, arguments = call
            call_id = f"toolu_chat_{sum(m.role == 'assistant' for m in request.messages)}"
            yield ToolUseStarted(index=len(blocks), id=call_id, name=name)
            blocks.append(ToolUseBlock(id=call_id, name=name, input=arguments))
        yield TurnComplete(message=Message(role="assistant", content=blocks), usage=Usage(turns=1),
                           stop_reason="tool_use" if call else "end_turn")

    # -- deciding ------------------------------------------------------------------------------------

    def _decide(self, messages: list[Message]) -> tuple[str, tuple[str, dict[str, Any]] | None]:
        last = messages[-1] if messages else Message(role="user", content=[TextBlock(text="")])
        results = [b for b in last.content if isinstance(b, ToolResultBlock)]
        if results and len(messages) >= 2:
            calls = {b.id: b for b in messages[-2].content if isinstance(b, ToolUseBlock)}
            result = results[-1]
            call = calls.get(result.tool_use_id)
            return self._after_tool(messages, call, result)
        texts = [b.text for b in last.content if isinstance(b, TextBlock)]
        said = [t for t in texts if not t.startswith(NOTE_PREFIX)]
        notes = [t for t in texts if t.startswith(NOTE_PREFIX)]
        if not said:
            return self._relay(notes), None
        return self._answer(messages, said[-1])

    def _relay(self, notes: list[str]) -> str:
        parts = []
        for note in notes:
            body = note.split("] ", 1)[1] if "] " in note else note
            if "waiting at a checkpoint" in body:
                body += " Tell me (“looks good, ship it”, “reject …”, “skip”) or use the buttons in the overlay."
            parts.append(body)
        return "\n\n".join(parts) or "Noted."

    def _answer(self, messages: list[Message], said: str) -> tuple[str, tuple[str, dict[str, Any]] | None]:
        wanted = intent(said)
        run_id = _latest_run(messages, waiting=wanted in ("approve", "reject", "skip")) or _latest_run(
            messages, waiting=False)
        if wanted in ("approve", "reject", "skip"):
            if run_id is None:
                return "This chat has not started a run that could wait for a decision.", None
            return "", ("decide_checkpoint", {"run_id": run_id, "decision": wanted, "comment": said})
        if wanted == "cancel":
            if run_id is None:
                return "This chat has not started a run to cancel.", None
            return "", ("cancel_run", {"run_id": run_id})
        if wanted == "status":
            if run_id is None:
                return "", ("list_runs", {"limit": 5})
            return "", ("get_run", {"run_id": run_id})
        if wanted in ("run", "flows"):
            return "", ("list_flows", {})
        return HELP, None

    def _after_tool(self, messages: list[Message], call: ToolUseBlock | None,
                    result: ToolResultBlock) -> tuple[str, tuple[str, dict[str, Any]] | None]:
        name = call.name if call is not None else "the tool"
        if result.is_error:
            return f"That did not work ({name}): {result.content}", None
        data = _json(result.content)
        if name == "list_flows":
            flows = data.get("flows", [])
            said = _last_said(messages)
            if intent(said) == "run":
                chosen = _match_flow(said, flows)
                if chosen is None:
                    names = ", ".join(f"`{f.get('id')}` ({f.get('name')})" for f in flows)
                    return f"Which Flow should I run? I know: {names}.", None
                params: dict[str, Any] = {}
                goal = _goal(said)
                if goal and any(p.get("name") == "goal" for p in chosen.get("parameters", [])):
                    params["goal"] = goal
                return "", ("start_flow", {"flow": chosen["id"], "params": params})
            lines = [f"- `{f.get('id')}`: {f.get('name')} — {f.get('description', '')}" for f in flows]
            return "These are the Flows I can run:\n" + "\n".join(lines), None
        if name == "start_flow":
            return (f"Started **{data.get('flow_name')}** as run `{data.get('id')}` ([open the run]({data.get('url')})). "
                    "It runs while we keep talking; I'll tell you when it needs you."), None
        if name == "decide_checkpoint":
            comment = call.input.get("comment") if call is not None else None
            verb = {"approve": "Approved", "reject": "Rejected", "skip": "Skipped"}.get(
                str(call.input.get("decision")) if call is not None else "", "Decided")
            said = f" with your comment “{comment}”" if comment else ""
            after = "The run goes on." if data.get("status") in ("running", "pending") else \
                f"The run is now {data.get('status')}."
            return f"{verb}{said}. {after}", None
        if name in ("get_run", "cancel_run", "resume_run", "retry_run"):
            return _run_summary(data), None
        if name == "list_runs":
            runs = data.get("runs", [])
            if not runs:
                return "No runs yet. Ask me to run a Flow.", None
            return "Recent runs:\n" + "\n".join(f"- `{r.get('id')}` {r.get('flow_name')}: {r.get('status')}"
                                                for r in runs), None
        return "Done.", None


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _texts(message: Message) -> list[str]:
    return [b.text for b in message.content if isinstance(b, TextBlock)]


def _last_said(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            said = [t for t in _texts(message) if not t.startswith(NOTE_PREFIX)]
            if said:
                return said[-1]
    return ""


def _latest_run(messages: list[Message], *, waiting: bool) -> str | None:
    """The run this chat talks about: with `waiting`, the one a note said waits at a checkpoint."""
    for message in reversed(messages):
        blocks: list[str] = _texts(message)
        blocks += [b.content for b in message.content if isinstance(b, ToolResultBlock) and not b.is_error]
        for text in reversed(blocks):
            if waiting and not (text.startswith(NOTE_PREFIX) and "waiting at a checkpoint" in text):
                continue
            found = _RUN_ID.findall(text)
            if found:
                return str(found[0])
    return None


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) > 1}


def _match_flow(said: str, flows: list[dict[str, Any]]) -> dict[str, Any] | None:
    words = _words(said)
    scored = [(len(words & (_words(str(f.get("id", ""))) | _words(str(f.get("name", ""))))), f) for f in flows]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        return flows[0] if len(flows) == 1 else None
    return max(scored, key=lambda s: s[0])[1]


def _goal(said: str) -> str:
    match = re.search(r"\bfor (.+)$", said.strip(), flags=re.IGNORECASE)
    if not match:
        return ""
    goal = match.group(1).strip().rstrip(".!?")
    return goal[:1].upper() + goal[1:]


def _run_summary(data: dict[str, Any]) -> str:
    steps = data.get("steps", [])
    lines = [f"Run `{data.get('id')}` ({data.get('flow_name')}) is **{data.get('status')}**."]
    for step in steps:
        lines.append(f"- {step.get('index', 0) + 1}. {step.get('name')}: {step.get('status')}")
    return "\n".join(lines)
