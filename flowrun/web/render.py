"""The pages' jinja2 environment (autoescaping on) and the small formatting filters it uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..flows.enums import RunStatus, StepStatus
from .markdown import render_inline, render_markdown, safe_link
from .transcript_view import Block

STATUS_LABELS = {RunStatus.INTERRUPTED: "Interrupted"}
STEP_ICONS = {
    StepStatus.PENDING: "○", StepStatus.RUNNING: "", StepStatus.COMPLETED: "✓", StepStatus.FAILED: "✕",
    StepStatus.BLOCKED: "‖", StepStatus.SKIPPED: "→", StepStatus.CANCELLED: "⊘",
}


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def cost(value: float) -> str:
    return f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def status_label(status: RunStatus | str) -> str:
    status = RunStatus(status)
    return STATUS_LABELS.get(status, status.value.capitalize())


def short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (css class, line) pairs: added lines green, removed red."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "diff-file"
        elif line.startswith("@@"):
            kind = "diff-hunk"
        elif line.startswith("+"):
            kind = "diff-add"
        elif line.startswith("-"):
            kind = "diff-del"
        else:
            kind = "diff-ctx"
        out.append((kind, line))
    return out


def make_env() -> Environment:
    env = Environment(loader=PackageLoader("flowrun.web", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, duration=duration, cost=cost, pretty_json=pretty_json, short=short, iso=iso,
                       status_label=status_label, diff_lines=diff_lines)
    env.globals.update(markdown=render_markdown, inline=render_inline, safe_link=safe_link, step_icons=STEP_ICONS,
                       Markup=Markup, block_html=_block_renderer(env))
    return env


def _block_renderer(env: Environment) -> Callable[[Block], Markup]:
    """A transcript block's HTML, kept on the block until it changes: a block renders from
    itself alone (Markdown and link checks are pure), and a kept fold (`runfolds`) re-renders a
    section on every refresh while usually one block in it has grown."""

    def block_html(block: Block) -> Markup:
        if block.html is None or block.html_seq != block.last_seq:
            macro = env.get_template("transcript_block.html").module.block  # type: ignore[attr-defined]
            block.html, block.html_seq = str(macro(block)), block.last_seq
        return Markup(block.html)

    return block_html
