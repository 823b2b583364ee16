"""Letting go of a run's sandbox after someone else stopped the run, and saying so in the record.

When a run is cancelled by another process, that process does not hold the sandbox: the process
that was driving the run releases it when it notices. The stored link must then say where the
sandbox went (`released`), or the record keeps claiming an `active` sandbox nobody holds.
"""

from __future__ import annotations

import logging

import anyio

from ..flows import machine
from ..flows.errors import ConcurrentUpdate
from .context import EngineDeps
from .step import release_sandbox

log = logging.getLogger("flowrun.runtime")
ATTEMPTS = 5


async def release_and_record(deps: EngineDeps, run_id: str, *, keep: bool = True) -> None:
    """Release (keep) or destroy the sandbox this process holds for the run, then store its new
    state on the run as it is now (compare-and-set, retried). Shielded; never raises on a lost
    race, it logs instead."""
    with anyio.CancelScope(shield=True):
        run = await deps.store.get_run(run_id)
        link = await release_sandbox(deps, run, keep=keep)
        if link is None:
            return
        for _ in range(ATTEMPTS):
            if run.links.sandbox == link:
                return
            new, events = machine.link_sandbox(run, link)
            try:
                await deps.store.commit(new, events, expected_version=new.version)
                return
            except ConcurrentUpdate:
                run = await deps.store.get_run(run_id)
        log.warning("run %s kept changing: its sandbox state (%s) was not recorded", run_id, link.state)
