"""Evaluating a step's `when:` condition within bounds of time and memory.

A condition of plain comparisons, logic, lookups and size-bounded arithmetic is evaluated in
the engine's process (it cannot take long). Anything else (method calls, most filters) is
evaluated by `condition_worker` in a child process with a CPU and a memory limit and a wall
clock deadline; past them the child is killed and the condition fails with a clear error. A
condition that fails, for any reason, fails the run with that reason (see the driver).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

from ..flows.errors import TemplateError
from ..flows.expressions import check_condition, evaluate_condition, is_simple_condition

TIME_LIMIT_S = 5.0
CPU_LIMIT_S = 3
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
_WORKER = Path(__file__).resolve().parent / "condition_worker.py"


async def evaluate_when(expr: str, context: dict[str, Any]) -> bool:
    """The condition's truth. Raises `TemplateError` (naming the condition) when it is invalid,
    fails, or exceeds its bounds."""
    check_condition(expr)
    if is_simple_condition(expr):
        return evaluate_condition(expr, context)
    payload = json.dumps({"expr": expr, "context": context}, default=str).encode()
    try:
        with anyio.fail_after(TIME_LIMIT_S):
            done = await anyio.run_process(
                [sys.executable, "-I", str(_WORKER), str(CPU_LIMIT_S), str(MEMORY_LIMIT_BYTES)],
                input=payload, check=False,
            )
    except TimeoutError:
        raise TemplateError(f"condition {expr!r} took longer than {TIME_LIMIT_S:g}s to evaluate") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        why = "ran out of memory or time" if done.returncode != 0 else "gave no answer"
        raise TemplateError(f"condition {expr!r} failed: its evaluation {why}") from None
    if "error" in answer:
        raise TemplateError(f"condition {expr!r} failed: {answer['error']}")
    return bool(answer["value"])

