"""Usage that must reach the record even when the run changed under its driver.

A model turn is paid for once it is over. If the run was cancelled (or otherwise changed by
someone else) at that moment, the driver's compare-and-set commit loses; the turn's usage is then
added to the run as it is now, so the step's turns and cost stay true.
"""

from __future__ import annotations

import logging

from ..flows import machine
from ..flows.errors import ConcurrentUpdate
from ..flows.run import Usage
from ..storage.base import Store

log = logging.getLogger("flowrun.runtime")
ATTEMPTS = 5


async def record_usage_anyway(store: Store, run_id: str, step: int | None, usage: Usage) -> None:
    """Add `usage` to the stored run (and `step`), whatever its status; retried on a lost
    compare-and-set. Never raises ConcurrentUpdate: after `ATTEMPTS` tries it logs and gives up."""
    for _ in range(ATTEMPTS):
        run = await store.get_run(run_id)
        new, events = machine.record_usage(run, step, usage)
        try:
            await store.commit(new, events, expected_version=new.version)
            return
        except ConcurrentUpdate:
            continue
    log.warning("run %s kept changing: the usage of one model turn (%s) was not recorded", run_id, usage)
