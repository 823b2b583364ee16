"""Reading YAML documents into pydantic models with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import TemplateError

M = TypeVar("M", bound=BaseModel)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: `steps.2.skill: Field required`."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateError(f"{source}: malformed YAML{where}: {problem}", source=source) from None


def load_model(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise TemplateError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}", source=source
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(f"{source}: {describe_validation_error(exc)}", source=source) from None


def load_yaml_model(model: type[M], path: Path) -> M:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise TemplateError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            source=str(path),
        ) from None
    return load_model(model, parse_yaml(text, str(path)), str(path))
