"""What the tools say about a run: the hint and next actions per status (one row per status),
and the transcript as readable lines."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from flowrun.flows import machine
from flowrun.flows.enums import (
    BlockedCause,
    CheckpointMode,
    DecisionKind,
    ExecutionMode,
    RunStatus,
    TranscriptKind,
)
from flowrun.flows.events import Event, StepStatusChanged, TranscriptEntry
from flowrun.flows.run import Blocked, Checkpoint, Links, Run
from flowrun.flows.template import FlowTemplate
from flowrun.tools.handlers import RunStatusName
from flowrun.tools.models import DecisionLiteral
from flowrun.tools.views import run_view, transcript_lines, transcript_markdown

FLOW = FlowTemplate.model_validate({
    "id": "ship", "name": "Ship", "steps": [
        {"name": "Build", "skill": "build"},
        {"name": "Release", "skill": "release", "checkpoint": "Sign off before the release."},
    ],
})


def _run(status: RunStatus, **changes: Any) -> Run:
    run = machine.create(Run(flow=FLOW, started_by="ana", sandbox_profile="local",
                             execution_mode=ExecutionMode.INTERACTIVE, checkpoint_mode=CheckpointMode.TEMPLATE))
    return run.model_copy(update={"status": status, **changes})


ROWS: list[tuple[RunStatus, dict[str, Any], list[str], str]] = [
    (RunStatus.PENDING, {}, ["wait_for_run", "cancel_run"], "Running step 1/2 'Build'"),
    (RunStatus.RUNNING, {}, ["wait_for_run", "cancel_run"], "wait_for_run(until='paused')"),
    (RunStatus.PAUSED, {"checkpoint": Checkpoint(step=1, message="Sign off before the release.")},
     ["decide_checkpoint", "cancel_run"], "before step 2/2 'Release': Sign off before the release."),
    (RunStatus.COMPLETED, {"links": Links(pull_request="org/repo#7")}, [], "Pull request: org/repo#7"),
    (RunStatus.FAILED, {"error": "Step 1 'Build' failed: red tests"}, ["retry_run"], "red tests. retry_run"),
    (RunStatus.REJECTED, {"error": "Not now."}, [], "(Not now.). A rejected run is final"),
    (RunStatus.CANCELLED, {}, ["resume_run"], "resume_run continues"),
    (RunStatus.BLOCKED, {"blocked": Blocked(cause=BlockedCause.CREDENTIAL_NEEDED, message="No GitHub token.",
                                            fix="Connect GitHub.")}, ["resume_run"],
     "Blocked (credential_needed): No GitHub token. Fix: Connect GitHub. Then call resume_run."),
    (RunStatus.INTERRUPTED, {}, ["retry_run"], "Interrupted by a restart"),
]


def test_every_status_has_a_row() -> None:
    assert {row[0] for row in ROWS} == set(RunStatus)


@pytest.mark.parametrize(("status", "changes", "actions", "phrase"), ROWS, ids=[r[0].value for r in ROWS])
def test_hint_and_next_actions(status: RunStatus, changes: dict[str, Any], actions: list[str], phrase: str) -> None:
    view = run_view(_run(status, **changes), "http://flowrun.test/")
    assert view.next_actions == actions
    assert phrase in view.hint
    assert view.url == f"http://flowrun.test/runs/{view.id}"
    assert view.steps[1].checkpoint_message == "Sign off before the release."


def _events(*entries: TranscriptEntry | StepStatusChanged) -> list[Event]:
    return [Event(run_id="run_x", seq=i, data=entry) for i, entry in enumerate(entries, start=1)]


def test_transcript_lines_join_streams_drop_deltas_and_cut_long_text() -> None:
    T = TranscriptKind
    events = _events(
        TranscriptEntry(kind=T.SETUP, text="Sandbox ready"),
        TranscriptEntry(kind=T.TEXT, step=0, stream="s1", text="Let me "),
        TranscriptEntry(kind=T.TEXT, step=0, stream="s1", text="look."),
        TranscriptEntry(kind=T.TOOL_START, step=0, tool="shell", text="shell", data={"input": {"command": "ls -a"}}),
        TranscriptEntry(kind=T.TOOL_DELTA, step=0, tool="shell", stream="c:stdout", text="a\n"),
        TranscriptEntry(kind=T.TOOL_END, step=0, tool="shell", text="exit code: 0\n" + "x" * 50),
        TranscriptEntry(kind=T.TEXT, step=0, stream="s2", text="Done."),
    )
    lines = transcript_lines(events, limit=30)
    assert [(line.seq, line.text) for line in lines] == [
        (1, "Sandbox ready"), (2, "Let me look."), (4, "shell ls -a"),
        (6, "exit code: 0\n" + "x" * 17 + "… (33 more characters)"), (7, "Done."),
    ]
    assert [line.text for line in transcript_lines(events, tail=2)] == ["exit code: 0\n" + "x" * 50, "Done."]
    assert transcript_lines(events, tail=0) == []
    markdown = transcript_markdown(_run(RunStatus.RUNNING), transcript_lines(events))
    assert "## Setup" in markdown and "## Step 1: Build" in markdown and "▸ shell ls -a" in markdown


def test_the_tool_literals_match_the_domain_enums() -> None:
    assert set(get_args(RunStatusName)) == {s.value for s in RunStatus}
    assert set(get_args(DecisionLiteral)) == {d.value for d in DecisionKind}
