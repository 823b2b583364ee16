"""The command grammar that works with or without a model: `/run FLOW key=value ...`,
`/approve [comment]`, `/reject [comment]`, `/skip [comment]`, `/status`, `/cancel`, `/help`.

Parsing is pure; the chat session carries a command out through the same MCP tools the agent
uses, so a command and a model's tool call get the same answers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Literal

from ..flows.errors import UsageError

CommandName = Literal["run", "approve", "reject", "skip", "status", "cancel", "help"]
DECISIONS: dict[str, Literal["approve", "reject", "skip"]] = {"approve": "approve", "reject": "reject", "skip": "skip"}

HELP = """\
Commands (they work with or without a model):
- `/run FLOW key=value ...` starts a run of a Flow (e.g. `/run full-sdlc goal="CSV export"`)
- `/approve [comment]`, `/reject [comment]`, `/skip [comment]` decide the checkpoint of this chat's paused run
- `/status` shows this chat's runs
- `/cancel` cancels this chat's latest active run
- `/help` shows this list"""


@dataclass(frozen=True, slots=True)
class Command:
    name: CommandName
    flow: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    comment: str = ""


def is_command(text: str) -> bool:
    return text.lstrip().startswith("/")


def parse_command(text: str) -> Command:
    """Parse one command line.

    Raises:
        UsageError: `unknown_command` or `bad_command`, saying how to write it.
    """
    head, _, rest = text.strip().partition(" ")
    name = head[1:].lower()
    rest = rest.strip()
    if name in DECISIONS:
        return Command(name=DECISIONS[name], comment=rest)
    if name in ("status", "cancel", "help"):
        if rest:
            raise UsageError(f"/{name} takes no arguments", code="bad_command")
        return Command(name=name)  # type: ignore[arg-type]  # narrowed by the tuple above
    if name == "run":
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise UsageError(f"/run: {exc} (quote values with spaces: goal=\"CSV export\")",
                             code="bad_command") from exc
        if not words:
            raise UsageError("/run needs a Flow: /run FLOW key=value ...", code="bad_command")
        params: dict[str, str] = {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise UsageError(f"/run: parameters are key=value, got {word!r}", code="bad_command")
            params[key] = value
        return Command(name="run", flow=words[0], params=params)
    raise UsageError(f"unknown command {head!r}. {HELP}", code="unknown_command")
