"""An engine on a temp SQLite file, with the scripted model and the no-op (or local) sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from flowrun.flows.profiles import SandboxProfile
from flowrun.flows.redact import Redactor
from flowrun.flows.skills import Skill
from flowrun.flows.template import FlowTemplate
from flowrun.llm.base import ModelProvider
from flowrun.llm.scripted import Script, ScriptedProvider
from flowrun.runtime.catalog import Catalog
from flowrun.runtime.context import EngineConfig, EngineDeps
from flowrun.runtime.engine import Engine
from flowrun.runtime.integrations import GitHub
from flowrun.runtime.tools import builtin_tools
from flowrun.runtime.tools.base import Tool
from flowrun.sandboxes import get_backend
from flowrun.sandboxes.base import SandboxBackend
from flowrun.storage.sqlite import SQLiteStore
from tests.storekinds import StoreKind

ANY_OUTPUT = {"type": "object"}


def submit(summary: str = "done", outcome: str = "success", **output: Any) -> dict[str, Any]:
    return {"tools": [{"name": "submit_result", "input": {"outcome": outcome, "summary": summary, "output": output}}]}


def expecting(turn: Mapping[str, Any], expect: str = "error") -> dict[str, Any]:
    """The turn with every call stating it expects `expect` back (the scripted model's default
    is success, and any other result fails the step)."""
    return {**turn, "tools": [{**call, "expect": expect} for call in turn.get("tools", [])]}


def scripts(**by_skill: Sequence[Mapping[str, Any]]) -> ScriptedProvider:
    return ScriptedProvider({
        name.replace("__", "."): Script.model_validate({"skill": name.replace("__", "."), "turns": list(turns)})
        for name, turns in by_skill.items()
    })


def catalog(steps: Sequence[Mapping[str, Any]], *, skills: Mapping[str, Mapping[str, Any]] | None = None,
            parameters: Sequence[Mapping[str, Any]] = (), defaults: Mapping[str, Any] | None = None,
            profiles: Sequence[SandboxProfile] = ()) -> Catalog:
    flow = FlowTemplate.model_validate({
        "id": "test-flow", "name": "Test Flow", "parameters": list(parameters),
        "defaults": dict(defaults or {"sandbox_profile": "noop"}), "steps": list(steps),
    })
    slugs = {s["skill"] for s in steps}
    skill_defs = {slug: Skill(slug=slug, instructions=f"Do {slug}.", output_schema=ANY_OUTPUT) for slug in slugs}
    for slug, spec in (skills or {}).items():
        skill_defs[slug] = Skill.model_validate({"slug": slug, "instructions": f"Do {slug}.", **spec})
    cat = Catalog(skills=skill_defs, profiles={"noop": SandboxProfile(name="noop", backend="noop"),
                                               "local": SandboxProfile(name="local", backend="local")})
    for p in profiles:
        cat.profiles[p.name] = p
    cat.add_flow(flow)
    return cat


@asynccontextmanager
async def running_engine(tmp_path: Path, cat: Catalog, provider: ModelProvider, *,
                         config: EngineConfig | None = None, backends: Mapping[str, SandboxBackend] | None = None,
                         db: str = "flowrun.db", github: GitHub | None = None,
                         tools: Mapping[str, Tool] | None = None,
                         redactor: Redactor | None = None, kind: StoreKind | None = None) -> AsyncIterator[Engine]:
    """`kind`: the store (tests/storekinds.py); SQLite on `tmp_path / db` by default. Two engines
    with one `tmp_path`, `db` and kind share one database (two processes, as it were)."""
    made: dict[str, SandboxBackend] = dict(backends or {})

    def backend_for(name: str) -> SandboxBackend:
        if name not in made:
            made[name] = get_backend(name, root=tmp_path / "sandboxes")
        return made[name]

    store_cm = kind.store(tmp_path / db, redactor=redactor) if kind is not None else SQLiteStore(tmp_path / db, redactor=redactor)
    async with store_cm as store:
        deps = EngineDeps(store=store, catalog=cat, backend_for=backend_for, provider_for=lambda _m: provider,
                          tools={**builtin_tools(), **(tools or {})}, github=github, redactor=redactor,
                          config=config or EngineConfig(snapshot_dir=tmp_path / "snapshots"))
        async with Engine(deps) as engine:
            yield engine


async def run_child_until(argv: Sequence[str], marker: str) -> tuple[str, list[int]]:
    """Run a child engine process (the `*_child.py` scripts) that prints `RUN <id>`, `SEQ <n>`
    per committed event it sees and `marker` when the moment has come; then SIGKILL it, with no
    cleanup of any kind. Returns the run id and the seqs the child saw committed."""
    import os
    import signal
    import sys

    import anyio
    from anyio.streams.text import TextReceiveStream

    run_id, seen = "", []
    async with await anyio.open_process([sys.executable, *argv]) as proc:
        assert proc.stdout is not None
        buffered = ""
        try:
            with anyio.fail_after(60):
                async for chunk in TextReceiveStream(proc.stdout):
                    buffered += chunk
                    *lines, buffered = buffered.split("\n")
                    for line in lines:
                        kind, *rest = line.split() or [""]
                        if kind == "RUN":
                            run_id = rest[0]
                        elif kind == "SEQ":
                            seen.append(int(rest[0]))
                    if marker in lines:
                        break
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            with anyio.fail_after(10):
                await proc.wait()
    assert proc.returncode == -signal.SIGKILL and run_id
    return run_id, seen
