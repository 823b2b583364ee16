"""`flowrun worker`: an engine process that only drives runs (no face of its own).

Any number of workers (on any number of machines sharing one PostgreSQL database) claim
runnable runs with leases, and fire the Flows' schedules, checkpoint wait policies and
notifications (each once, whichever process gets there first). SIGTERM (or Ctrl-C) is a graceful hand-over: the worker claims
nothing more, lets each run it drives finish its current step (for up to `--grace` seconds),
then releases its leases, and another worker takes the runs over. A second signal stops at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Any

import anyio


async def worker(args: argparse.Namespace) -> int:
    from ..config import Settings, open_engine
    from ..storage.factory import is_postgres_url

    settings = dataclasses.replace(Settings.from_env(), drive="always", engine_kind="worker")
    if args.lease is not None:
        settings = dataclasses.replace(settings, lease_s=args.lease)
    where = "PostgreSQL" if is_postgres_url(settings.database) else settings.database
    from ..runtime.notify import Notifier, Webhooks
    from ..runtime.triggers import Triggers

    webhooks = Webhooks.from_env(settings.env)
    async with open_engine(settings) as engine, anyio.create_task_group() as services:
        # schedules, checkpoint timeouts and notifications fire from every engine process: each
        # firing is a claim in the store, so several workers still fire each one once
        await services.start(Triggers(engine).run)
        await services.start(Notifier(engine, webhooks, run_url=settings.public_url + "/runs/{run_id}").run)
        print(f"flowrun worker {engine.leases.owner} driving runs from {where} "
              f"(lease {settings.lease_s:g}s); SIGTERM hands its runs over", file=sys.stderr, flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                print(f"stopping: claiming no more runs; in-flight steps get {args.grace:g}s to finish",
                      file=sys.stderr, flush=True)
                async with anyio.create_task_group() as tg:

                    async def second_signal() -> None:
                        async for _ in signals:
                            tg.cancel_scope.cancel()  # stop now: leaving the engine hands over

                    tg.start_soon(second_signal)
                    await engine.drain(args.grace)
                    tg.cancel_scope.cancel()
                break
        services.cancel_scope.cancel()
    print("worker stopped; its runs were handed over", file=sys.stderr, flush=True)
    return 0


def add_worker_command(sub: Any) -> None:
    p = sub.add_parser("worker", help="drive runs (claimed with leases) until SIGTERM; no face of its own")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds in-flight steps get to finish after SIGTERM (default 30)")
    p.add_argument("--lease", type=float, default=None,
                   help="lease seconds: a dead worker's runs are taken over after about this (FLOWRUN_LEASE_S, 10)")
    p.set_defaults(handler="worker:worker")
