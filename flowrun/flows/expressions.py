"""Step conditions and skill instructions, evaluated in jinja2's sandbox (never `eval`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.nodes import Const, Getattr, Getitem, Name
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_lenient = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compile_condition(expr: str) -> Any:
    return _lenient.compile_expression(expr, undefined_to_none=True)


def check_condition(expr: str) -> None:
    """Raise `TemplateError` if `expr` is not a valid expression."""
    try:
        _compile_condition(expr)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid condition {expr!r}: {exc.message}") from None


def evaluate_condition(expr: str, context: dict[str, Any]) -> bool:
    """Evaluate a `when:` condition. Undefined names are falsy rather than errors, so a
    condition over an optional parameter reads naturally (`when: params.deploy`)."""
    try:
        return bool(_compile_condition(expr)(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid condition {expr!r}: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"condition {expr!r} is not allowed: {exc}") from None


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
    except SecurityError as exc:
        raise TemplateError(f"instructions are not allowed to do that: {exc}") from None


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
