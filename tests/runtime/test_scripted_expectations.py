"""The scripted model never claims what did not happen: each call states what it expects back
(success by default), and anything else fails the step naming the script, turn, call and result."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor

from .harness import catalog, running_engine

pytestmark = pytest.mark.anyio
ANA = Actor("ana")

SCRIPT = """skill: build
turns:
  - tools:
      - name: shell
        input: {{command: "{command}"}}
{expect}
  - tools:
      - name: submit_result
        input: {{outcome: success, summary: built it, output: {{}}}}
"""


async def run_script(tmp_path: Path, command: str, expect: str = "") -> tuple[RunStatus, str]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "build.yaml").write_text(SCRIPT.format(command=command, expect=expect))
    cat = catalog([{"name": "Build", "skill": "build"}], defaults={"sandbox_profile": "local"})
    async with running_engine(tmp_path, cat, ScriptedProvider.from_directory(scripts)) as engine:
        run = await engine.start_run(ANA, "test-flow")
        run = await engine.wait_until(ANA, run.id, timeout_s=30)
    step = run.steps[0]
    assert (run.status == RunStatus.COMPLETED) == (step.status == StepStatus.COMPLETED)
    return run.status, step.summary or ""


async def test_a_failed_call_the_script_expected_to_succeed_fails_the_step(tmp_path: Path) -> None:
    status, summary = await run_script(tmp_path, "echo no such thing >&2; exit 3")
    assert status == RunStatus.FAILED
    assert f"{tmp_path / 'scripts' / 'build.yaml'}, turn 1, call 1 (shell)" in summary
    assert "expected it to succeed, but it failed" in summary
    assert "exit code: 3" in summary and "no such thing" in summary  # what came back
    assert "built it" not in summary


async def test_output_the_script_expects_must_be_there(tmp_path: Path) -> None:
    status, summary = await run_script(tmp_path, "echo 0 tests ran", "        expect_output: Ran 4 tests")
    assert status == RunStatus.FAILED
    assert "expected its result to contain 'Ran 4 tests'" in summary and "0 tests ran" in summary


@pytest.mark.parametrize(("command", "expect", "ok"), [
    ("echo Ran 4 tests", "        expect_output: Ran 4 tests", True),
    ("exit 1", "        expect: error", True),
    ("true", "        expect: error", False),  # expected to fail, and it did not
    ("exit 1", "        expect: any", True),
])
async def test_what_a_call_states_it_expects(tmp_path: Path, command: str, expect: str, ok: bool) -> None:
    status, summary = await run_script(tmp_path, command, expect)
    assert (status == RunStatus.COMPLETED) is ok, summary
