"""Plans and initiatives: launching from one, pre-flight, and a step saving one as its artifact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowrun.flows.enums import LaunchKind, RunStatus, Scope
from flowrun.flows.errors import NotFound, ParameterError, PermissionDenied, StartRefused
from flowrun.flows.profiles import SandboxProfile
from flowrun.flows.run import Launch
from flowrun.llm.base import ModelRequest, StreamEvent, TextBlock
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.records import (
    RecordData,
    create_record,
    get_record,
    list_records,
    update_record,
)

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
READER = Actor("rita", scopes=frozenset({Scope.READ}))
ELSEWHERE = Actor("eve", workspace="other")
PROFILES = [SandboxProfile(name="insights", backend="noop", repository_id="orcette/insights")]

SAVE_PLAN = {"tools": [{"name": "save_record", "input": {"kind": "plan", "title": "CSV export", "body": "1. Do it."}}]}


class Recording(ScriptedProvider):
    """The scripted model, keeping every request it was sent."""

    def __init__(self, provider: ScriptedProvider) -> None:
        super().__init__(provider.scripts)
        self.seen: list[ModelRequest] = []

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.seen.append(request)
        return super().stream(request)


def plan_catalog() -> Catalog:
    return catalog([{"name": "Plan", "skill": "plan"}],
                   skills={"plan": {"instructions": "Plan for {{ record.title }}: {{ record.body }}",
                                    "allowed_tools": ["save_record", "submit_result"],
                                    "output_schema": {"type": "object"}}},
                   profiles=PROFILES)


async def test_records_are_managed_and_checked(tmp_path: Path) -> None:
    async with running_engine(tmp_path, plan_catalog(), scripts()) as engine:
        store = engine.deps.store
        plan = await create_record(store, ANA, "plan", "  CSV export ", "Add it.", repository="orcette/insights")
        assert plan.id.startswith("plan_") and plan.title == "CSV export"
        initiative = await create_record(store, ANA, "initiative", "Reporting")
        assert [r.id for r in await list_records(store, ANA)] == [initiative.id, plan.id]
        assert [r.id for r in await list_records(store, ANA, "plan")] == [plan.id]
        updated = await update_record(store, ANA, plan.id, status="active", add_links=["https://example.org/spec"])
        data = RecordData.model_validate(updated.data)
        assert (data.status, data.links, updated.body) == ("active", ["https://example.org/spec"], "Add it.")
        replaced = await update_record(store, ANA, plan.id, links=["https://example.org/v2"], add_links=["https://a.example"])
        assert replaced.data["links"] == ["https://example.org/v2", "https://a.example"]
        cleared = await update_record(store, ANA, plan.id, repository="", links=[])
        assert (cleared.data["repository"], cleared.data["links"]) == (None, [])
        with pytest.raises(ParameterError, match="needs a title"):
            await create_record(store, ANA, "plan", "   ")
        with pytest.raises(ParameterError, match="owner/name"):
            await create_record(store, ANA, "plan", "x", repository="https://github.com/a/b")
        for link in ("javascript:alert(1)", "ftp://x.example", "https://x.example/a b"):
            with pytest.raises(ParameterError, match="http\\(s\\) URL"):
                await update_record(store, ANA, plan.id, add_links=[link])
        assert (await get_record(store, ANA, plan.id)).model_dump() == cleared.model_dump()  # nothing changed
        with pytest.raises(ParameterError, match="plan or an initiative, not 'epic'"):
            await create_record(store, ANA, "epic", "x")
        with pytest.raises(PermissionDenied):
            await create_record(store, READER, "plan", "x")
        with pytest.raises(NotFound):  # another workspace's record does not exist for you
            await get_record(store, ELSEWHERE, plan.id)
        assert await list_records(store, ELSEWHERE) == []


async def test_a_run_from_a_plan_uses_it_links_it_and_saves_one(tmp_path: Path) -> None:
    provider = Recording(scripts(plan=[SAVE_PLAN, submit("planned")]))
    async with running_engine(tmp_path, plan_catalog(), provider) as engine:
        plan = await create_record(engine.deps.store, ANA, "plan", "CSV export", "Add a CSV download.",
                                   repository="orcette/insights")
        run = await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref=plan.id),
                                     sandbox_profile="insights")
        assert run.links.plan == plan.id  # the summary card links it
        run = await engine.wait_until(ANA, run.id, timeout_s=10)
        assert run.status == RunStatus.COMPLETED
        [saved] = run.steps[0].artifacts
        assert saved.kind == "plan" and saved.ref.startswith("plan_") and saved.ref != plan.id
        record = await get_record(engine.deps.store, ANA, saved.ref)
        assert (record.title, record.body, record.data["created_by"]) == ("CSV export", "1. Do it.", "ana")
        # the record was in the skill's scope: the agent's instructions name it
        first = provider.seen[0].messages[0].content[0]
        assert isinstance(first, TextBlock) and "Plan for CSV export: Add a CSV download." in first.text


async def test_preflight_refuses_a_missing_record_or_repository(tmp_path: Path) -> None:
    async with running_engine(tmp_path, plan_catalog(), scripts(plan=[submit()])) as engine:
        with pytest.raises(StartRefused, match="record 'plan_missing' this Flow runs against is missing"):
            await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref="plan_missing"))
        elsewhere = await create_record(engine.deps.store, ANA, "initiative", "Other repo", repository="acme/unknown")
        with pytest.raises(StartRefused, match="repository 'acme/unknown' of initiative") as refused:
            await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref=elsewhere.id))
        assert refused.value.code == "preflight_failed"
        assert await engine.list_runs(ANA) == []  # nothing was started, nothing counted


async def test_the_records_repository_chooses_the_profile_and_an_explicit_one_wins(tmp_path: Path) -> None:
    async with running_engine(tmp_path, plan_catalog(), scripts(plan=[submit(), submit()])) as engine:
        store = engine.deps.store
        plan = await create_record(store, ANA, "plan", "CSV export", repository="orcette/insights")
        launch = Launch(kind=LaunchKind.RECORD, ref=plan.id)
        assert engine.deps.catalog.flow("test-flow").defaults.sandbox_profile != "insights"
        chosen = await engine.start_run(ANA, "test-flow", launch=launch)
        assert chosen.sandbox_profile == "insights"  # as a `repositoryId` parameter would
        explicit = await engine.start_run(ANA, "test-flow", launch=launch, sandbox_profile="noop")
        assert explicit.sandbox_profile == "noop"
        await engine.idle(10)
        unplaced = await create_record(store, ANA, "plan", "No repository")
        assert (await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref=unplaced.id))
                ).sandbox_profile == "noop"  # no repository: the Flow's default
        theirs = await create_record(store, ELSEWHERE, "plan", "Not yours", repository="orcette/insights")
        with pytest.raises(StartRefused, match=f"record {theirs.id!r} this Flow runs against is missing"):
            await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref=theirs.id))


async def test_a_record_whose_repository_has_no_profile_is_refused_naming_it(tmp_path: Path) -> None:
    async with running_engine(tmp_path, plan_catalog(), scripts()) as engine:
        plan = await create_record(engine.deps.store, ANA, "plan", "Elsewhere", repository="acme/unknown")
        for explicit in (None, "noop"):  # an explicit profile does not make the repository reachable
            with pytest.raises(StartRefused) as refused:
                await engine.start_run(ANA, "test-flow", launch=Launch(kind=LaunchKind.RECORD, ref=plan.id),
                                       sandbox_profile=explicit)
            assert refused.value.code == "preflight_failed"
            assert f"repository 'acme/unknown' of plan {plan.id!r}" in refused.value.message
            assert "repository_id: acme/unknown" in refused.value.message
            assert refused.value.details["repository"] == "acme/unknown"
        assert await engine.list_runs(ANA) == []
