"""`flowrun plans`, `flowrun schedules` and `flowrun notifications` from the command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowrun.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def test_plans_add_list_update_show_and_launch(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plans"]) == 0
    assert "no plans or initiatives yet" in capsys.readouterr().out
    assert main(["plans", "add", "--title", "CSV [bold]export[/]", "--body", "Add a CSV download."]) == 0
    out = capsys.readouterr().out
    plan_id = re.search(r"plan_\w+", out)
    assert plan_id and "CSV [bold]export[/]" in out  # titles are text, never markup
    assert main(["plans", "update", plan_id.group(), "--status", "active", "--link", "https://example.org/x"]) == 0
    assert "active" in capsys.readouterr().out
    assert main(["plans", "show", plan_id.group()]) == 0
    shown = capsys.readouterr().out
    assert "Add a CSV download." in shown and "https://example.org/x" in shown
    assert main(["plans", "add", "--title", "   "]) == 2
    assert "a record needs a title" in capsys.readouterr().err
    assert main(["run", "full-sdlc", "--record", plan_id.group(), "--yes", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"plan: {plan_id.group()}" in out and "completed" in out
    assert main(["run", "full-sdlc", "--record", "plan_nope", "--yes", "-q"]) == 1
    assert "Pre-flight failed: the record 'plan_nope'" in capsys.readouterr().err


QUICK_FLOW = "id: quick\nname: Quick\ndefaults: {sandbox_profile: quiet}\nsteps:\n  - {name: Review, skill: review}\n"
REVIEW_SKILL = "slug: review\ninstructions: Review {{ record.title }}.\nallowed_tools: []\noutput_schema: {type: object}\n"
REVIEW_SCRIPT = "skill: review\nturns:\n  - tools:\n      - {name: submit_result, input: {outcome: success, summary: ok}}\n"


def test_a_plans_repository_chooses_the_profile_unless_one_is_given(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root, scripts = tmp_path / "catalog", tmp_path / "scripts"
    for folder in (root / "flows", root / "skills", root / "profiles", scripts):
        folder.mkdir(parents=True)
    (root / "flows" / "quick.yaml").write_text(QUICK_FLOW)
    (root / "skills" / "review.yaml").write_text(REVIEW_SKILL)
    (root / "profiles" / "quiet.yaml").write_text("name: quiet\nbackend: noop\n")
    (root / "profiles" / "tools.yaml").write_text("name: tools\nbackend: noop\nrepository_id: acme/tools\n")
    (scripts / "review.yaml").write_text(REVIEW_SCRIPT)
    monkeypatch.setenv("FLOWRUN_PATH", str(root))
    monkeypatch.setenv("FLOWRUN_SCRIPTS", str(scripts))

    def add(repository: str) -> str:
        assert main(["plans", "add", "--title", "Tidy", "--repository", repository]) == 0
        found = re.search(r"plan_\w+", capsys.readouterr().out)
        assert found
        return found.group()

    plan = add("acme/tools")
    for extra, profile in (([], "tools"), (["--profile", "quiet"], "quiet")):
        assert main(["run", "quick", "--record", plan, "--yes", *extra]) == 0
        out = capsys.readouterr().out
        assert f"profile {profile} " in out and "completed" in out
        assert f"plan: {plan}  http://127.0.0.1:8765/records/{plan}" in out  # the plan's page, beside the run's
    nowhere = add("acme/nowhere")
    assert main(["run", "quick", "--record", nowhere, "--yes", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"the repository 'acme/nowhere' of plan '{nowhere}'" in err and "repository_id: acme/nowhere" in err


def test_schedules_and_notifications_without_any(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedules"]) == 0
    assert "no Flow has a schedule" in capsys.readouterr().out
    assert main(["schedules", "pause"]) == 2
    assert "needs the Flow" in capsys.readouterr().err
    assert main(["schedules", "pause", "full-sdlc"]) == 2  # NotFound: your input
    assert "has no schedule" in capsys.readouterr().err
    assert main(["notifications"]) == 0
    assert "no notifications yet" in capsys.readouterr().out


def test_integrations_connect_never_shows_the_token(home: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import httpx
    import respx

    token = "ghp_" + "A1b2C3d4" * 5
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    with respx.mock(assert_all_mocked=True) as router:
        router.get("https://api.github.com/user").mock(return_value=httpx.Response(200, json={"login": "octocat"}))
        assert main(["integrations", "connect", "github", "--token-stdin"]) == 0
    assert main(["integrations"]) == 0
    out = capsys.readouterr().out
    assert "connected for local as octocat" in out and "github  local as octocat" in out
    assert token not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("ghp_bad\n"))
    with respx.mock(assert_all_mocked=True) as router:
        router.get("https://api.github.com/user").mock(return_value=httpx.Response(401, json={}))
        assert main(["integrations", "connect", "github", "--token-stdin"]) == 2
    assert "refused that token" in capsys.readouterr().err
    assert main(["integrations", "disconnect", "github"]) == 0
    assert "disconnected" in capsys.readouterr().out
