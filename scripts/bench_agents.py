"""Agent benchmarks (issue 3): figures, not pass/fail. Run: .venv/bin/python scripts/bench_agents.py

Whole runs through the engine (store, transcript sink, scripted model, no-op sandbox); the model is
wrapped to record when each of its turns starts and ends, so the loop's own time can be told apart.

- sub-agent fan-out: a step spawns 20 scripted sub-agents whose model turn sleeps 50 ms. Overhead =
  the fan-out's wall time (the parent's turn that asked for it ending -> the parent's next turn
  starting) minus the slowest sub-agent's time inside the model (target <= 20 ms).
- per-turn loop overhead excluding the model: one conversation of many turns, each a text block and
  a `todo_write` call, no delay; the gap between one turn ending and the next starting.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowrun.flows.enums import RunStatus
from flowrun.llm.base import ModelRequest, StreamEvent
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from tests.runtime.harness import catalog, running_engine, scripts, submit

ANA = Actor("bench")
FANOUT = 20
SLEEP_S = 0.05


@dataclass
class Turn:
    start: float
    end: float = 0.0
    model_s: float = 0.0  # time spent inside the model's own generator (not in the loop's handling)


@dataclass
class Timed:
    """The scripted model, timing each turn per conversation (None: the parent)."""

    inner: ScriptedProvider
    name: str = "timed"
    turns: dict[str | None, list[Turn]] = field(default_factory=dict)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        turn = Turn(time.perf_counter())
        self.turns.setdefault(request.subagent, []).append(turn)
        events = aiter(self.inner.stream(request))
        try:
            while True:
                started = time.perf_counter()
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
                finally:
                    turn.model_s += time.perf_counter() - started
                yield event
        finally:
            turn.end = time.perf_counter()

    def conversation_done(self, request: ModelRequest) -> None:
        self.inner.conversation_done(request)

    def reset(self, inner: ScriptedProvider) -> None:
        """A new script and no timings: one provider serves one engine across repetitions."""
        self.inner, self.turns = inner, {}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def line(name: str, values_ms: list[float], target: str) -> dict[str, Any]:
    row = {"median_ms": statistics.median(values_ms), "p99_ms": pct(values_ms, 99), "max_ms": max(values_ms),
           "n": len(values_ms)}
    print(f"{name:<58} median {row['median_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms  max {row['max_ms']:7.3f} ms"
          f"  (n={row['n']}, {target})")
    return row


async def fan_out(tmp: Path, runs: int) -> None:
    tasks = [{"task": f"part {i + 1}"} for i in range(FANOUT)]
    steps = [{"name": "Fan out", "skill": "fan", "subagents": FANOUT}]
    overheads: list[float] = []
    walls: list[float] = []
    script = scripts(fan=[{"tools": [{"name": "spawn_subagents", "input": {"tasks": tasks}}]}, submit("all done")],
                     fan__subagent=[{"delay_s": SLEEP_S, **submit("part done")}])
    provider = Timed(script)
    async with running_engine(tmp, catalog(steps), provider) as engine:
        for n in range(runs + 1):  # the first one warms up (lazy imports, caches) and is not counted
            provider.reset(script)
            run = await engine.start_run(ANA, "test-flow", checkpoint_mode="none")
            run = await engine.wait_until(ANA, run.id, statuses=[s for s in RunStatus if s.finished], timeout_s=30)
            assert run.status == RunStatus.COMPLETED, run.error
            asked, resumed = provider.turns[None]
            slowest = max(sum(t.model_s for t in turns) for sub, turns in provider.turns.items() if sub)
            assert len(provider.turns) == FANOUT + 1
            wall = resumed.start - asked.end
            if n == 0:
                continue
            walls.append(wall * 1000)
            overheads.append((wall - slowest) * 1000)
    line(f"fan-out of {FANOUT} sub-agents sleeping {SLEEP_S * 1000:.0f} ms: wall", walls, "slowest + overhead")
    line(f"fan-out of {FANOUT}: overhead over the slowest sub-agent", overheads, "target <= 20 ms")


async def per_turn(tmp: Path, runs: int, turns: int) -> None:
    turn = {"text": "working", "tools": [{"name": "todo_write", "input": {"todos": [{"content": "next"}]}}]}
    steps = [{"name": "Work", "skill": "work"}]
    cat = catalog(steps, skills={"work": {"max_turns": turns + 1}})
    gaps: list[float] = []
    model: list[float] = []
    script = scripts(work=[*[turn] * turns, submit("done")])
    provider = Timed(script)
    async with running_engine(tmp, cat, provider) as engine:
        for _ in range(runs):
            provider.reset(script)
            run = await engine.start_run(ANA, "test-flow", checkpoint_mode="none")
            run = await engine.wait_until(ANA, run.id, statuses=[s for s in RunStatus if s.finished], timeout_s=60)
            assert run.status == RunStatus.COMPLETED, run.error
            timed = provider.turns[None]
            # one turn, as the loop sees it: from asking the model to asking it again, less the
            # model's own time (handling its deltas, the usage, the tool call and its entries stay)
            gaps += [(b.start - a.start - a.model_s) * 1000 for a, b in zip(timed, timed[1:], strict=False)]
            model += [t.model_s * 1000 for t in timed]
    line(f"per-turn loop overhead, excluding the model ({turns} turns)", gaps, "a tool call + entries")
    line(f"  the scripted model's own time per turn ({turns} turns)", model, "for reference")


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("fan", "turns", "turns-long"):
            (root / sub).mkdir()
        print(f"flowrun agent benchmarks ({'quick' if quick else 'full'}), scripted model, no-op sandbox\n")
        await fan_out(root / "fan", 5 if quick else 100)
        await per_turn(root / "turns", 2 if quick else 10, 20)
        await per_turn(root / "turns-long", 1 if quick else 3, 200)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    anyio.run(main, parser.parse_args().quick)
