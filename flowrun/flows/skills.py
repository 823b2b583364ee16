"""Skills: what a step's agent is told, which tools it may use and the shape of its result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import TemplateError
from .loading import load_yaml_model
from .template import check_instructions

DEFAULT_TOOLS = ("shell", "read_file", "write_file", "edit_file", "list_files", "search_files", "todo_write")

# The shape every result has, whatever the skill; `output` is checked against the skill's schema.
RESULT_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "outcome": {"type": "string", "enum": ["success", "partial", "blocked", "error"]},
        "summary": {"type": "string", "description": "What the step did, for the person reviewing it."},
        "artifacts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["file", "pull_request", "plan", "initiative", "url"]},
                    "label": {"type": "string"},
                    "ref": {"type": "string", "description": "a path, URL or record id"},
                },
                "required": ["kind", "ref"],
            },
        },
        "output": {"type": "object", "description": "Structured output matching the skill's schema."},
    },
    "required": ["outcome", "summary"],
}


class Skill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    slug: str
    name: str = ""
    description: str = ""
    instructions: str
    allowed_tools: tuple[str, ...] = DEFAULT_TOOLS
    output_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    max_turns: int = Field(default=30, ge=1)
    max_validation_passes: int = Field(default=2, ge=0)
    model: str | None = None

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _instructions_parse(self) -> Skill:
        check_instructions(self.slug, self.instructions)
        return self


def load_skill(path: Path) -> Skill:
    skill = load_yaml_model(Skill, path)
    if skill.slug != path.stem:
        raise TemplateError(f"{path}: slug: {skill.slug!r} does not match the file name {path.stem!r}")
    return skill


def validate_output(skill: Skill, output: Any) -> list[str]:
    """Validation errors of a step's structured output against the skill schema, one per line."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(skill.output_schema)
    errors = []
    for err in sorted(validator.iter_errors(output), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path) or "(output)"
        errors.append(f"{where}: {err.message}")
    return errors
