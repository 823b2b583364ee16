"""Many random SIGKILLs of `flowrun worker` processes mid-step, on SQLite and PostgreSQL.

    .venv/bin/python scripts/chaos_workers.py [--trials 50] [--stores sqlite,postgres] [--seed 1]

Each trial (tests/cli/chaoskit.py) starts runs of the `ledger` Flow (each step appends its name
to a file in the workspace and fails if any earlier name is missing or repeated) while two
workers drive them, SIGKILLs one at a random moment, starts a replacement, retries what the
survivor parked as interrupted, and checks: taken over within the lease time (+1 s), every run
completed (no committed side effect repeated), gapless seqs, every event a follower saw still in
the log with the same seq and content, no step started again after it completed, and no run
`running` without a live lease. Prints a JSON line per store and every failure; exits 1 if any.
PostgreSQL comes from FLOWRUN_TEST_DATABASE_URL (default: this machine's), in a schema made and
dropped for the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench_workers import database
from tests.cli.chaoskit import face, fleet, trial
from tests.cli.workerkit import environment

LEASE_S = 1.0


async def chaos(kind: str, trials: int, seed: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="flowrun-chaos-") as tmp:
        folder = Path(tmp)
        async with database(kind, folder) as url:
            env = environment(folder, url, steps=3, delay_s=0.3, lease_s=LEASE_S)
            failures: list[str] = []
            takeovers: list[float] = []
            interrupted = victims = 0
            async with face(env) as engine, fleet(env) as workers:
                for n in range(trials):
                    result = await trial(engine, workers, seed + n, run_s=2.0, takeover_limit_s=LEASE_S + 1.0)
                    takeovers += result.takeover_s
                    victims += bool(result.victim_runs)
                    interrupted += result.interrupted
                    failures += [f"trial {n} (seed {seed + n}, kill at {result.kill_after_s:.2f}s): {f}"
                                 for f in result.failures]
                    print(f"{kind} trial {n + 1}/{trials}: {'ok' if not result.failures else 'FAILED'} "
                          f"(killed at {result.kill_after_s:.2f}s, victim held {len(result.victim_runs)} run(s), "
                          f"take-over {', '.join(f'{t:.2f}s' for t in result.takeover_s) or '-'})",
                          file=sys.stderr, flush=True)
    print(json.dumps({
        "store": kind, "trials": trials, "failed_checks": len(failures), "kills_mid_run": victims,
        "runs_interrupted_then_retried": interrupted, "lease_s": LEASE_S,
        "takeover_s_p50": round(statistics.median(takeovers), 3) if takeovers else None,
        "takeover_s_max": round(max(takeovers), 3) if takeovers else None,
    }), flush=True)
    for failure in failures:
        print(f"FAILURE {kind}: {failure}", flush=True)
    return not failures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ok = True
    for kind in args.stores.split(","):
        ok = await chaos(kind, args.trials, args.seed) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    anyio.run(main)
