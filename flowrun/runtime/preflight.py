"""Checks before a run may start: a run that never began is told apart from one that broke."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..flows.enums import LaunchKind
from ..flows.errors import NotFound, StartRefused
from ..flows.run import Launch
from ..flows.template import FlowTemplate
from ..storage.base import RecordRow
from .catalog import Catalog
from .context import EngineDeps
from .records import RECORD_KINDS, RecordData
from .repocheck import check_remote


async def launch_record(deps: EngineDeps, workspace: str, launch: Launch) -> RecordRow | None:
    """The plan or initiative a run is launched from (None for any other launch).

    Raises:
        StartRefused: `preflight_failed` naming the record when it is not named, does not exist
            or belongs to another workspace (a run never begins against a record it cannot see).
    """
    if launch.kind != LaunchKind.RECORD:
        return None
    if not launch.ref:
        raise StartRefused("Pre-flight failed: a run launched from a record must name the record.",
                           code="preflight_failed")
    record = await deps.store.get_record(launch.ref)
    if record is None or record.kind not in RECORD_KINDS or \
            RecordData.model_validate(record.data).workspace != workspace:
        raise StartRefused(f"Pre-flight failed: the record {launch.ref!r} this Flow runs against is missing.",
                           code="preflight_failed", record=launch.ref)
    return record


def select_profile_name(catalog: Catalog, requested: str | None, params: Mapping[str, Any], default: str,
                        record: RecordRow | None = None) -> str:
    """An explicit choice wins; else a `repositoryId` parameter, else the repository of the
    record the run is launched from, picks the profile whose `repository_id` matches; else the
    Flow's default.

    Raises:
        NotFound: an explicitly requested profile does not exist.
        StartRefused: `preflight_failed` naming the repository (and the record it came from) when
            no profile has it.
    """
    if requested:
        if requested not in catalog.profiles:
            known = ", ".join(sorted(catalog.profiles)) or "none"
            raise NotFound(f"no sandbox profile {requested!r} (profiles: {known})", profile=requested)
        return requested
    repository = params.get("repositoryId")
    if repository:
        found = _profile_for(catalog, repository)
        if found is None:
            raise StartRefused(
                f"Pre-flight failed: no sandbox profile can see repository {repository!r}.",
                code="preflight_failed", repository=repository,
            )
        return found
    if record is not None and (repository := RecordData.model_validate(record.data).repository):
        found = _profile_for(catalog, repository)
        if found is None:
            raise _unreachable(repository, record)
        return found
    if default not in catalog.profiles:
        known = ", ".join(sorted(catalog.profiles)) or "none"
        raise NotFound(f"the Flow's default sandbox profile {default!r} does not exist (profiles: {known})",
                       profile=default)
    return default


def _profile_for(catalog: Catalog, repository: str) -> str | None:
    return next((name for name, p in sorted(catalog.profiles.items()) if p.repository_id == repository), None)


def _unreachable(repository: str, record: RecordRow) -> StartRefused:
    return StartRefused(
        f"Pre-flight failed: the repository {repository!r} of {record.kind} {record.id!r} is not one this server "
        f"can reach: no sandbox profile has `repository_id: {repository}` (add one, or change the "
        f"{record.kind}'s repository).",
        code="preflight_failed", record=record.id, repository=repository,
    )


async def preflight(deps: EngineDeps, flow: FlowTemplate, profile_name: str, params: Mapping[str, Any],
                    record: RecordRow | None) -> None:
    """Raises StartRefused(`preflight_failed`) naming the missing repository (`launch_record`
    has already refused a missing record)."""
    if record is not None:
        repository = RecordData.model_validate(record.data).repository
        if repository and _profile_for(deps.catalog, repository) is None:  # also under an explicit profile
            raise _unreachable(repository, record)
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
