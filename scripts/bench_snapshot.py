"""Benchmark: what a workspace snapshot costs per step boundary, and a restore per retry.

    .venv/bin/python scripts/bench_snapshot.py [--runs 10] [--repo PATH]

Takes the demo's sample repository (a git clone, as the demo provisions it) and, with `--repo`, a
clone of a larger repository (default: this one), and measures `write_snapshot` (taken when every
step first starts) and `restore_snapshot` (only when a step starts again: retry, resume, clone).
Reports size, entries, median and p90 in ms, and the ratio of a restore to a plain `cp -a` of the
same tree (the floor: writing every file). A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flowrun.config import EXAMPLES_DIR
from flowrun.sandboxes.snapshot import restore_snapshot, write_snapshot

GIT = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-c", "init.defaultBranch=main"]


def timed(runs: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):7.1f} ms  p90 {p90:7.1f} ms"


def sample_repo(into: Path) -> Path:
    seed = into / "seed"
    shutil.copytree(EXAMPLES_DIR / "sample-repo", seed)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run([*GIT, *args], cwd=seed, check=True, capture_output=True)
    return seed


def bench(label: str, source: Path, work: Path, runs: int) -> None:
    workspace = work / "ws"
    workspace.mkdir()
    subprocess.run(["git", "clone", "-q", "--no-local", str(source), str(workspace / "repo")], check=True)
    snapshot = work / "snapshots" / "step-0.tar"
    taken = timed(runs, lambda: write_snapshot(workspace, snapshot))
    restored = timed(runs, lambda: restore_snapshot(workspace, snapshot))

    def copy() -> None:
        shutil.rmtree(work / "copy", ignore_errors=True)
        subprocess.run(["cp", "-a", str(workspace), str(work / "copy")], check=True)

    floor = timed(max(1, runs // 2), copy)
    entries = sum(1 for _ in workspace.rglob("*"))
    print(f"{label}: {snapshot.stat().st_size / 1e6:.2f} MB, {entries} entries")
    print(f"  snapshot  {figures(taken)}")
    print(f"  restore   {figures(restored)}  ({statistics.median(restored) / statistics.median(floor):.2f}x cp -a)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowrun-bench-snap-") as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        bench("demo sample repository", sample_repo(root / "a"), root / "a", args.runs)
        (root / "b").mkdir()
        bench(f"{args.repo.name} repository", args.repo, root / "b", args.runs)


if __name__ == "__main__":
    main()
