"""Loading Flows and skills: bad input gets an error naming the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.flows.errors import ParameterError, TemplateError
from flowrun.flows.expressions import evaluate_condition, render
from flowrun.flows.skills import Skill, load_skill, validate_output
from flowrun.flows.template import FlowTemplate, bind_parameters, load_flow, validate_flow

SKILLS = {"plan": object(), "build": object()}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def flow(**overrides: object) -> FlowTemplate:
    data: dict[str, object] = {"id": "f", "name": "F", "steps": [{"name": "A", "skill": "plan"}, {"name": "B", "skill": "build"}]}
    data.update(overrides)
    return FlowTemplate.model_validate(data)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "id: f\nsteps: [\n")
    with pytest.raises(TemplateError, match=r"bad\.yaml: malformed YAML at line \d+"):
        load_flow(path)


def test_missing_field_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "id: f\nname: F\nsteps:\n  - name: A\n")
    with pytest.raises(TemplateError, match=r"f\.yaml: steps\.0\.skill: Field required"):
        load_flow(path)


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "id: f\nname: F\nsteps:\n  - {name: A, skill: plan, subagents: 50}\n")
    with pytest.raises(TemplateError, match=r"steps\.0\.subagents"):
        load_flow(path)


def test_unknown_skill() -> None:
    with pytest.raises(TemplateError, match=r"steps\.1\.skill: unknown skill 'nope'"):
        validate_flow(flow(steps=[{"name": "A", "skill": "plan"}, {"name": "B", "skill": "nope"}]), SKILLS)


def test_duplicate_step_names() -> None:
    with pytest.raises(TemplateError, match="duplicate step name 'A'"):
        validate_flow(flow(steps=[{"name": "A", "skill": "plan"}, {"name": "A", "skill": "build"}]), SKILLS)


def test_condition_on_a_later_step_is_a_cycle() -> None:
    steps = [{"name": "A", "skill": "plan", "when": "steps.B.outcome == 'success'"}, {"name": "B", "skill": "build"}]
    with pytest.raises(TemplateError, match="cycle"):
        validate_flow(flow(steps=steps), SKILLS)


def test_condition_on_itself_is_a_cycle() -> None:
    steps = [{"name": "A", "skill": "plan"}, {"name": "B", "skill": "build", "when": "steps['B'].summary"}]
    with pytest.raises(TemplateError, match="cycle"):
        validate_flow(flow(steps=steps), SKILLS)


def test_invalid_condition_syntax() -> None:
    steps = [{"name": "A", "skill": "plan"}, {"name": "B", "skill": "build", "when": "params.x =="}]
    with pytest.raises(TemplateError, match=r"steps\.1\.when: invalid condition"):
        validate_flow(flow(steps=steps), SKILLS)


def test_checkpoint_shorthand() -> None:
    f = flow(steps=[{"name": "A", "skill": "plan", "checkpoint": "Sign off"}])
    assert f.steps[0].checkpoint is not None and f.steps[0].checkpoint.message == "Sign off"


def test_conditions_run_sandboxed_never_eval() -> None:
    ctx = {"params": {"deploy": True}, "steps": {"A": {"outcome": "success"}}}
    assert evaluate_condition("params.deploy and steps.A.outcome == 'success'", ctx)
    assert not evaluate_condition("params.missing", ctx)
    with pytest.raises(TemplateError, match="not allowed"):
        evaluate_condition("params.__class__.__mro__", ctx)


def test_instructions_render_and_undefined_is_an_error() -> None:
    assert render("Goal: {{ params.goal }}", {"params": {"goal": "ship"}}) == "Goal: ship"
    with pytest.raises(TemplateError, match="undefined"):
        render("{{ nothing.here }}", {})


PARAMS = flow(parameters=[
    {"name": "goal", "type": "string", "required": True},
    {"name": "count", "type": "integer", "default": 3},
    {"name": "dry", "type": "boolean"},
    {"name": "env", "type": "string", "choices": ["dev", "prod"]},
])


def test_bind_parameters_coerces_cli_strings_and_applies_defaults() -> None:
    bound, missing = bind_parameters(PARAMS, {"goal": "x", "dry": "yes", "count": "5"})
    assert bound == {"goal": "x", "count": 5, "dry": True, "env": None} and missing == []


def test_missing_required_parameters_are_all_named() -> None:
    _, missing = bind_parameters(PARAMS, {"goal": ""})
    assert missing == ["goal"]


@pytest.mark.parametrize(("given", "problem"), [
    ({"goal": "x", "count": "many"}, "'count' must be an integer"),
    ({"goal": "x", "count": True}, "'count' must be an integer"),
    ({"goal": "x", "env": "staging"}, "'env' must be one of"),
    ({"goal": "x", "colour": "red"}, "no parameter 'colour'"),
])
def test_bad_parameters(given: dict[str, object], problem: str) -> None:
    with pytest.raises(ParameterError, match=problem):
        bind_parameters(PARAMS, given)


def test_skill_output_schema_must_be_valid(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "slug: s\ninstructions: hi\noutput_schema: {type: 12}\n")
    with pytest.raises(TemplateError, match="output_schema: .*not a valid JSON Schema"):
        load_skill(path)


def test_skill_slug_matches_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not match the file name"):
        load_skill(write(tmp_path, "other.yaml", "slug: s\ninstructions: hi\n"))


def test_skill_instructions_must_parse(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="instructions"):
        load_skill(write(tmp_path, "s.yaml", "slug: s\ninstructions: '{% if %}'\n"))


def test_output_validation_errors_name_the_path() -> None:
    skill = Skill(slug="s", instructions="x", output_schema={
        "type": "object", "properties": {"files": {"type": "array", "items": {"type": "string"}}}, "required": ["files"]})
    assert validate_output(skill, {"files": ["a"]}) == []
    assert validate_output(skill, {"files": [1]}) == ["files/0: 1 is not of type 'string'"]
    assert validate_output(skill, {}) == ["(output): 'files' is a required property"]


def test_bundled_examples_load() -> None:
    from flowrun.runtime.catalog import Catalog

    root = Path(__file__).resolve().parents[2] / "examples"
    catalog = Catalog.load([root])
    assert "full-sdlc" in catalog.flows
    ship = catalog.flows["full-sdlc"].steps[-1]
    assert ship.checkpoint is not None and ship.checkpoint.message == "Sign off before the PR opens."
