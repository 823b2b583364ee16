"""Engine benchmarks (issue 2): figures, not pass/fail. Run: .venv/bin/python scripts/bench_engine.py

- per-step overhead straight through: a 20-step Flow, scripted model, no-op sandbox (target <= 1 ms)
- checkpoint round trip: decision applied (durably stored) to the next step running (target <= 3 ms)
- transcript ingest with group commit (target >= 20,000 events/s), from scripts/bench_store.py
- bytes stored per event at 10 and at 10,000 events in a run (must stay flat)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.access import Actor
from tests.runtime.harness import catalog, running_engine, scripts, submit

STEPS = 20
ANA = Actor("bench")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def line(name: str, values_ms: list[float], target: str) -> dict[str, Any]:
    row = {"median_ms": statistics.median(values_ms), "p99_ms": pct(values_ms, 99), "n": len(values_ms)}
    print(f"{name:<44} median {row['median_ms']:7.3f} ms   p99 {row['p99_ms']:7.3f} ms   (n={row['n']}, target {target})")
    return row


def _cat() -> Any:
    return catalog([{"name": f"step-{i}", "skill": "work"} for i in range(STEPS)])


async def per_step(tmp: Path, runs: int) -> dict[str, Any]:
    provider = scripts(work=[submit("done")])
    gaps: list[float] = []
    async with running_engine(tmp, _cat(), provider) as engine:
        for _ in range(runs):
            run = await engine.start_run(ANA, "test-flow", checkpoint_mode="none")
            starts: list[float] = []
            end = 0.0
            with anyio.fail_after(60):
                async for event in engine.subscribe(ANA, run.id):
                    data = event.data
                    if data.type == "step_status" and data.status == StepStatus.RUNNING:
                        starts.append(time.perf_counter())
                    if data.type == "run_status" and data.status == RunStatus.COMPLETED:
                        end = time.perf_counter()
                        break
            starts.append(end)
            gaps += [(b - a) * 1000 for a, b in zip(starts, starts[1:], strict=False)]
            await engine.idle()
    return line("per-step overhead, straight through", gaps, "<= 1 ms")


async def checkpoint_round_trip(tmp: Path, runs: int) -> dict[str, Any]:
    provider = scripts(work=[submit("done")])
    trips: list[float] = []
    async with running_engine(tmp, _cat(), provider) as engine:
        for _ in range(runs):
            run = await engine.start_run(ANA, "test-flow", checkpoint_mode="every")
            decided_at = 0.0
            with anyio.fail_after(60):
                async for event in engine.subscribe(ANA, run.id):
                    data = event.data
                    if data.type == "checkpoint":
                        decided_at = time.perf_counter()
                        await engine.decide(ANA, run.id, "approve", step=data.checkpoint.step)
                    elif data.type == "step_status" and data.status == StepStatus.RUNNING and decided_at:
                        trips.append((time.perf_counter() - decided_at) * 1000)
                        decided_at = 0.0
                    elif data.type == "run_status" and data.status == RunStatus.COMPLETED:
                        break
            await engine.idle()
    return line("checkpoint round trip (decide -> next step running)", trips, "<= 3 ms")


async def transcript_ingest(tmp: Path, events: int) -> dict[str, Any]:
    """A chatty shell through the engine's transcript sink: entries batched by the sink, group
    committed by the store, each published only after its commit."""
    from flowrun.flows.enums import TranscriptKind
    from flowrun.flows.events import TranscriptEntry
    from flowrun.runtime.transcript import TranscriptSink

    provider = scripts(work=[submit("done")])
    async with running_engine(tmp, _cat(), provider) as engine:
        run = await engine.start_run(ANA, "test-flow", checkpoint_mode="none")
        await engine.idle()
        store = engine.deps.store
        start_seq = (await store.get_run(run.id)).last_seq
        started = time.perf_counter()
        async with TranscriptSink(store, run.id) as sink:
            for i in range(events):
                await sink.emit(TranscriptEntry(kind=TranscriptKind.TOOL_DELTA, step=0, text=f"line {i}\n",
                                                tool="shell", call_id="c", stream="c:stdout"))
        elapsed = time.perf_counter() - started
        assert (await store.get_run(run.id)).last_seq == start_seq + events
    rate = events / elapsed
    print(f"{'transcript ingest through the engine sink':<44} {rate:10,.0f} events/s   (n={events}, target >= 20,000/s)")
    return {"events_per_s": rate}


async def main(quick: bool) -> None:
    from scripts.bench_store import bench_bytes_per_event, bench_ingest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"flowrun engine benchmarks ({'quick' if quick else 'full'}), scripted model, no-op sandbox\n")
        for sub in ("a", "b"):
            (root / sub).mkdir()
        await per_step(root / "a", 3 if quick else 30)
        await checkpoint_round_trip(root / "b", 2 if quick else 20)
        (root / "c").mkdir()
        await transcript_ingest(root / "c", 20_000 if quick else 200_000)
        ingest = await bench_ingest(root / "ingest.db", scale=0.2 if quick else 1.0)
        sizes = await bench_bytes_per_event(root / "bytes.db")
        print("\nstore-level transcript ingest (group commit, scripts/bench_store.py):")
        for name, row in ingest.items():
            print(f"  {name:<28} {row['events_per_s']:>10,} events/s  ({row['appends_per_transaction']} appends per transaction)")
        print("bytes stored per event:")
        for name, row in sizes.items():
            print(f"  {name}: {row}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    anyio.run(main, parser.parse_args().quick)
