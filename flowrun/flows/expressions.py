"""Step conditions and skill instructions, evaluated in jinja2's sandbox (never `eval`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.nodes import Const, Getattr, Getitem, Name

from .bounded_jinja import BoundedSandbox, ExpressionTooLarge
from .errors import TemplateError

_env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_lenient = BoundedSandbox(autoescape=False, keep_trailing_newline=True)

# A condition built only from these evaluates in bounded time in-process (arithmetic is size
# bounded by `BoundedSandbox`); anything else (calls, other filters) is evaluated in a separate,
# killable process by the engine.
_SIMPLE_NODES = (
    nodes.Template, nodes.Output, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Const,
    nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Test, nodes.CondExpr, nodes.List,
    nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv,
    nodes.Mod, nodes.Pow, nodes.Neg, nodes.Pos, nodes.Concat, nodes.Filter, nodes.Keyword,
)
_SIMPLE_FILTERS = frozenset({
    "length", "count", "lower", "upper", "default", "d", "int", "float", "string", "trim", "first",
    "last", "abs", "round", "list", "join", "sum", "min", "max", "unique", "sort", "reverse",
})
MAX_CONDITION_CHARS = 2000


@lru_cache(maxsize=512)
def _compile_condition(expr: str) -> Any:
    return _lenient.compile_expression(expr, undefined_to_none=True)


def check_condition(expr: str) -> None:
    """Raise `TemplateError` if `expr` is not a valid expression."""
    if len(expr) > MAX_CONDITION_CHARS:
        raise TemplateError(f"condition is longer than {MAX_CONDITION_CHARS} characters")
    try:
        _compile_condition(expr)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid condition {expr!r}: {exc.message}") from None
    except ExpressionTooLarge as exc:
        raise TemplateError(f"condition {expr!r} is not allowed: {exc}") from None


def is_simple_condition(expr: str) -> bool:
    """True when `expr` uses only comparisons, logic, lookups, bounded arithmetic and cheap
    filters, so evaluating it in-process cannot take long; False for calls and other filters."""
    try:
        ast = _lenient.parse("{{ " + expr + " }}")
    except TemplateSyntaxError:
        return True  # evaluating it only reports the syntax error
    for node in ast.find_all(nodes.Node):
        if not isinstance(node, _SIMPLE_NODES):
            return False
        if isinstance(node, nodes.Filter) and node.name not in _SIMPLE_FILTERS:
            return False
    return True


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """Evaluate a `when:` condition. Undefined names are falsy rather than errors, so a
    condition over an optional parameter reads naturally (`when: params.deploy`). Any failure
    (`1/0`, a result too large to compute) is a `TemplateError` naming the condition."""
    try:
        return bool(_compile_condition(expr)(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid condition {expr!r}: {exc.message}") from None
    except (SecurityError, ExpressionTooLarge) as exc:
        raise TemplateError(f"condition {expr!r} is not allowed: {exc}") from None
    except Exception as exc:
        raise TemplateError(f"condition {expr!r} failed: {type(exc).__name__}: {exc}") from None


def check_template(source: str) -> None:
    try:
        _env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template at line {exc.lineno}: {exc.message}") from None


@lru_cache(maxsize=256)
def _template(source: str) -> Any:
    return _env.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    """Render skill instructions. Undefined names are errors: a typo should not silently
    produce an instruction with a hole in it."""
    try:
        return str(_template(source).render(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template at line {exc.lineno}: {exc.message}") from None
    except UndefinedError as exc:
        raise TemplateError(f"instructions refer to something undefined: {exc.message}") from None
    except (SecurityError, ExpressionTooLarge) as exc:
        raise TemplateError(f"instructions are not allowed to do that: {exc}") from None
    except Exception as exc:
        raise TemplateError(f"instructions failed to render: {type(exc).__name__}: {exc}") from None


def referenced_steps(source: str, *, expression: bool) -> set[str]:
    """Names of steps referenced as `steps.NAME` or `steps['NAME']` in a condition or template."""
    try:
        ast = _env.parse("{{ " + source + " }}" if expression else source)
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.find_all((Getattr, Getitem)):
        base = getattr(node, "node", None)
        if isinstance(base, Name) and base.name == "steps":
            if isinstance(node, Getattr):
                found.add(node.attr)
            elif isinstance(node, Getitem) and isinstance(node.arg, Const):
                found.add(str(node.arg.value))
    return found
