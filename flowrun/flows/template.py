"""Flow templates: ordered steps bound to skills, with parameters, defaults and triggers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .enums import CheckpointMode, ExecutionMode
from .errors import ParameterError, TemplateError
from .expressions import check_condition, check_template, referenced_steps
from .loading import load_yaml_model

MAX_SUBAGENTS_PER_BATCH = 20
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSpec(_Model):
    name: str
    type: ParamType = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None


WaitAction = Literal["wait", "approve", "reject"]


class WaitPolicy(_Model):
    """What happens when nobody decides a checkpoint in time: keep waiting (the default), or
    approve or reject it; the decision is recorded as auto-resolved, with the reason."""

    after_s: float = Field(gt=0)
    then: WaitAction = "wait"

    @field_validator("after_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class CheckpointSpec(_Model):
    message: str = "Approve to continue."
    auto_approve_in_background: bool = False
    on_timeout: WaitPolicy | None = None


class StepSpec(_Model):
    name: str
    skill: str
    checkpoint: CheckpointSpec | None = None
    when: str | None = None
    subagents: int = Field(default=0, ge=0, le=MAX_SUBAGENTS_PER_BATCH)
    model: str | None = None
    max_turns: int | None = Field(default=None, ge=1)

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_shorthand(cls, value: Any) -> Any:
        # `checkpoint: "Sign off before the PR opens."` or `checkpoint: true`
        if isinstance(value, str):
            return {"message": value}
        if value is True:
            return {}
        if value is False:
            return None
        return value


class FlowDefaults(_Model):
    sandbox_profile: str = "local"
    execution_mode: ExecutionMode = ExecutionMode.INTERACTIVE
    checkpoint_mode: CheckpointMode = CheckpointMode.TEMPLATE


class ScheduleTrigger(_Model):
    cron: str
    timezone: str = "UTC"
    paused: bool = False
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (e.g. '0 9 * * 1-5')")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as 'Europe/Paris')") from None
        return value


PullRequestAction = Literal["opened", "synchronize", "reopened"]
_DEFAULT_PR_EVENTS: tuple[PullRequestAction, ...] = ("opened", "synchronize", "reopened")


class PullRequestTrigger(_Model):
    repository: str  # owner/name
    events: list[PullRequestAction] = Field(default_factory=lambda: list(_DEFAULT_PR_EVENTS))


class Triggers(_Model):
    schedule: ScheduleTrigger | None = None
    pull_request: PullRequestTrigger | None = None


class FlowTemplate(_Model):
    schema_version: Literal[1] = 1
    id: str
    name: str
    description: str = ""
    parameters: list[ParameterSpec] = Field(default_factory=list)
    defaults: FlowDefaults = Field(default_factory=FlowDefaults)
    triggers: Triggers = Field(default_factory=Triggers)
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("must be a lowercase slug (letters, digits, '-' and '_')")
        return value

    def step_index(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, int) or name_or_index.isdigit():
            index = int(name_or_index)
            if 0 <= index < len(self.steps):
                return index
        else:
            for i, step in enumerate(self.steps):
                if step.name == name_or_index:
                    return i
        names = ", ".join(s.name for s in self.steps)
        raise ParameterError(f"flow {self.id!r} has no step {name_or_index!r} (steps: {names})")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '2h', '1d' -> seconds. Raises ValueError naming the text."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. '90s', '30m', '2h', '1d')")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def validate_flow(flow: FlowTemplate, skills: Mapping[str, object], source: str = "") -> None:
    """Cross-field checks the models cannot do alone.

    Raises:
        TemplateError: duplicate step or parameter names, unknown skills, invalid conditions, or a
            step whose condition or checkpoint refers to itself or a later step (a cycle).
    """
    where = f"{source or flow.id}: "
    seen: dict[str, int] = {}
    for i, step in enumerate(flow.steps):
        if step.name in seen:
            raise TemplateError(f"{where}steps.{i}.name: duplicate step name {step.name!r} (also step {seen[step.name]})")
        seen[step.name] = i
        if step.skill not in skills:
            known = ", ".join(sorted(skills)) or "none"
            raise TemplateError(f"{where}steps.{i}.skill: unknown skill {step.skill!r} (known: {known})")
        if step.when is not None:
            try:
                check_condition(step.when)
            except TemplateError as exc:
                raise TemplateError(f"{where}steps.{i}.when: {exc.message}") from None
            for ref in referenced_steps(step.when, expression=True):
                if ref not in seen or seen[ref] >= i:
                    raise TemplateError(
                        f"{where}steps.{i}.when: refers to step {ref!r}, which does not run before "
                        f"{step.name!r} (a condition may only read earlier steps; this would be a cycle)"
                    )
    names = [p.name for p in flow.parameters]
    for name in names:
        if names.count(name) > 1:
            raise TemplateError(f"{where}parameters: duplicate parameter {name!r}")


def check_instructions(slug: str, instructions: str) -> None:
    try:
        check_template(instructions)
    except TemplateError as exc:
        raise TemplateError(f"skill {slug!r}: instructions: {exc.message}") from None


def load_flow(path: Path) -> FlowTemplate:
    return load_yaml_model(FlowTemplate, path)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _coerce(spec: ParameterSpec, value: Any) -> Any:
    """Accept the declared type, or a string that parses as it (CLI `-p key=value`)."""
    expected = _TYPES[spec.type]
    if isinstance(value, bool) and spec.type in ("integer", "number"):
        raise ValueError
    if isinstance(value, expected):
        return value
    if isinstance(value, str):
        text = value.strip()
        if spec.type == "integer":
            return int(text)
        if spec.type == "number":
            return float(text)
        if spec.type == "boolean":
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if spec.type in ("array", "object"):
            parsed = json.loads(text)
            if isinstance(parsed, expected):
                return parsed
    raise ValueError


MAX_PARAMETER_BYTES = 64 * 1024
MAX_PARAMETERS_BYTES = 256 * 1024


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    return len(json.dumps(value, default=str).encode())


def _check_sizes(flow: FlowTemplate, given: Mapping[str, Any]) -> None:
    """Parameters are stored with the run and copied into its events: a few KB is what they are
    for, so one over 64 KB (or all together over 256 KB) is refused, before anything is stored."""
    total = 0
    for name, value in given.items():
        size = _size(value)
        total += size
        if size > MAX_PARAMETER_BYTES:
            raise ParameterError(
                f"parameter {name!r} of flow {flow.id!r} is {_human(size)}; a parameter may be at most "
                f"{_human(MAX_PARAMETER_BYTES)} (put large content in a file or repository and pass its path)"
            )
    if total > MAX_PARAMETERS_BYTES:
        raise ParameterError(
            f"the parameters of flow {flow.id!r} add up to {_human(total)}; together they may be at most "
            f"{_human(MAX_PARAMETERS_BYTES)}"
        )


def _human(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KB"


def bind_parameters(flow: FlowTemplate, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate and coerce start parameters.

    Returns the bound parameters and the names of required parameters left empty (the caller
    turns those into a `missing_parameters` start refusal, naming every one of them).

    Raises:
        ParameterError: an unknown parameter, or a value of the wrong type.
    """
    specs = {p.name: p for p in flow.parameters}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        allowed = ", ".join(specs) or "none"
        raise ParameterError(f"flow {flow.id!r} has no parameter {', '.join(map(repr, unknown))} (parameters: {allowed})")
    _check_sizes(flow, given)
    bound: dict[str, Any] = {}
    missing: list[str] = []
    problems: list[str] = []
    for name, spec in specs.items():
        value = given.get(name)
        if value is None or value == "":
            if spec.default is not None:
                bound[name] = spec.default
            elif spec.required:
                missing.append(name)
            else:
                bound[name] = None
            continue
        try:
            bound[name] = _coerce(spec, value)
        except (ValueError, json.JSONDecodeError):
            problems.append(f"{name!r} must be {'an' if spec.type[0] in 'aeiou' else 'a'} {spec.type}, got {value!r}")
            continue
        if spec.choices is not None and bound[name] not in spec.choices:
            problems.append(f"{name!r} must be one of {spec.choices}, got {bound[name]!r}")
    if problems:
        raise ParameterError(f"invalid parameters for flow {flow.id!r}: " + "; ".join(problems))
    return bound, missing
