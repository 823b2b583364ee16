"""Sub-agent fan-out through whole Flow runs: the engine, the scripted model, noop and local sandboxes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows.enums import Outcome, RunStatus, StepStatus, TranscriptKind
from flowrun.flows.errors import ModelError
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.run import Run
from flowrun.llm.base import ModelRequest, StreamEvent
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.engine import Engine
from flowrun.sandboxes.rootdir import moved_root

from .harness import catalog, expecting, running_engine, scripts, submit

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
FAN_STEP = [{"name": "Fan out", "skill": "fan", "subagents": 20}]
SUB_TURN = {"thinking": "on it", "text": "sub working", "cost_usd": 0.01, "input_tokens": 10, "output_tokens": 5,
            "tools": [{"name": "todo_write", "input": {"todos": [{"content": "do my part"}]}}]}


def spawn(tasks: Sequence[Mapping[str, Any]], **turn: Any) -> dict[str, Any]:
    return {**turn, "tools": [{"name": "spawn_subagents", "input": {"tasks": list(tasks)}}]}


def tasks(n: int) -> list[dict[str, Any]]:
    return [{"task": f"task number {i + 1}"} for i in range(n)]


@dataclass
class Recorder:
    """Wraps the scripted model: records when each sub-agent's turns start and end (also when
    cancelled), and makes chosen sub-agents fail."""

    inner: ScriptedProvider
    fail: Mapping[str, Exception] = field(default_factory=dict)
    name: str = "recorder"
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    active: int = 0
    entered: int = 0
    cancelled: int = 0
    all_in: anyio.Event = field(default_factory=anyio.Event)
    expect: int = 20

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        sub = request.subagent
        if sub is None:
            async for event in self.inner.stream(request):
                yield event
            return
        start = anyio.current_time()
        self.active += 1
        self.entered += 1
        if self.entered == self.expect:
            self.all_in.set()
        try:
            if sub in self.fail:
                raise self.fail[sub]
            async for event in self.inner.stream(request):
                yield event
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
            self.spans.setdefault(sub, []).append((start, anyio.current_time()))

    def conversation_done(self, request: ModelRequest) -> None:
        self.inner.conversation_done(request)


async def settle(engine: Engine, run: Run) -> Run:
    return await engine.wait_until(ANA, run.id, statuses=[s for s in RunStatus if s.finished], timeout_s=20)


async def transcript(engine: Engine, run: Run) -> list[TranscriptEntry]:
    return [e.data for e in await engine.events(ANA, run.id) if isinstance(e.data, TranscriptEntry)]


def spawn_result(entries: list[TranscriptEntry], subagent: str | None = None) -> TranscriptEntry:
    [end] = [e for e in entries if e.kind == TranscriptKind.TOOL_END and e.tool == "spawn_subagents"
             and e.subagent == subagent]
    return end


async def test_twenty_run_concurrently_attributed_and_rolled_up(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[spawn(tasks(20), text="fanning out", cost_usd=0.1), submit("all done")],
        fan__subagent=[{**SUB_TURN, "delay_s": 0.3}, submit("sub done", answer=42)],
    ))
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED, run.error
        entries = await transcript(engine, run)

    ids = [f"sub-{i + 1}" for i in range(20)]
    assert sorted(provider.spans) == sorted(ids)
    # concurrent: every sub-agent's slow first turn overlaps every other one's (in sequence,
    # each would start after the previous one ended)
    first = [spans[0] for spans in provider.spans.values()]
    assert max(start for start, _ in first) < min(end for _, end in first)

    # turns and cost roll up into the step and the run: the parent's 2 turns plus 2 per sub-agent
    step = run.steps[0]
    assert step.usage.turns == 2 + 20 * 2 and run.usage.turns == step.usage.turns
    assert step.usage.cost_usd == pytest.approx(0.1 + 20 * 0.01) and run.usage.cost_usd == step.usage.cost_usd
    assert step.usage.input_tokens == sum(t for t in [1000] * 2 + [10] * 20 + [1000] * 20)

    # every entry a sub-agent made carries its id; its first one says the task
    by_sub: dict[str, list[TranscriptEntry]] = {}
    for entry in entries:
        if entry.subagent is not None:
            by_sub.setdefault(entry.subagent, []).append(entry)
    assert sorted(by_sub) == sorted(ids)
    for n, sub in enumerate(ids):
        mine = by_sub[sub]
        assert mine[0].kind == TranscriptKind.INFO and mine[0].data["task"] == f"task number {n + 1}"
        assert mine[0].data["cwd"] == f"subagents/{sub}"
        kinds = [e.kind for e in mine]
        assert {TranscriptKind.THINKING, TranscriptKind.TEXT, TranscriptKind.TOOL_START, TranscriptKind.TOOL_END} <= set(kinds)
        assert all(e.step == 0 for e in mine)
    assert not [e for e in entries if e.subagent is None and e.text in ("sub working", "on it")]

    # the parent gets every result back, in the order it asked
    end = spawn_result(entries)
    assert not end.is_error
    assert [(s["id"], s["outcome"], s["turns"]) for s in end.data["subagents"]] == [(i, "success", 2) for i in ids]
    returned = json.loads(end.text)
    assert [r["output"] for r in returned] == [{"answer": 42}] * 20


async def test_more_than_the_limit_is_a_tool_error_that_says_the_limit(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[expecting(spawn(tasks(21))), submit("could not fan out")],
        fan__subagent=[submit("never")],
    ))
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED
        end = spawn_result(await transcript(engine, run))
    assert end.is_error and "21 asked" in end.text and "at most 20 per batch" in end.text
    assert provider.entered == 0


async def test_the_step_sets_a_lower_limit(tmp_path: Path) -> None:
    provider = Recorder(scripts(fan=[expecting(spawn(tasks(4))), spawn(tasks(3)), submit("done")],
                                fan__subagent=[submit("sub done")]), expect=3)
    cat = catalog([{"name": "Fan out", "skill": "fan", "subagents": 3}])
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED
        entries = await transcript(engine, run)
    refused, ran = [e for e in entries if e.kind == TranscriptKind.TOOL_END and e.tool == "spawn_subagents"]
    assert refused.is_error and "at most 3 per batch" in refused.text
    assert not ran.is_error and len(ran.data["subagents"]) == 3 and provider.entered == 3


async def test_a_step_without_subagents_is_not_offered_the_tool(tmp_path: Path) -> None:
    provider = scripts(fan=[spawn(tasks(1))])
    async with running_engine(tmp_path, catalog([{"name": "Plain", "skill": "fan"}]), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
    # the scripted model refuses to call a tool the agent was not offered
    assert run.status == RunStatus.FAILED and "not offered" in (run.error or "")


async def test_a_nested_spawn_is_refused_as_a_tool_error(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[spawn(tasks(2)), submit("done")],
        fan__subagent=[expecting(spawn(tasks(1))), submit("did it myself")],
    ), expect=2)
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED
        entries = await transcript(engine, run)
    for sub in ("sub-1", "sub-2"):
        nested = spawn_result(entries, sub)
        assert nested.is_error and "one level deep" in nested.text
    parent = spawn_result(entries)
    assert [s["outcome"] for s in parent.data["subagents"]] == ["success", "success"]
    assert provider.entered == 4  # two sub-agents, two turns each: nothing deeper ran


async def test_one_failing_subagent_does_not_stop_the_others(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[spawn(tasks(6)), submit("most of it")],
        fan__subagent=[{**SUB_TURN, "delay_s": 0.05}, submit("sub done")],
    ), fail={"sub-2": ModelError("the model refused the request", retryable=False),
             "sub-5": RuntimeError("a provider bug")}, expect=6)
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED and run.steps[0].outcome == Outcome.SUCCESS
        entries = await transcript(engine, run)
    outcomes = {s["id"]: (s["outcome"], s["summary"]) for s in spawn_result(entries).data["subagents"]}
    assert outcomes["sub-2"] == ("error", "the model refused the request")
    assert outcomes["sub-5"][0] == "error" and "a provider bug" in outcomes["sub-5"][1]
    assert {k: v[0] for k, v in outcomes.items() if k not in ("sub-2", "sub-5")} == dict.fromkeys(
        ["sub-1", "sub-3", "sub-4", "sub-6"], "success")
    errors = [e for e in entries if e.kind == TranscriptKind.ERROR]
    assert sorted(e.subagent or "" for e in errors) == ["sub-2", "sub-5"]
    assert all(e.is_error for e in errors)


async def test_all_failing_makes_the_spawn_an_error(tmp_path: Path) -> None:
    provider = Recorder(scripts(fan=[expecting(spawn(tasks(2))), submit("nothing worked", outcome="partial")],
                                fan__subagent=[submit("never")]),
                        fail={"sub-1": RuntimeError("boom"), "sub-2": RuntimeError("bang")}, expect=2)
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED and run.steps[0].outcome == Outcome.PARTIAL
        assert spawn_result(await transcript(engine, run)).is_error


async def test_cancelling_the_run_cancels_every_subagent(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[spawn(tasks(20)), submit("never")],
        fan__subagent=[{"delay_s": 60, **submit("never")}],
    ))
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await engine.start_run(ANA, "test-flow")
        with anyio.fail_after(10):
            await provider.all_in.wait()
        assert provider.active == 20
        with anyio.fail_after(10):
            run = await engine.cancel(ANA, run.id)
        assert run.status == RunStatus.CANCELLED and run.steps[0].status == StepStatus.CANCELLED
        # cancel returned after the run's task ended: so did every sub-agent's
        assert provider.active == 0 and provider.cancelled == 20
        entries = await transcript(engine, run)
    assert not [e for e in entries if e.kind == TranscriptKind.ERROR and e.subagent]  # cancelled, not failed


async def test_ids_are_checked(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[expecting(spawn([{"task": "a", "id": "twin"}, {"task": "b", "id": "twin"}])),
             expecting(spawn([{"task": "a", "id": "../escape"}])),
             expecting(spawn([{"task": "a", "cwd": "../outside"}])),
             spawn([{"task": "a", "id": "sub-2"}, {"task": "b"}, {"task": "c"}]),
             expecting(spawn([{"task": "again", "id": "sub-2"}])),
             submit("done")],
        fan__subagent=[submit("sub done")]), expect=3)
    async with running_engine(tmp_path, catalog(FAN_STEP), provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED
        entries = await transcript(engine, run)
    twin, escape, outside, ok, reused = [e for e in entries if e.kind == TranscriptKind.TOOL_END
                                         and e.tool == "spawn_subagents"]
    assert twin.is_error and "'twin'" in twin.text and "more than once" in twin.text
    assert escape.is_error and "invalid input" in escape.text
    assert outside.is_error and "'../outside'" in outside.text
    # generated ids skip the ones the agent chose
    assert [s["id"] for s in ok.data["subagents"]] == ["sub-2", "sub-1", "sub-3"]
    assert reused.is_error and "'sub-2'" in reused.text and "already" in reused.text


async def test_each_subagent_works_in_its_own_subdirectory_on_the_local_sandbox(tmp_path: Path) -> None:
    provider = Recorder(scripts(
        fan=[spawn([*tasks(3), {"task": "in the shared dir", "id": "shared", "cwd": "common"}]),
             submit("done")],
        fan__subagent=[{"tools": [{"name": "write_file", "input": {"path": "note.txt", "content": "hello"}},
                                  {"name": "shell", "input": {"command": "pwd > where.txt; echo listed"}}]},
                       submit("sub done")],
    ), expect=4)
    # a checkpoint after the fan-out parks the run with its workspace still on disk
    cat = catalog([*FAN_STEP, {"name": "Review", "skill": "review", "checkpoint": {"message": "Look at it."}}],
                  defaults={"sandbox_profile": "local"}, skills={"fan": {"allowed_tools": ["shell", "write_file"]}})
    async with running_engine(tmp_path, cat, provider) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.PAUSED and run.steps[0].status == StepStatus.COMPLETED
        entries = await transcript(engine, run)
    # under flowrun's root, or (as root without bubblewrap, pytest's 0700 tmp) moved out of it
    roots = [tmp_path / "sandboxes", moved_root(tmp_path / "sandboxes")]
    [workspace] = [p for root in roots for p in root.rglob("subagents") if p.is_dir()]
    workspace = workspace.parent
    for sub, where in [("sub-1", "subagents/sub-1"), ("sub-2", "subagents/sub-2"), ("sub-3", "subagents/sub-3"),
                       ("shared", "common")]:
        assert (workspace / where / "note.txt").read_text() == "hello", sub
        assert (workspace / where / "where.txt").read_text().strip().endswith("/" + where)
    assert not (workspace / "note.txt").exists()
    deltas = [e for e in entries if e.kind == TranscriptKind.TOOL_DELTA]
    assert sorted(e.subagent or "" for e in deltas) == ["shared", "sub-1", "sub-2", "sub-3"]
    assert len({e.stream for e in deltas}) == 4  # one stream per sub-agent's shell, never glued together


async def test_the_step_deadline_ends_slow_subagents_and_the_step_is_partial(tmp_path: Path) -> None:
    provider = Recorder(scripts(fan=[expecting(spawn(tasks(3)))],  # the deadline comes before a second turn
                                fan__subagent=[{"delay_s": 60, **submit("never")}]), expect=3)
    async with running_engine(tmp_path, catalog(FAN_STEP), provider, config=EngineConfig(step_timeout_s=1.5)) as engine:
        run = await settle(engine, await engine.start_run(ANA, "test-flow"))
        entries = await transcript(engine, run)
    assert run.status == RunStatus.COMPLETED and run.steps[0].outcome == Outcome.PARTIAL, (run.error, entries[-5:])
    assert "time budget" in (run.steps[0].summary or "")
    subs = spawn_result(entries).data["subagents"]
    assert [(s["outcome"], s["summary"]) for s in subs] == [("error", "ran out of the step's time budget")] * 3
