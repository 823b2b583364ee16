"""A small catalog for chat tests (a two-step Flow with a checkpoint, on the no-op sandbox), the
engine and chat service on a temp home, and bounded waits on a chat's event log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from flowrun.chat import ChatService
from flowrun.config import EXAMPLES_DIR, Settings, open_engine
from flowrun.flows.chat import ChatMessage, ChatRole
from flowrun.flows.events import Event
from flowrun.llm.base import ModelProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine

WAIT_S = 30
ANA = Actor(id="ana")

_SKILL = "slug: {slug}\nname: {slug}\ninstructions: Do it.\nallowed_tools: []\noutput_schema: {{type: object}}\n"
_SCRIPT = "skill: {slug}\nturns:\n  - tools:\n      - {{name: submit_result, input: {{outcome: success, summary: {summary}}}}}\n"
TINY = """id: tiny
name: Tiny
description: Draft something, then ship it after sign-off.
defaults: {sandbox_profile: quiet}
parameters:
  - {name: goal, type: string, default: something small, description: What to do.}
steps:
  - {name: Draft, skill: draft}
  - name: Ship
    skill: ship
    checkpoint: {message: Sign off before shipping.}
"""


def environment(tmp_path: Path) -> dict[str, str]:
    root, scripts = tmp_path / "catalog", tmp_path / "scripts"
    for folder in ("flows", "skills", "profiles"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    scripts.mkdir(exist_ok=True)
    (root / "profiles" / "quiet.yaml").write_text("name: quiet\nbackend: noop\n")
    (root / "flows" / "tiny.yaml").write_text(TINY)
    for slug, summary in (("draft", "Drafted it."), ("ship", "Shipped it.")):
        (root / "skills" / f"{slug}.yaml").write_text(_SKILL.format(slug=slug))
        (scripts / f"{slug}.yaml").write_text(_SCRIPT.format(slug=slug, summary=summary))
    for path in (EXAMPLES_DIR / "scripts").glob("*.yaml"):
        (scripts / path.name).write_text(path.read_text())
    return {"FLOWRUN_HOME": str(tmp_path / "home"), "FLOWRUN_PATH": str(root), "FLOWRUN_SCRIPTS": str(scripts)}


@asynccontextmanager
async def open_chats(tmp_path: Path, *, model: str = "scripted", env: Mapping[str, str] | None = None,
                     provider_for: Callable[[str], ModelProvider] | None = None, idle_s: float = 600.0,
                     ) -> AsyncIterator[tuple[Engine, ChatService]]:
    settings = Settings.from_env({**environment(tmp_path), **(env or {})})
    async with open_engine(settings) as engine, \
            ChatService(engine, public_url=settings.public_url, model=model, provider_for=provider_for,
                        idle_s=idle_s) as chats:
        yield engine, chats


async def wait_for(chats: ChatService, actor: Actor, chat_id: str, match: Callable[[Event], bool],
                   after_seq: int = 0) -> Event:
    """The first event of the chat after `after_seq` that `match`es (bounded)."""
    with anyio.fail_after(WAIT_S):
        async for event in chats.subscribe(actor, chat_id, after_seq):
            if match(event):
                return event
    raise AssertionError("the chat's log ended")


def message(role: ChatRole, contains: str = "", **fields: Any) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        data = event.data
        return (isinstance(data, ChatMessage) and data.role is role and contains in data.text
                and all(getattr(data, k) == v for k, v in fields.items()))
    return match


def reply_to(seq: int) -> Callable[[Event], bool]:
    """The agent's finished reply to the input at `seq`."""
    def match(event: Event) -> bool:
        data = event.data
        return isinstance(data, ChatMessage) and data.role is ChatRole.ASSISTANT and data.reply_to == seq
    return match


async def messages(chats: ChatService, actor: Actor, chat_id: str) -> list[ChatMessage]:
    return [e.data for e in await chats.events(actor, chat_id) if isinstance(e.data, ChatMessage)]
