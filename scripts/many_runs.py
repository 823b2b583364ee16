"""The issue's size: 500 runs started from 4 processes while 4 workers drive them; every run must
complete exactly once (one `completed` status, each step started once, a gapless seq), and no run
is left `running` without a live lease. On SQLite and PostgreSQL (tests/cli/test_workers.py runs
a smaller size in the suite).

    .venv/bin/python scripts/many_runs.py [--runs 500] [--starters 4] [--workers 4] [--stores sqlite,postgres]

Prints a JSON line per store and every problem; exits 1 if any. PostgreSQL comes from
FLOWRUN_TEST_DATABASE_URL (default: this machine's), in a schema made and dropped for the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_workers import database
from tests.cli.chaoskit import face, many_runs
from tests.cli.workerkit import environment


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--starters", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    ok = True
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="flowrun-many-") as tmp:
            async with database(kind, Path(tmp)) as url:
                env = environment(Path(tmp), url, steps=args.steps, delay_s=0.0, lease_s=args.lease, profile="quiet")
                async with face(env) as engine:
                    result = await many_runs(env, engine, runs=args.runs, starters=args.starters,
                                             workers=args.workers, timeout_s=1800)
        print(json.dumps({"store": kind, "runs": result.runs, "starters": args.starters, "workers": args.workers,
                          "steps": args.steps, "lease_s": args.lease, "seconds": round(result.seconds, 1),
                          "runs_per_s": round(result.runs / result.seconds, 2), "problems": len(result.problems)}),
              flush=True)
        for problem in result.problems:
            print(f"PROBLEM {kind}: {problem}", flush=True)
        ok = ok and not result.problems
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    anyio.run(main)
