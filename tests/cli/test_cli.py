"""The `flowrun` command: the demo end to end, and errors as one clear line with a non-zero exit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from flowrun.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def test_demo_runs_the_full_sdlc_flow_to_a_pull_request(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--yes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Run page: http://127\.0\.0\.1:8765/runs/run_[0-9A-Z]{26}", out)  # (served by `flowrun serve`)
    assert "Sign off before the PR opens." in out
    assert "approve by local" in out
    assert "OK" in out  # the sample's tests ran inside the sandbox and their output streamed
    assert "+def to_csv" in out  # the Implement step's edit, shown as a diff
    log = subprocess.run(["git", "--git-dir", str(home / "demo" / "insights.git"), "log", "--format=%s",
                          "flowrun/csv-export"], capture_output=True, text=True, check=True).stdout
    assert log.splitlines()[0] == "Add a CSV download of the weekly report"
    assert main(["runs", "--status", "completed"]) == 0
    assert "full-sdlc" in capsys.readouterr().out


def test_demo_without_a_terminal_parks_at_the_checkpoint_and_approve_finishes(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "-q"]) == 0  # stdin is not a terminal under pytest: nobody to ask
    out = capsys.readouterr().out
    assert "Decide with: flowrun approve" in out
    main(["runs", "--status", "paused"])
    [run_id] = [w for w in capsys.readouterr().out.split() if w.startswith("run_")]
    assert main(["approve", run_id, "-m", "ship it"]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["show", run_id, "--transcript", "--outputs"]) == 0
    out = capsys.readouterr().out
    assert "ship it" in out
    assert f"artifact pull_request: {home / 'demo' / 'insights.git'}#flowrun/csv-export@" in out.replace("\n", "")
    assert '"tests_passed": true' in out


@pytest.mark.parametrize(("argv", "message"), [
    (["show", "run_nope"], "error: run run_nope not found"),
    (["run", "full-sdlc", "-p", "nope=1"], "error: flow 'full-sdlc' has no parameter 'nope'"),
    (["run", "full-sdlc", "-p", "goal"], "error: parameters are KEY=VALUE, got 'goal'"),
    (["run", "no-such-flow"], "error: no flow 'no-such-flow'"),
    (["health", "--resolve", "health_nope"], "error: no health event 'health_nope'"),
])
def test_errors_print_one_line_and_exit_non_zero(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_a_closed_stdout_does_not_stop_the_run(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`flowrun demo --yes | head -1`: the reader leaves after one line, the run still completes."""
    import os
    import sys

    code = "import sys; from flowrun.cli import main; sys.exit(main())"
    child = subprocess.Popen([sys.executable, "-c", code, "demo", "--yes"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "FLOWRUN_HOME": str(home)})
    assert child.stdout is not None and child.stderr is not None
    assert "flowrun demo" in child.stdout.readline().decode()
    child.stdout.close()  # like `head -1`
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert main(["runs", "--status", "completed"]) == 0
    assert "full-sdlc" in capsys.readouterr().out
