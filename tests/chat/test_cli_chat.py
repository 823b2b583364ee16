"""`flowrun chat` in the terminal, offline: commands and words, run progress inline, a prompt at
the checkpoint, and a chat continued later with its history."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.cli import main

from .chatkit import environment


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("FLOWRUN_MODEL", raising=False)
    monkeypatch.delenv("FLOWRUN_CHAT_MODEL", raising=False)
    return tmp_path


def test_flowrun_chat_starts_a_run_shows_progress_and_decides_in_words(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "-m", "/run tiny goal=demo", "-m", "looks good, ship it"]) == 0
    out = capsys.readouterr().out
    assert "Started **Tiny** as run" in out
    assert "step 1/2 Draft: completed" in out
    assert "Checkpoint" in out and "Sign off before shipping." in out
    assert "Answer in words" in out
    assert "was approved by local: “looks good, ship it”" in out
    assert "step 2/2 Ship: completed" in out and "Tiny (run run_" in out and "completed (2 of 2 steps done)" in out
    chat_id = out.split("flowrun chat --chat ")[1].split()[0]
    run_id = out.split("Started **Tiny** as run `")[1].split("`")[0]
    assert main(["show", run_id]) == 0
    assert f"started by local (chat {chat_id})" in capsys.readouterr().out  # the summary card's launch

    assert main(["chat", "--chat", chat_id, "-m", "/status"]) == 0
    again = capsys.readouterr().out
    assert "you› /run tiny goal=demo" in again  # the history comes first
    assert ": **completed**" in again


def test_flowrun_chat_refuses_a_chat_that_is_not_there(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--chat", "chat_nope", "-m", "hi"]) == 2
    assert "no chat 'chat_nope' of yours" in capsys.readouterr().err
