"""Finding and choosing sandbox profiles for a run.

Choosing a profile per run picks which profile a run uses; it never edits a profile, so the
template a profile names is the same for every run that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..flows.errors import NotFound, TemplateError
from ..flows.profiles import SandboxProfile, load_profile

REPOSITORY_PARAM = "repositoryId"


def load_profiles(directory: Path) -> dict[str, SandboxProfile]:
    """Every `*.yaml`/`*.yml` profile in `directory`, by profile name.

    Raises:
        NotFound: `directory` does not exist.
        TemplateError: a file is malformed, or two files declare the same name.
    """
    if not directory.is_dir():
        raise NotFound(f"profile directory {directory} does not exist", path=str(directory))
    profiles: dict[str, SandboxProfile] = {}
    sources: dict[str, Path] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        profile = load_profile(path)
        if profile.name in profiles:
            raise TemplateError(
                f"{path}: profile {profile.name!r} is already defined in {sources[profile.name]}",
                source=str(path),
            )
        profiles[profile.name] = profile
        sources[profile.name] = path
    return profiles


def select_profile(
    profiles: Mapping[str, SandboxProfile],
    requested: str | None,
    params: Mapping[str, object],
    default: str,
) -> SandboxProfile:
    """The profile a run uses: the one asked for; else the one whose `repository_id` matches a
    start parameter named `repositoryId`; else `default`.

    Raises:
        NotFound: the chosen name is not a known profile (the message lists the known ones).
    """
    if requested:
        return _named(profiles, requested)
    repository = params.get(REPOSITORY_PARAM)
    if repository is not None:
        for profile in profiles.values():
            if profile.repository_id is not None and profile.repository_id == str(repository):
                return profile
    return _named(profiles, default)


def _named(profiles: Mapping[str, SandboxProfile], name: str) -> SandboxProfile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or "none"
        raise NotFound(
            f"unknown sandbox profile {name!r} (known: {known})",
            profile=name,
            known=sorted(profiles),
        ) from None
