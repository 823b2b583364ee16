"""`flowrun chat`: the chat agent in the terminal, as the local operator.

Replies stream as they are written; each run the chat starts shows its steps inline, and a
checkpoint shows its panel and how to answer (in words or with /approve, /reject, /skip). Typed
at a terminal, you can keep talking while a run goes on; piped in, each line waits until the
chat's runs have parked (so a script's "looks good, ship it" meets the checkpoint it is for).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
from anyio.abc import TaskGroup
from rich.console import Console
from rich.text import Text

from ..flows.chat import (
    ChatDelta,
    ChatMessage,
    ChatRole,
    ChatRunLinked,
    ChatToolUsed,
    NoteKind,
    ReplyStatus,
)
from ..flows.enums import RunStatus
from ..flows.events import CheckpointReached, Event, StepStatusChanged
from ..runtime.access import LOCAL_OPERATOR
from .render import STEP_ICONS, checkpoint_panel

console = Console(highlight=False)
MOVING = (RunStatus.PENDING, RunStatus.RUNNING)


def _clean(text: str) -> str:
    """No terminal control sequences from a model or a run: printable text and newlines only."""
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


class ChatPrinter:
    def __init__(self, console: Console, chats: Any, engine: Any, tg: TaskGroup) -> None:
        self.console = console
        self.chats = chats
        self.engine = engine
        self.tg = tg
        self._open: str | None = None  # the reply being streamed
        self._runs: set[str] = set()

    def _end_line(self) -> None:
        if self._open is not None:
            self.console.print()
            self._open = None

    def show(self, event: Event, *, live: bool = True) -> None:
        data = event.data
        if isinstance(data, ChatDelta) and live:
            if self._open != data.message_id:
                self._end_line()
                self.console.print(Text("agent› ", style="bold cyan"), end="")
                self._open = data.message_id
            self.console.print(Text(_clean(data.text)), end="")
        elif isinstance(data, ChatMessage):
            self._message(data, live)
        elif isinstance(data, ChatToolUsed):
            self._end_line()
            style = "red" if data.is_error else "dim"
            self.console.print(Text(f"  ↳ {data.tool}" + (f": {_clean(data.result)[:200]}" if data.is_error else ""),
                                    style=style))
        elif isinstance(data, ChatRunLinked):
            self._end_line()
            self.console.print(Text(f"  ▸ {data.flow_name or data.flow} started: {data.run_id}  {data.url}", style="cyan"))
            if live and data.run_id not in self._runs:
                self._runs.add(data.run_id)
                self.tg.start_soon(self._follow_run, data.run_id)

    def _message(self, data: ChatMessage, live: bool) -> None:
        if data.role is ChatRole.ASSISTANT:
            if self._open == data.message_id:
                self.console.print()
                self._open = None
            elif not live or not data.text:
                self._end_line()
                if data.text:
                    self.console.print(Text("agent› ", style="bold cyan") + Text(_clean(data.text)))
            if data.status is not ReplyStatus.COMPLETE:
                self.console.print(Text(f"  (reply {data.status.value}: {_clean(data.error or '')})", style="red"))
        elif data.role is ChatRole.NOTE:
            self._end_line()
            style = "red" if data.note is NoteKind.ERROR else "yellow"
            self.console.print(Text(f"• {_clean(data.text)}", style=style))
        elif not live:
            self.console.print(Text("you› ", style="bold") + Text(_clean(data.text)))

    async def _follow_run(self, run_id: str) -> None:
        """The run's steps, inline; at a checkpoint, its panel and how to answer."""
        async for event in self.engine.subscribe(LOCAL_OPERATOR, run_id):
            data = event.data
            if isinstance(data, StepStatusChanged):
                icon, style = STEP_ICONS[data.status]
                run = await self.engine.get_run(LOCAL_OPERATOR, run_id)
                name = run.steps[data.step].name
                self._end_line()
                self.console.print(Text(f"  {icon} step {data.step + 1}/{len(run.steps)} {name}: {data.status.value}",
                                        style=style))
            elif isinstance(data, CheckpointReached):
                run = await self.engine.get_run(LOCAL_OPERATOR, run_id)
                if run.checkpoint is not None:
                    self._end_line()
                    self.console.print(checkpoint_panel(run))
                    self.console.print(Text("  Answer in words (“looks good, ship it”) or /approve, /reject, /skip "
                                            "[comment].", style="yellow"))
            elif data.type == "run_status" and data.status in (RunStatus.COMPLETED, RunStatus.CANCELLED,
                                                                 RunStatus.REJECTED):
                return


async def _wait_parked(engine: Any, chats: Any, chat_id: str, timeout_s: float = 600) -> None:
    """Until the chat's moving runs have parked and the chat has been told (its note is in)."""
    chat = await chats.get(LOCAL_OPERATOR, chat_id)
    for run_id in chat.runs:
        run = await engine.get_run(LOCAL_OPERATOR, run_id)
        if run.status not in MOVING:
            continue
        await engine.wait_until(LOCAL_OPERATOR, run_id, statuses=[s for s in RunStatus if s not in MOVING],
                                timeout_s=timeout_s)
        with anyio.move_on_after(10):
            async for event in chats.subscribe(LOCAL_OPERATOR, chat_id, chat.last_seq):
                if isinstance(event.data, ChatMessage) and event.data.run_id == run_id and event.data.wants_reply:
                    break


async def chat(args: argparse.Namespace) -> int:
    from ..chat import ChatService
    from ..config import Settings, ensure_demo_remote, open_engine

    settings = Settings.from_env()
    if args.model:
        settings.env = {**settings.env, "FLOWRUN_CHAT_MODEL": args.model}
    try:
        await anyio.to_thread.run_sync(ensure_demo_remote, settings.home)
    except OSError as exc:
        console.print(f"the demo repository is not available: {exc}", style="dim")
    interactive = sys.stdin.isatty() and not args.message
    async with open_engine(settings) as engine, ChatService.from_settings(engine, settings) as chats:
        chat = await (chats.get(LOCAL_OPERATOR, args.chat) if args.chat else chats.create(LOCAL_OPERATOR))
        return await _talk(args, engine, chats, chat, interactive)


async def _talk(args: argparse.Namespace, engine: Any, chats: Any, chat: Any, interactive: bool) -> int:
    async with anyio.create_task_group() as tg:
        printer = ChatPrinter(console, chats, engine, tg)
        history = await chats.events(LOCAL_OPERATOR, chat.id)
        for event in history:
            printer.show(event, live=False)
        console.print(Text(f"chat {chat.id} · model {chat.model or chats.model} · /help for commands · "
                           "Ctrl-D to leave", style="dim"))

        async def render() -> None:
            async for event in chats.subscribe(LOCAL_OPERATOR, chat.id, after_seq=history[-1].seq if history else 0):
                printer.show(event)

        tg.start_soon(render)
        lines = iter(args.message) if args.message else None
        while True:
            if lines is not None:
                text = next(lines, None)
            else:
                text = await anyio.to_thread.run_sync(_read_line, interactive, abandon_on_cancel=True)
            if text is None:
                break
            if not text.strip():
                continue
            await chats.post(LOCAL_OPERATOR, chat.id, text)
            await chats.wait_idle(chat.id, timeout_s=600)
            if not interactive:
                await _wait_parked(engine, chats, chat.id)
                await chats.wait_idle(chat.id, timeout_s=600)
        await chats.wait_idle(chat.id, timeout_s=600)
        if not interactive:
            await _wait_parked(engine, chats, chat.id)
            await chats.wait_idle(chat.id, timeout_s=600)
        printer._end_line()
        console.print(Text(f"continue later with: flowrun chat --chat {chat.id}", style="dim"))
        tg.cancel_scope.cancel()
    return 0


def _read_line(interactive: bool) -> str | None:
    try:
        return input("you› " if interactive else "")
    except EOFError:
        return None
