"""`when:` conditions are bounded in time and size, and a failing one fails the run with its
error (never leaves it interrupted, never hangs the process that loads the Flow)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.flows.errors import TemplateError
from flowrun.flows.template import FlowTemplate
from flowrun.runtime.access import Actor
from flowrun.runtime.conditions import evaluate_when

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
PARKED = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.PAUSED, RunStatus.BLOCKED, RunStatus.INTERRUPTED]


def flow_with(when: str) -> FlowTemplate:
    return FlowTemplate.model_validate(
        {"id": "f", "name": "F", "steps": [{"name": "A", "skill": "a", "when": when}]}
    )


def test_loading_a_flow_with_a_huge_power_returns() -> None:
    # jinja once folded this constant while compiling the condition at load time, for ever
    assert flow_with("9**(9**9)").steps[0].when == "9**(9**9)"


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("9**(9**9)", "too large"),
        ("1/0", "ZeroDivisionError"),
        ("'ab' * 10**9", "over 100000"),
        ("'%099999999d' % 1", "format width"),
        ("'a'.center(10**9) == 'b'", "failed"),  # a call: evaluated in a bounded child process
        ("'x'.replace('x', 'a' * 100000).replace('a', 'a' * 100000) | length", "failed"),
    ],
)
async def test_runaway_conditions_fail_with_a_clear_error(expr: str, says: str) -> None:
    with anyio.fail_after(20), pytest.raises(TemplateError) as info:
        await evaluate_when(expr, {"params": {}})
    assert expr in info.value.message and says in info.value.message


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("params.n ** 2 == 49", True),
        ("params.name | lower == 'ana'", True),
        ("params.name.startswith('A')", True),  # a call: the child process answers
        ("params.missing", False),
        ("range(3) | list | length == 3", True),
    ],
)
async def test_ordinary_conditions_still_work(expr: str, value: bool) -> None:
    with anyio.fail_after(20):
        assert await evaluate_when(expr, {"params": {"n": 7, "name": "Ana"}}) is value


@pytest.mark.parametrize("when", ["1/0", "9**(9**9)"])
async def test_a_failing_condition_fails_the_run_with_its_error(tmp_path: Path, when: str) -> None:
    steps = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build", "when": when}]
    provider = scripts(plan=[submit("planned")], build=[submit("built")])
    async with running_engine(tmp_path, catalog(steps), provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        run = await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=20)
    assert run.status == RunStatus.FAILED
    assert run.steps[0].status == StepStatus.COMPLETED
    assert run.error is not None and when in run.error and "condition" in run.error
