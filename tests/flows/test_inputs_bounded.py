"""Bad input is refused with a clear error naming it: a Flow file that is not UTF-8, a run
parameter too large to store."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.flows.errors import ParameterError, TemplateError
from flowrun.flows.template import FlowTemplate, bind_parameters, load_flow
from flowrun.runtime.catalog import Catalog

FLOW = FlowTemplate.model_validate(
    {
        "id": "f",
        "name": "F",
        "parameters": [{"name": "notes", "type": "string"}, {"name": "items", "type": "array"}],
        "steps": [{"name": "A", "skill": "plan"}],
    }
)


def test_a_flow_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    path = tmp_path / "flows" / "latin.yaml"
    path.write_bytes("id: f\nname: Caf\xe9\nsteps: []\n".encode("latin-1"))
    with pytest.raises(TemplateError) as info:
        load_flow(path)
    assert str(path) in info.value.message and "UTF-8" in info.value.message
    with pytest.raises(TemplateError) as again:
        Catalog.load([tmp_path])
    assert str(path) in again.value.message


def test_a_parameter_over_64_kb_is_refused_naming_it() -> None:
    with pytest.raises(ParameterError) as info:
        bind_parameters(FLOW, {"notes": "x" * 3_000_000})
    message = info.value.message
    assert "'notes'" in message and "2.9 MB" in message and "64 KB" in message
    assert len(message) < 400  # the value itself is never echoed back


def test_parameters_that_add_up_past_the_total_are_refused() -> None:
    flow = FlowTemplate.model_validate(
        {
            "id": "wide",
            "name": "Wide",
            "parameters": [{"name": f"p{i}", "type": "string"} for i in range(5)],
            "steps": [{"name": "A", "skill": "plan"}],
        }
    )
    with pytest.raises(ParameterError) as info:
        bind_parameters(flow, {f"p{i}": "x" * 60_000 for i in range(5)})
    assert "at most 256 KB" in info.value.message
    bind_parameters(flow, {f"p{i}": "x" * 60_000 for i in range(4)})
