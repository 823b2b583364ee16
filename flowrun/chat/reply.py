"""The agent answering: one reply to what is pending (the person's words, or a run's note).

A reply streams each piece of text as a `chat_delta` event the moment the model yields it, runs
the tool calls through the chat's MCP session, and ends with one `chat_message` carrying the
whole text and how it ended. A model failure keeps the partial text, marks it `failed` and tells
the person; a refused tool call goes back to the model as an error result it explains in words.
Commands (`/run`, `/approve`, ...) are answered here without a model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..flows.chat import ChatMessage, ChatRole, ChatToolUsed, NoteKind, ReplyStatus, new_message_id
from ..flows.enums import RunStatus
from ..flows.errors import FlowrunError, NotFound, PermissionDenied, UsageError
from ..llm.base import (
    ContentBlock,
    Message,
    ModelRequest,
    TextBlock,
    TextDelta,
    ToolResultBlock,
    ToolUseBlock,
    TurnComplete,
)
from .commands import HELP, Command, is_command, parse_command
from .conversation import Input, normalize
from .tools import ChatTools, ToolOutcome

if TYPE_CHECKING:
    from .session import ChatSession

log = logging.getLogger("flowrun.chat")
MAX_TURNS = 8
SYSTEM = """\
You are flowrun's chat agent. flowrun runs Flows: multi-step agent workflows (plan, implement,
verify, open a pull request) with checkpoints where a person signs off. You act for the person you
talk to, with their permissions, through flowrun's tools.
- To start a Flow, call start_flow (list_flows tells you the Flows and their parameters). It returns
  at once: tell the person the run started and share its url. Do not wait for the run; keep talking.
- Messages that start with "[flowrun note about run ...]" come from flowrun, not the person: a run
  you started reached a checkpoint, ended, failed or was blocked. Tell the person briefly.
- At a checkpoint, never decide on your own. When the person answers in words ("looks good, ship
  it", "reject, the tests are missing", "skip it"), call decide_checkpoint with that decision and
  their words as the comment.
- If a tool refuses (for example the person lacks a permission), say why in plain words.
Keep replies short; use Markdown sparingly."""


class Replier:
    def __init__(self, session: ChatSession, tools: ChatTools) -> None:
        self.session = session
        self.tools = tools

    async def _record(self, messages: list[Message], consumed: int | None = None) -> None:
        from ..flows.chat import ChatAgentMessages

        await self.session.append(ChatAgentMessages(messages=[m.model_dump(mode="json") for m in messages],
                                                    consumed=consumed))

    async def answer(self) -> None:
        state = self.session.state
        if state.pending and state.pending[0].role is ChatRole.USER and is_command(state.pending[0].text):
            await self._command(state.pending.pop(0))
            return
        batch: list[Input] = []
        while state.pending and not (state.pending[0].role is ChatRole.USER and is_command(state.pending[0].text)):
            batch.append(state.pending.pop(0))
        if batch:
            message = Message(role="user", content=[TextBlock(text=i.for_model()) for i in batch])
            state.messages.append(message)
            state.consumed = batch[-1].seq
            await self._record([message], consumed=batch[-1].seq)
        state.needs_continue = False
        await self._reply(state.consumed)

    # -- a model's reply -------------------------------------------------------------------------------

    async def _reply(self, reply_to: int) -> None:
        session, state = self.session, self.session.state
        message_id = new_message_id()
        parts: list[str] = []
        try:
            provider, model = session.service.provider_for_chat(session.chat)
        except FlowrunError as exc:
            await self._fail(message_id, parts, exc.message, reply_to)
            return
        for _turn in range(MAX_TURNS):
            request = ModelRequest(model=model, system=SYSTEM, messages=normalize(state.messages),
                                   tools=self.tools.specs, max_tokens=4096, skill="chat", run_id=session.chat.id)
            complete: TurnComplete | None = None
            gap = bool(parts)
            try:
                async for event in provider.stream(request):
                    if isinstance(event, TextDelta) and event.text:
                        piece = ("\n\n" + event.text) if gap else event.text
                        gap = False
                        parts.append(piece)
                        await session.stream_piece(message_id, piece)
                    elif isinstance(event, TurnComplete):
                        complete = event
            except FlowrunError as exc:
                await self._fail(message_id, parts, exc.message, reply_to)
                return
            except Exception as exc:  # a provider bug must not take the chat down with it
                log.exception("chat %s: the model failed", session.chat.id)
                await self._fail(message_id, parts, f"{type(exc).__name__}: {exc}", reply_to)
                return
            if complete is None:
                await self._fail(message_id, parts, "the model's turn ended without completing", reply_to)
                return
            state.messages.append(complete.message)
            await self._record([complete.message])
            calls = [b for b in complete.message.content if isinstance(b, ToolUseBlock)]
            if not calls:
                break
            results: list[ContentBlock] = []
            for call in calls:
                outcome = await self._call(message_id, call.name, call.input, call.id)
                results.append(ToolResultBlock(tool_use_id=call.id, content=outcome.text or "(empty)",
                                               is_error=outcome.is_error))
            message = Message(role="user", content=results)
            state.messages.append(message)
            await self._record([message])
        else:
            parts.append(f"\n\n(I stopped after {MAX_TURNS} steps of work on this answer.)")
        await session.append(ChatMessage(message_id=message_id, role=ChatRole.ASSISTANT, text="".join(parts),
                                         actor="agent", reply_to=reply_to))

    async def _fail(self, message_id: str, parts: list[str], error: str, reply_to: int) -> None:
        await self.session.append(ChatMessage(message_id=message_id, role=ChatRole.ASSISTANT, text="".join(parts),
                                              status=ReplyStatus.FAILED, error=error, actor="agent",
                                              reply_to=reply_to))
        kept = " The part of the reply that arrived is kept above." if parts else ""
        await self.session.tell(f"The model failed while answering: {error}.{kept} Your message is stored; "
                                "send another message to try again, or use a command (/help).", kind=NoteKind.ERROR)

    async def _call(self, message_id: str, name: str, arguments: dict[str, Any], call_id: str) -> ToolOutcome:
        session = self.session
        try:
            outcome = await self.tools.call(name, arguments)
        except Exception as exc:  # the MCP session itself failed: the model hears it as a failed call
            log.exception("chat %s: tool %s failed", session.chat.id, name)
            outcome = ToolOutcome(f"the tool call failed inside flowrun: {type(exc).__name__}: {exc}", True, None)
        run_id = outcome.run_id or (arguments.get("run_id") if isinstance(arguments.get("run_id"), str) else None)
        used = ChatToolUsed(message_id=message_id, call_id=call_id, tool=name, input=arguments,
                            result=outcome.text[:2000], is_error=outcome.is_error, run_id=run_id)
        if name == "start_flow" and not outcome.is_error and outcome.run_id and outcome.data is not None:
            data = outcome.data  # the call and the link in one commit: the overlay mounts on the link
            await session.link_run(outcome.run_id, str(data.get("flow", "")), str(data.get("flow_name", "")),
                                   str(data.get("url", "")), before=[used])
            return outcome
        await session.append(used)
        if not outcome.is_error:
            await session.touched_run(name, run_id)
        return outcome

    # -- commands --------------------------------------------------------------------------------------

    async def _command(self, item: Input) -> None:
        session = self.session
        message_id = new_message_id()
        try:
            text = await self._run_command(message_id, parse_command(item.text))
        except UsageError as exc:
            text = exc.message
        await session.stream_piece(message_id, text)
        await session.append(ChatMessage(message_id=message_id, role=ChatRole.ASSISTANT, text=text, actor="command",
                                         reply_to=item.seq))
        session.state.messages += [Message(role="user", content=[TextBlock(text=item.text)]),
                                   Message(role="assistant", content=[TextBlock(text=text)])]
        session.state.consumed = item.seq
        await self._record(session.state.messages[-2:], consumed=item.seq)

    async def _run_command(self, message_id: str, command: Command) -> str:
        if command.name == "help":
            return HELP
        if command.name == "run":
            outcome = await self._call(message_id, "start_flow", {"flow": command.flow, "params": command.params},
                                       f"cmd_{message_id}")
            if outcome.is_error:
                return f"Could not start {command.flow}: {outcome.text}"
            data = outcome.data or {}
            return (f"Started **{data.get('flow_name')}** as run `{data.get('id')}` "
                    f"([open the run]({data.get('url')})).")
        runs = await self._runs()
        if command.name == "status":
            if not runs:
                return "This chat has not started any runs yet. Try `/run full-sdlc`."
            return "\n".join(f"- `{r.id}` {r.flow.name}: **{r.status.value}**"
                             + (f" (waiting before step {r.checkpoint.step + 1} '{r.steps[r.checkpoint.step].name}')"
                                if r.checkpoint is not None and r.status is RunStatus.PAUSED else "")
                             for r in runs)
        if command.name == "cancel":
            active = [r for r in runs if r.status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED)]
            if not active:
                return "This chat has no active run to cancel."
            outcome = await self._call(message_id, "cancel_run", {"run_id": active[-1].id}, f"cmd_{message_id}")
            return f"Could not cancel: {outcome.text}" if outcome.is_error else f"Cancelled run `{active[-1].id}`."
        paused = [r for r in runs if r.status is RunStatus.PAUSED]
        if not paused:
            return "No run of this chat is waiting at a checkpoint."
        run = paused[-1]
        arguments: dict[str, Any] = {"run_id": run.id, "decision": command.name}
        if command.comment:
            arguments["comment"] = command.comment
        outcome = await self._call(message_id, "decide_checkpoint", arguments, f"cmd_{message_id}")
        if outcome.is_error:
            return f"Could not {command.name}: {outcome.text}"
        verb = {"approve": "Approved", "reject": "Rejected", "skip": "Skipped"}[command.name]
        status = (outcome.data or {}).get("status", "")
        return f"{verb} the checkpoint of run `{run.id}`. The run is now {status}."

    async def _runs(self) -> list[Any]:
        runs = []
        for run_id in self.session.chat.runs:
            try:
                runs.append(await self.session.service.engine.get_run(self.session.actor, run_id))
            except (NotFound, PermissionDenied):
                continue
        return runs
