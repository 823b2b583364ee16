"""Choosing a run's profile (one row per rule) and loading a profile directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.flows.errors import NotFound, TemplateError
from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import load_profiles, select_profile

PROFILES = {
    "default": SandboxProfile(name="default"),
    "node": SandboxProfile(name="node", repository_id="orcette/insights"),
    "py": SandboxProfile(name="py", repository_id="orcette/api"),
}


@pytest.mark.parametrize(
    ("rule", "requested", "params", "expected"),
    [
        ("no choice, no repositoryId: the default", None, {}, "default"),
        ("repositoryId selects the matching profile", None, {"repositoryId": "orcette/api"}, "py"),
        (
            "an explicit choice wins over repositoryId",
            "node",
            {"repositoryId": "orcette/api"},
            "node",
        ),
        (
            "an unmatched repositoryId falls back to the default",
            None,
            {"repositoryId": "x/y"},
            "default",
        ),
        ("other parameters do not select", None, {"repository": "orcette/api"}, "default"),
    ],
)
def test_select_profile(
    rule: str, requested: str | None, params: dict[str, object], expected: str
) -> None:
    assert select_profile(PROFILES, requested, params, "default").name == expected, rule


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(NotFound) as info:
        select_profile(PROFILES, "ruby", {}, "default")
    assert "default, node, py" in info.value.message
    with pytest.raises(NotFound):
        select_profile(PROFILES, None, {}, "missing-default")


def test_load_profiles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: analytics\nrepository_id: orcette/insights\nrepositories:\n  - url: ../repo\n"
        "limits:\n  cpu_seconds: 30\n"
    )
    (tmp_path / "b.yml").write_text("name: e2b-node\nbackend: e2b\ntemplate: node20\n")
    profiles = load_profiles(tmp_path)
    assert sorted(profiles) == ["analytics", "e2b-node"]
    assert profiles["analytics"].source_dir == str(tmp_path.resolve())
    assert profiles["analytics"].limits.cpu_seconds == 30
    assert profiles["e2b-node"].template == "node20"


def test_load_profiles_refuses_duplicates_and_missing_dirs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\n")
    (tmp_path / "b.yaml").write_text("name: same\n")
    with pytest.raises(TemplateError, match="already defined"):
        load_profiles(tmp_path)
    with pytest.raises(NotFound):
        load_profiles(tmp_path / "nope")
