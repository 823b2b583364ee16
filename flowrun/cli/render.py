"""How runs look in a terminal: the timeline table and the live event feed (rich)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ..flows.enums import LaunchKind, RunStatus, StepStatus, TranscriptKind
from ..flows.events import (
    CheckpointReached,
    DecisionRecorded,
    Event,
    RunStatusChanged,
    StepStatusChanged,
    TranscriptEntry,
)
from ..flows.machine import ACTIONS
from ..flows.run import Decision, Run, StepRun
from .safe import clean, text

STEP_ICONS: dict[StepStatus, tuple[str, str]] = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("⟳", "cyan"),
    StepStatus.COMPLETED: ("✓", "green"),
    StepStatus.FAILED: ("✗", "red"),
    StepStatus.BLOCKED: ("⏸", "yellow"),
    StepStatus.SKIPPED: ("➜", "blue"),
    StepStatus.CANCELLED: ("⊘", "magenta"),
}
RUN_STYLES: dict[RunStatus, str] = {
    RunStatus.PENDING: "dim", RunStatus.RUNNING: "cyan", RunStatus.PAUSED: "yellow", RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red", RunStatus.REJECTED: "red", RunStatus.CANCELLED: "magenta", RunStatus.BLOCKED: "yellow",
    RunStatus.INTERRUPTED: "yellow",
}


def status_badge(status: RunStatus) -> Text:
    label = "Interrupted" if status == RunStatus.INTERRUPTED else status.value
    return Text(f" {label} ", style=f"bold reverse {RUN_STYLES[status]}")


def _elapsed(step: StepRun) -> str:
    return duration(step.elapsed_s)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def decision_text(d: Decision) -> Text:
    """A checkpoint decision as the timeline and the feed show it: what, who, and the comment."""
    out = Text(f"{d.kind.value}{' (auto)' if d.auto else ''} by ", style="bold")
    out.append_text(text(d.actor, "bold"))
    if d.comment:
        out.append(": ")
        out.append_text(text(d.comment, "default"))
    return out


def timeline(run: Run) -> Table:
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("", "#", "step", "status", "elapsed", "turns", "skill", "result"):
        table.add_column(column, overflow="fold" if column == "result" else "ellipsis")
    for step in run.steps:
        icon, style = STEP_ICONS[step.status]
        waiting = run.checkpoint is not None and run.checkpoint.step == step.index
        if waiting:
            icon, style = "⏸", "yellow"
        result = Text()
        if step.decision is not None:
            result.append("[")
            result.append_text(decision_text(step.decision))
            result.append("] ")
        result.append_text(text(step.summary))
        for call in step.auto_resolved:
            if call.tool != "checkpoint":  # the checkpoint's own auto-approval is the decision above
                result.append_text(text(f"  (auto-resolved {call.tool}: {call.detail})", "yellow"))
        if step.artifacts:
            result.append_text(text("  " + " ".join(f"⟨{a.label or a.kind}: {a.ref}⟩" for a in step.artifacts)))
        table.add_row(
            Text(icon, style=style), Text(str(step.index + 1)), text(step.name),
            Text("waiting" if waiting else step.status.value, style=style), Text(_elapsed(step)),
            Text(str(step.usage.turns or "")), text(f"/{step.skill}"), result,
        )
    return table


def summary(run: Run, url: str | None = None) -> Panel:
    lines = Text()
    lines.append(clean(f"{run.flow.name}  "), style="bold")
    lines.append_text(status_badge(run.status))
    launch = run.launch.kind.value + (f" {run.launch.ref}" if run.launch.ref else "")
    lines.append(clean(f"\nrun {run.id} · started by {run.started_by} ({launch})"))
    if run.started_at:
        lines.append(f" at {run.started_at:%Y-%m-%d %H:%M:%S} UTC")
    if run.duration_s is not None:
        going = "" if run.finished_at is not None else " so far"
        lines.append(f" · duration {duration(run.duration_s)}{going}")
    lines.append(clean(f"\nprofile {run.sandbox_profile} · {run.execution_mode.value} · "
                       f"checkpoints: {run.checkpoint_mode.value}"))
    lines.append(f"\nturns {run.usage.turns} · tokens {run.usage.input_tokens + run.usage.output_tokens:,} · "
                 f"cost ${run.usage.cost_usd:.4f}")
    if run.task:
        lines.append(f" · task {run.task.id} ({run.task.state.value})")
    links = run.links
    page = None  # the record's page, beside the run's (served by `flowrun serve`)
    if url and "/runs/" in url and run.launch.kind == LaunchKind.RECORD and run.launch.ref:
        page = f"{url.rsplit('/runs/', 1)[0]}/records/{run.launch.ref}"
    for label, value in (("plan", links.plan), ("initiative", links.initiative), ("PR", links.pull_request),
                         ("sandbox", f"{links.sandbox.backend}:{links.sandbox.id} ({links.sandbox.state})" if links.sandbox else None),
                         ("retry of", run.retry_of), ("retried as", ", ".join(run.retried_as))):
        if value:
            lines.append(clean(f"\n{label}: {value}" + (f"  {page}" if page and value == run.launch.ref else "")))
    if run.params:
        lines.append(clean("\nparams: " + ", ".join(f"{k}={v!r}" for k, v in run.params.items())))
    if run.blocked:
        lines.append(clean(f"\nblocked ({run.blocked.cause.value}): {run.blocked.message}\nfix: {run.blocked.fix}"),
                     style="yellow")
    elif run.status == RunStatus.INTERRUPTED:
        lines.append("\nInterrupted by a restart; `flowrun retry` continues from the first step that did not complete.",
                     style="yellow")
    elif run.error and run.status in (RunStatus.FAILED, RunStatus.REJECTED):
        lines.append(clean(f"\n{run.error}"), style="red")
    actions = ACTIONS[run.status]
    if actions:
        lines.append("\nactions: " + ", ".join(f"flowrun {a} {run.id}" for a in actions), style="dim")
    if url:
        lines.append(clean(f"\n{url}"), style="dim")
    return Panel(lines, expand=False)


def checkpoint_panel(run: Run) -> Panel:
    assert run.checkpoint is not None
    cp = run.checkpoint
    body = Text()
    body.append(clean(f"Step {cp.step + 1}: {run.steps[cp.step].name}\n"), style="bold")
    body.append(clean(cp.message + "\n"))
    if cp.previous_summary:
        body.append("\nPrevious step: ", style="dim")
        body.append(clean(cp.previous_summary + "\n"))
    return Panel(body, title="Checkpoint", border_style="yellow", expand=False)


class EventPrinter:
    """Prints a run's events as they arrive: step changes and a condensed transcript."""

    def __init__(self, console: Console, *, verbose: bool = True) -> None:
        self.console = console
        self.verbose = verbose
        self._block: tuple[str | None, Text] | None = None  # a streamed text/thinking block so far

    def flush(self) -> None:
        """Print the streamed block in progress. Deltas are joined and printed whole, so a block
        wraps cleanly (also above a live timeline)."""
        if self._block is not None:
            self.console.print(self._block[1])
            self._block = None

    def __call__(self, event: Event) -> None:
        data = event.data
        if isinstance(data, TranscriptEntry):
            self._entry(data)
            return
        if data.type == "agent_messages":
            return  # log-only: the conversation for continuing after a restart
        self.flush()
        if isinstance(data, StepStatusChanged):
            icon, style = STEP_ICONS[data.status]
            line = Text(f"{icon} step {data.step + 1} {data.status.value}", style=f"bold {style}")
            if data.result is not None and data.result.summary:
                line.append(clean(f" — {data.result.summary}"), style="default")
            elif data.reason and data.status != StepStatus.RUNNING:
                line.append(clean(f" — {data.reason}"), style="default")
            self.console.print(line)
        elif isinstance(data, RunStatusChanged):
            line = Text("● run ", style="bold")
            line.append_text(status_badge(data.status))
            if data.reason:
                line.append(clean(f" {data.reason}"))
            self.console.print(line)
        elif isinstance(data, DecisionRecorded):
            line = Text(f"✎ step {data.step + 1} ", style="bold")
            line.append_text(decision_text(data.decision))
            self.console.print(line)
        elif isinstance(data, CheckpointReached):
            pass  # the caller shows the checkpoint panel with the run

    def _entry(self, e: TranscriptEntry) -> None:
        who = clean(f"[{e.subagent}] ") if e.subagent else ""
        if e.kind in (TranscriptKind.TEXT, TranscriptKind.THINKING):
            if self._block is not None and self._block[0] == e.stream and e.stream is not None:
                self._block[1].append(clean(e.text))
                return
            self.flush()
            prefix = "  ∴ " if e.kind == TranscriptKind.THINKING else "  "
            style = "italic dim" if e.kind == TranscriptKind.THINKING else ""
            self._block = (e.stream, Text(prefix + who + clean(e.text), style=style))
            return
        self.flush()
        if e.kind == TranscriptKind.SETUP:
            self.console.print(text(f"  ⚙ {e.text}", "dim"))
        elif e.kind == TranscriptKind.INFO:
            self.console.print(text(f"  ℹ {who}{e.text}", "dim"))
        elif e.kind == TranscriptKind.ERROR:
            self.console.print(Panel(text(e.text, "red"), border_style="red", expand=False))
        elif e.kind == TranscriptKind.TOOL_START:
            self._tool_start(e, who)
        elif e.kind == TranscriptKind.TOOL_DELTA and self.verbose:
            for line in clean(e.text).rstrip("\n").splitlines():
                self.console.print(Text(f"    │ {line}", style="dim"))
        elif e.kind == TranscriptKind.TOOL_END and e.is_error:
            self.console.print(text(f"    ✗ {e.text.strip()[:400]}", "red"))

    def _tool_start(self, e: TranscriptEntry, who: str) -> None:
        data = e.data
        label = Text(f"  ▸ {who}", style="bold")
        label.append(clean(e.tool or ""))
        if "command" in data:
            label.append(clean(f" $ {str(data['command']).strip()}"), style="default")
            self.console.print(label)
        elif "diff" in data and data["diff"]:
            label.append(clean(f" {data.get('path', '')}"), style="default")
            self.console.print(label)
            if self.verbose:
                self.console.print(Syntax(clean(data["diff"]).rstrip(), "diff", theme="ansi_dark",
                                          background_color="default"))
        elif "content" in data and e.tool == "write_file":
            label.append(clean(f" {data.get('path', '')} ({len(str(data['content']).splitlines())} lines)"),
                         style="default")
            self.console.print(label)
        elif "todos" in data:
            marks = {"completed": "☑", "in_progress": "◐", "pending": "☐"}
            items = [text(f"    {marks.get(t.get('status', 'pending'), '☐')} {t.get('content', '')}")
                     for t in data["todos"]]
            self.console.print(label)
            self.console.print(Group(*items))
        elif "url" in data:
            label.append(clean(f" {data['url']}"), style="default")
            self.console.print(label)
        elif "path" in data:
            label.append(clean(f" {data['path']}"), style="default")
            self.console.print(label)
        else:
            self.console.print(label)


def step_outputs(run: Run) -> Group:
    """What the run page's Inspect Output drawer shows, per step that produced something."""
    import json

    from rich.json import JSON

    parts: list[Panel] = []
    for step in run.steps:
        if step.outcome is None and not step.auto_resolved and step.decision is None:
            continue
        body: list[Text | JSON] = [text(step.summary or "(no summary)")]
        for artifact in step.artifacts:
            body.append(text(f"artifact {artifact.kind}: {artifact.ref}" + (f" ({artifact.label})" if artifact.label else ""),
                             "cyan"))
        if step.output:
            body.append(JSON(clean(json.dumps(step.output))))
        for call in step.auto_resolved:
            body.append(text(f"auto-resolved {call.tool}: {call.detail}", "yellow"))
        if step.decision is not None:
            line = Text("checkpoint: ", style="bold")
            line.append_text(decision_text(step.decision))
            line.append(f" at {step.decision.at:%Y-%m-%d %H:%M:%S}")
            body.append(line)
        title = text(f"{step.index + 1}. {step.name} /{step.skill} · "
                     f"{step.outcome.value if step.outcome else step.status.value}")
        parts.append(Panel(Group(*body), title=title, title_align="left", expand=False))
    return Group(*parts)
