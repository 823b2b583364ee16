"""Untrusted text in the terminal: shown as written, never read as markup nor obeyed as control
characters; decisions, comments and background auto-approvals show on the timeline."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from flowrun.cli import main
from flowrun.cli.follow import show
from flowrun.cli.render import EventPrinter, step_outputs, timeline
from flowrun.cli.safe import clean
from flowrun.flows import machine
from flowrun.flows.enums import (
    CheckpointMode,
    DecisionKind,
    ExecutionMode,
    Outcome,
    RunStatus,
    TranscriptKind,
)
from flowrun.flows.events import DecisionRecorded, Event, RunStatusChanged, TranscriptEntry
from flowrun.flows.run import Decision, Run, StepResult
from flowrun.flows.template import FlowTemplate

HOSTILE = "[/x] [bold red]loud[/] \x1b[2J\x1b]0;pwned\x07 done"
FLOW = FlowTemplate.model_validate({
    "id": "f", "name": "F [/x]",
    "steps": [{"name": "Plan", "skill": "s"},
              {"name": "Ship", "skill": "s", "checkpoint": {"message": "Sign off", "auto_approve_in_background": True}}],
})


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=300, force_terminal=True, color_system="truecolor"), out


def decided_run(mode: ExecutionMode = ExecutionMode.INTERACTIVE) -> Run:
    run = machine.create(Run(flow=FLOW, started_by="ana", sandbox_profile="local", execution_mode=mode,
                             checkpoint_mode=CheckpointMode.TEMPLATE))
    run, _ = machine.start(run)
    run, _ = machine.begin_step(run, 0)
    run, _ = machine.finish_step(run, 0, StepResult(outcome=Outcome.SUCCESS, summary=f"planned {HOSTILE}"))
    if mode == ExecutionMode.BACKGROUND:
        run, _ = machine.auto_approve(run, 1)
    else:
        run, _ = machine.pause_at(run, 1, "Sign off")
        run, _ = machine.decide(run, Decision(kind=DecisionKind.APPROVE, actor="ana", comment=HOSTILE))
    return run


def visible(out: io.StringIO) -> str:
    """What the terminal shows, without the colour codes rich itself writes (untrusted text has
    none left: its ESC became the four characters `\\x1b`)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())


def test_clean_shows_controls_as_escapes_and_keeps_lines() -> None:
    assert clean("a\x1b[31mb\tc\nd\re\x07\u202e") == "a\\x1b[31mb\tc\nd\ne\\x07\\u202e"


def test_the_timeline_shows_a_decision_and_its_comment_as_written() -> None:
    console, out = terminal()
    console.print(timeline(decided_run()))
    shown = visible(out)
    assert "approve by ana: [/x] [bold red]loud[/]" in shown  # markup printed, not eaten
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown and "\x07" not in shown
    assert "\\x1b[2J" in shown and "\\x07" in shown  # visible, not obeyed


def test_the_timeline_shows_a_background_auto_approval() -> None:
    console, out = terminal()
    console.print(timeline(decided_run(ExecutionMode.BACKGROUND)))
    assert "approve (auto) by flowrun: Auto-approved in background mode." in visible(out)


def test_the_summary_and_outputs_escape_and_show_the_duration() -> None:
    run = decided_run()
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = run.model_copy(update={"status": RunStatus.COMPLETED, "started_at": start,
                                 "finished_at": start + timedelta(minutes=2, seconds=5),
                                 "error": HOSTILE, "params": {"goal": HOSTILE}})
    console, out = terminal()
    show(console, run, "http://x/runs/1")
    console.print(step_outputs(run))
    shown = visible(out)
    assert "duration 2m05s" in shown
    assert "F [/x]" in shown and "\x1b[2J" not in shown and "\x07" not in shown


def test_the_feed_escapes_comments_and_shell_output() -> None:
    console, out = terminal()
    printer = EventPrinter(console)
    decision = Decision(kind=DecisionKind.REJECT, actor="bo", comment=HOSTILE)
    for seq, data in enumerate([
        DecisionRecorded(step=1, decision=decision),
        RunStatusChanged(status=RunStatus.REJECTED, previous=RunStatus.PAUSED, reason=HOSTILE),
        TranscriptEntry(kind=TranscriptKind.TOOL_DELTA, step=0, text=f"output {HOSTILE}\n"),
        TranscriptEntry(kind=TranscriptKind.TOOL_START, step=0, tool="shell", text="",
                        data={"command": f"echo {HOSTILE}"}),
        TranscriptEntry(kind=TranscriptKind.ERROR, step=0, text=HOSTILE),
        TranscriptEntry(kind=TranscriptKind.TEXT, step=0, text=HOSTILE, stream="s"),
    ], start=1):
        printer(Event(run_id="run_x", seq=seq, data=data))
    printer.flush()
    shown = visible(out)
    assert "reject by bo: [/x] [bold red]loud[/]" in shown
    assert shown.count("\\x1b[2J") == 6
    assert "\x1b[2J" not in shown and "\x1b]0;pwned" not in shown and "\x07" not in shown


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "300")
    return tmp_path / "home"


def test_the_cli_decides_with_hostile_comments_and_says_when_a_decision_id_was_used(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "-q"]) == 0  # parks at the checkpoint: nobody to ask
    capsys.readouterr()
    main(["runs", "--status", "paused"])
    [run_id] = [w for w in capsys.readouterr().out.split() if w.startswith("run_")]
    assert main(["approve", run_id, "-m", HOSTILE, "--decision-id", "d-1"]) == 0
    out = capsys.readouterr().out
    assert "approve recorded" in out and "approve by local: [/x] [bold red]loud[/]" in out
    assert "\x1b[2J" not in out

    assert main(["approve", run_id, "-m", HOSTILE, "--decision-id", "d-1"]) == 0  # the same again
    out = capsys.readouterr().out
    assert "decision id d-1 was already used (approve by local" in out and "approve recorded" not in out

    assert main(["reject", run_id, "--decision-id", "d-1"]) == 2  # another decision: refused, and why
    captured = capsys.readouterr()
    assert "reject recorded" not in captured.out
    assert "already used: approve" in captured.err and "this reject was not applied" in captured.err
    assert "\x1b[2J" not in captured.err and "\\x1b[2J" in captured.err

    assert main(["skip", run_id]) == 2  # the run has ended: the first decision is named
    assert "already decided: approve by local" in capsys.readouterr().err

    assert main(["show", run_id]) == 0
    out = capsys.readouterr().out
    assert "[approve by local: [/x] [bold red]loud[/]" in out and "duration" in out


def test_records_print_their_untrusted_text_as_written(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plans", "add", "--title", f"CSV {HOSTILE}", "--body", f"Body [b]x[/b] {HOSTILE}"]) == 0
    [record_id] = [w for w in capsys.readouterr().out.split() if w.startswith(("plan_", "plan-"))][:1]
    assert main(["plans", "show", record_id]) == 0
    out = capsys.readouterr().out
    assert "CSV [/x] [bold red]loud[/]" in out and "Body [b]x[/b] [/x]" in out  # as written, no backslashes
    assert "\x1b[2J" not in out and "\x07" not in out and "\\x1b[2J" in out
