"""Benchmark: what a sandbox costs per command and per release/reacquire.

    .venv/bin/python scripts/bench_sandbox.py [--runs 200]

Measures start-to-exit of a trivial command (`true`) through `LocalSandbox.exec` under
bubblewrap and as a plain process group (with a bare `anyio.run_process` as the floor), and the
cost of `release(keep=True)` + `acquire(link=...)`. A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import LocalBackend
from flowrun.sandboxes.isolation import IsolationChoice

PROFILE = SandboxProfile(name="bench")


async def timed(runs: int, action: Callable[[], Awaitable[object]]) -> list[float]:
    await action()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{label:<44} median {statistics.median(ordered):7.2f} ms   p99 {p99:7.2f} ms"
        f"   (n={len(ordered)})"
    )


async def bench_mode(root: Path, mode: IsolationChoice, runs: int) -> list[str]:
    backend = LocalBackend(root / mode, isolation=mode)
    if backend.isolation != mode:
        return [f"{mode}: unavailable here"]
    sandbox = await backend.acquire("run_bench", PROFILE)

    async def run_true() -> None:
        result = await sandbox.exec("true")
        assert result.exit_code == 0, result.stderr

    lines = [summary(f"exec('true') [{mode}]", await timed(runs, run_true))]
    current = sandbox

    async def cycle() -> None:
        nonlocal current
        link = await backend.release(current, keep=True)
        current = await backend.acquire("run_bench", PROFILE, link=link)

    lines.append(summary(f"release + reacquire [{mode}]", await timed(max(runs // 4, 10), cycle)))
    return lines


async def bench_e2b_fake(root: Path, runs: int) -> list[str]:
    """The SDK's own overhead for pause + connect, against the loopback fake (no network)."""
    from flowrun.sandboxes.e2b import E2BBackend
    from flowrun.sandboxes.testing import serve_fake_e2b

    async with serve_fake_e2b(root / "e2b") as cloud:
        backend = E2BBackend(**cloud.backend_options())
        current = await backend.acquire("run_bench", PROFILE)

        async def cycle() -> None:
            nonlocal current
            link = await backend.release(current, keep=True)
            current = await backend.acquire("run_bench", PROFILE, link=link)

        async def run_true() -> None:
            await current.exec("true")

        return [
            summary(
                "exec('true') [e2b SDK, loopback fake]", await timed(max(runs // 4, 10), run_true)
            ),
            summary(
                "pause + connect [e2b SDK, loopback fake]", await timed(max(runs // 4, 10), cycle)
            ),
        ]


async def main(root: Path, runs: int, e2b_fake: bool) -> None:
    try:

        async def bare() -> None:
            await anyio.run_process(["true"])

        print(summary("anyio.run_process(['true']) [floor]", await timed(runs, bare)))
        for mode in ("bubblewrap", "process-group"):
            for line in await bench_mode(root, mode, runs):
                print(line)
        if e2b_fake:
            for line in await bench_e2b_fake(root, runs):
                print(line)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--e2b-fake", action="store_true", help="also time the e2b SDK path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="flowrun-bench-"))
    workdir.chmod(0o711)  # the sandbox uid must reach its workspace by path
    anyio.run(main, workdir, args.runs, args.e2b_fake)
