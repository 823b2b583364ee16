"""A jinja2 sandbox whose arithmetic cannot run away: `**`, `*` and `%` refuse results beyond
a size bound *before* computing them (jinja would otherwise fold `9**(9**9)` at compile time and
never return). This module imports only jinja2, so the condition worker can load it by path.

Size bounds are not a time bound: conditions that are not plainly simple are evaluated in a
separate, killable process (see `flowrun.runtime.conditions`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

MAX_INT_BITS = 4096  # ~1,200 decimal digits
MAX_SEQUENCE = 100_000  # characters or items a `*` or `%` may produce
_WIDTH = re.compile(r"%[-+ #0]*(\d+|\*)?(?:\.(\d+|\*))?")


class ExpressionTooLarge(ValueError):
    """An operation would produce a value past the bounds."""


def _int_bits(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0.0
    return float(abs(value).bit_length())


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Raise `ExpressionTooLarge` if `left operator right` would be too large to compute."""
    if operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
        base = abs(float(left)) if not isinstance(left, int) else float(abs(left))
        if base > 1 and right > 0 and right * math.log2(base) > MAX_INT_BITS:
            raise ExpressionTooLarge(f"{left!r} ** {right!r} is too large (over {MAX_INT_BITS} bits)")
    elif operator == "*":
        if _int_bits(left) + _int_bits(right) > MAX_INT_BITS:
            raise ExpressionTooLarge(f"the product is too large (over {MAX_INT_BITS} bits)")
        for seq, count in ((left, right), (right, left)):
            repeats = isinstance(seq, str | list | tuple) and type(count) is int
            if repeats and len(seq) * max(count, 0) > MAX_SEQUENCE:
                raise ExpressionTooLarge(f"repeating a sequence over {MAX_SEQUENCE} items is not allowed")
    elif operator == "%" and isinstance(left, str):
        for width, precision in _WIDTH.findall(left):
            for number in (width, precision):
                if number == "*" or (number and int(number) > MAX_SEQUENCE):
                    raise ExpressionTooLarge("a format width or precision past the bound is not allowed")


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"**", "*", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)
