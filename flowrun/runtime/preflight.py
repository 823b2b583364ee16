"""Checks before a run may start: a run that never began is told apart from one that broke."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..flows.enums import LaunchKind
from ..flows.errors import NotFound, StartRefused
from ..flows.run import Launch
from ..flows.template import FlowTemplate
from .catalog import Catalog
from .context import EngineDeps
from .repocheck import check_remote


def select_profile_name(catalog: Catalog, requested: str | None, params: Mapping[str, Any], default: str) -> str:
    """An explicit choice wins; else a `repositoryId` parameter picks the profile whose
    repository matches; else the Flow's default.

    Raises:
        NotFound: an explicitly requested profile does not exist.
        StartRefused: `preflight_failed` when `repositoryId` matches no profile.
    """
    if requested:
        if requested not in catalog.profiles:
            known = ", ".join(sorted(catalog.profiles)) or "none"
            raise NotFound(f"no sandbox profile {requested!r} (profiles: {known})", profile=requested)
        return requested
    repository = params.get("repositoryId")
    if repository:
        for name, profile in sorted(catalog.profiles.items()):
            if profile.repository_id == repository:
                return name
        raise StartRefused(
            f"Pre-flight failed: no sandbox profile can see repository {repository!r}.",
            code="preflight_failed", repository=repository,
        )
    if default not in catalog.profiles:
        known = ", ".join(sorted(catalog.profiles)) or "none"
        raise NotFound(f"the Flow's default sandbox profile {default!r} does not exist (profiles: {known})",
                       profile=default)
    return default


async def preflight(deps: EngineDeps, flow: FlowTemplate, profile_name: str, params: Mapping[str, Any],
                    launch: Launch) -> None:
    """Raises StartRefused(`preflight_failed`) naming the missing record or repository."""
    if launch.kind == LaunchKind.RECORD:
        if not launch.ref:
            raise StartRefused("Pre-flight failed: a run launched from a record must name the record.",
                               code="preflight_failed")
        record = await deps.store.get_record(launch.ref)
        if record is None:
            raise StartRefused(f"Pre-flight failed: the record {launch.ref!r} this Flow runs against is missing.",
                               code="preflight_failed", record=launch.ref)
        repository = record.data.get("repository")
        if repository and not any(p.repository_id == repository for p in deps.catalog.profiles.values()):
            raise StartRefused(
                f"Pre-flight failed: the repository {repository!r} of {record.kind} {record.id!r} is not one this "
                "server can reach (no sandbox profile has that repository_id).",
                code="preflight_failed", record=record.id, repository=repository,
            )
    profile = deps.catalog.profiles[profile_name]
    for repo in profile.repositories:
        if "://" in repo.url or repo.url.startswith("git@"):
            await check_remote(repo, profile.name)  # a definite "not found" refuses the start
            continue
        path = Path(repo.url)
        if not path.is_absolute() and profile.source_dir:
            path = Path(profile.source_dir) / path
        if not path.exists():
            raise StartRefused(
                f"Pre-flight failed: repository {repo.url!r} of sandbox profile {profile.name!r} is missing "
                f"(looked at {path}).",
                code="preflight_failed", repository=repo.url,
            )
