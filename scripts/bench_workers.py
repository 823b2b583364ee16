"""Benchmark: workers and leases, on SQLite and PostgreSQL (not a test; prints JSON lines).

    .venv/bin/python scripts/bench_workers.py [--quick] [--full] [--stores sqlite,postgres]
        [--workers 1,2,4] [--repeat N] [--only takeover|scaling|full]

For 1, 2 and 4 `flowrun worker` processes on one database, with 20-step scripted Flows (the
local sandbox, whose workspaces any worker on this host reconnects to; no model delay, so the
engine, the store and the sandbox's bookkeeping are what is measured):
- `runs_per_s`: runs started by this process (a face: it writes commands, never drives) and
  driven to completion by the workers;
- `checkpoint_rt_ms`: decide -> the next step running, as a face sees it (p50, p95), for a run
  paused before every step; `remote` is a face with the workers elsewhere, `serve` is a face
  that drives too (`flowrun serve`), where the decision and the claim happen in one process.
Then the take-over time after a SIGKILL (two workers, lease 2 s; target: lease + 1 s), and with
`--full` the issue's size: 500 runs started from 4 processes while 4 workers drive them, each
completing exactly once (checked by `tests/cli/chaoskit.many_runs`: one `completed`, each step
started once, a gapless seq, no run left `running` without a live lease). PostgreSQL comes from FLOWRUN_TEST_DATABASE_URL (default: this
machine's), in a schema made and dropped for the run.

Every line carries the load average (`load`: 1, 5 and 15 minutes) when it was measured: on a
shared machine compare numbers taken under the same load, or ratios of runs made back to back.
`--repeat N` measures each worker count N times (interleaved) and adds the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowrun.config import Settings, open_engine
from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine
from tests.cli.chaoskit import many_runs
from tests.cli.workerkit import environment, worker

PG_URL = os.environ.get("FLOWRUN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]
STEPS = 20


@asynccontextmanager
async def face(env: Mapping[str, str], drive: str = "never") -> AsyncIterator[Engine]:
    settings = dataclasses.replace(Settings.from_env(env), drive=drive, engine_kind="bench")
    async with open_engine(settings) as engine:
        yield engine


@asynccontextmanager
async def database(kind: str, folder: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield str(folder / "flowrun.db")
        return
    import psycopg

    schema = f"bench_{secrets.token_hex(5)}"
    try:
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def emit(line: dict[str, Any]) -> None:
    print(json.dumps({**line, "load": load()}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def runs_per_s(engine: Engine, runs: int) -> float:
    t0 = time.perf_counter()
    ids = [(await engine.start_run(ANA, "relay")).id for _ in range(runs)]
    for run_id in ids:
        run = await engine.wait_until(ANA, run_id, statuses=PARKED, timeout_s=600)
        assert run.status == RunStatus.COMPLETED, (run_id, run.status, run.error)
    return runs / (time.perf_counter() - t0)


async def checkpoint_round_trips(engine: Engine, decisions: int) -> list[float]:
    """Decide -> next step running, for a relay run paused before every step."""
    times: list[float] = []
    while len(times) < decisions:
        run = await engine.start_run(ANA, "relay", checkpoint_mode="every", execution_mode="interactive")
        async with engine.deps.store.subscribe(run.id) as stream:  # type: ignore[attr-defined]
            for index in range(STEPS):
                with anyio.fail_after(60):
                    async for event in stream:
                        if event.data.type == "run_status" and event.data.status in PARKED:
                            break
                if getattr(event.data, "status", None) != RunStatus.PAUSED:
                    raise RuntimeError(f"run {run.id} parked as {(await engine.get_run(ANA, run.id)).model_dump()}")
                t0 = time.perf_counter()
                await engine.decide(ANA, run.id, "approve", step=index)
                with anyio.fail_after(60):
                    async for event in stream:
                        data = event.data
                        if data.type == "step_status" and data.step == index and data.status == StepStatus.RUNNING:
                            times.append(time.perf_counter() - t0)
                            break
                if len(times) >= decisions:
                    break
        if (await engine.get_run(ANA, run.id)).status == RunStatus.PAUSED:
            await engine.cancel(ANA, run.id)
    return times


async def takeover(env: Mapping[str, str], engine: Engine, trials: int, lease_s: float,
                   how: signal.Signals) -> list[float]:
    """Stop the worker driving a run mid-step; seconds until the other worker took it over.
    SIGKILL: on one host the survivor sees the pid is gone and takes over at once; SIGSTOP (a
    hung process, a partitioned machine) leaves it to the lease expiring."""
    took: list[float] = []
    for _ in range(trials):
        async with worker(env) as one, worker(env) as two:
            run = await engine.start_run(ANA, "slow")
            owner = await _owner(engine, run.id)
            victim = one if owner == one.owner else two
            await anyio.sleep(0.3)  # mid-step
            os.kill(victim.process.pid, how)
            t0 = time.perf_counter()
            await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=lease_s * 20)
            took.append(time.perf_counter() - t0)
            if how is signal.SIGSTOP:
                victim.kill()
    return took


async def _owner(engine: Engine, run_id: str) -> str | None:
    with anyio.fail_after(30):
        while True:
            owners = {lease.run_id: lease.owner for lease in await engine.deps.store.leases()}
            if owners.get(run_id):
                return owners[run_id]
            await anyio.sleep(0.01)


async def scaling(kind: str, count: int, runs: int, decisions: int) -> dict[str, Any]:
    """Runs/s and the remote checkpoint round trip with `count` worker processes."""
    with tempfile.TemporaryDirectory() as tmp:
        async with database(kind, Path(tmp)) as url:
            env = environment(Path(tmp), url, steps=STEPS, delay_s=0.0, lease_s=5.0, profile="local")
            async with AsyncExitStack() as stack:
                engine = await stack.enter_async_context(face(env))
                for _ in range(count):
                    await stack.enter_async_context(worker(env))
                rate = await runs_per_s(engine, runs)
                remote = await checkpoint_round_trips(engine, decisions)
    return {"store": kind, "workers": count, "runs": runs, "steps": STEPS, "runs_per_s": round(rate, 2),
            "checkpoint_rt_ms": {"remote_p50": round(statistics.median(remote) * 1000, 1),
                                 "remote_p95": round(percentile(remote, 0.95) * 1000, 1)}}


async def bench_store(kind: str, args: argparse.Namespace) -> None:
    runs = 10 if args.quick else 40
    decisions = 20 if args.quick else 60
    counts = [int(n) for n in args.workers.split(",")]
    if args.only in (None, "scaling"):
        results: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
        for _ in range(args.repeat):  # interleaved, so a change of load touches every count alike
            for count in counts:
                line = await scaling(kind, count, runs, decisions)
                results[count].append(line)
                emit(line)
        if args.repeat > 1:
            for count, lines in results.items():
                emit({"store": kind, "workers": count, "repeats": len(lines),
                      "runs_per_s_median": statistics.median(line["runs_per_s"] for line in lines),
                      "remote_p50_median": statistics.median(line["checkpoint_rt_ms"]["remote_p50"] for line in lines)})
        with tempfile.TemporaryDirectory() as tmp:
            async with database(kind, Path(tmp)) as url:
                env = environment(Path(tmp), url, steps=STEPS, delay_s=0.0, lease_s=5.0, profile="local")
                async with face(env, drive="always") as serve:
                    local = await checkpoint_round_trips(serve, decisions)
                emit({"store": kind, "checkpoint_rt_ms": {
                    "serve_p50": round(statistics.median(local) * 1000, 1),
                    "serve_p95": round(percentile(local, 0.95) * 1000, 1)}})
    if args.only in (None, "takeover"):
        lease_s = 2.0
        with tempfile.TemporaryDirectory() as tmp:
            async with database(kind, Path(tmp)) as url:
                env = environment(Path(tmp), url, steps=2, delay_s=30.0, lease_s=lease_s, profile="quiet")
                (Path(tmp) / "catalog" / "flows" / "slow.yaml").write_text(
                    (Path(tmp) / "catalog" / "flows" / "relay.yaml").read_text().replace("id: relay", "id: slow"))
                async with face(env) as engine:
                    for how in (signal.SIGKILL, signal.SIGSTOP):
                        took = await takeover(env, engine, 2 if args.quick else 5, lease_s, how)
                        emit({"store": kind, "lease_s": lease_s, "signal": how.name,
                              "takeover_s": [round(t, 2) for t in took],
                              "takeover_max_s": round(max(took), 2), "target_s": lease_s + 1})
    if args.full or args.only == "full":
        with tempfile.TemporaryDirectory() as tmp:
            async with database(kind, Path(tmp)) as url:
                env = environment(Path(tmp), url, steps=STEPS, delay_s=0.0, lease_s=5.0, profile="quiet")
                async with face(env) as engine:
                    result = await many_runs(env, engine, runs=500, starters=4, workers=4)
                emit({"store": kind, "full_size": {"runs": result.runs, "starters": 4, "workers": 4,
                                                   "seconds": round(result.seconds, 1), "problems": result.problems}})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and decisions")
    parser.add_argument("--full", action="store_true", help="also 500 runs from 4 processes with 4 workers")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--only", choices=["takeover", "scaling", "full"], help="just one of the measurements")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--repeat", type=int, default=1, help="measure each worker count this many times")
    args = parser.parse_args()
    for kind in args.stores.split(","):
        await bench_store(kind, args)


if __name__ == "__main__":
    anyio.run(main)
