"""Sandbox health: the check at acquire, and health events a blocked run links to.

A health event is stored as a record (`kind="health_event"`) so it outlives the process and the
run page can link to it. It is opened when a step cannot get a healthy environment, and resolved
by a person; resuming the run then checks again and continues the step.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..flows.enums import BlockedCause
from ..flows.errors import BlockedError, NotFound
from ..flows.profiles import SandboxProfile
from ..flows.run import new_id, now
from ..sandboxes.base import Sandbox
from ..storage.base import RecordRow, Store

HEALTH_EVENT = "health_event"


async def check_health(sandbox: Sandbox, profile: SandboxProfile) -> None:
    """The profile's expected tools are on PATH in the sandbox.

    Raises:
        BlockedError: `environment_unhealthy`, naming what is missing.
    """
    if not profile.tools:
        return
    names = " ".join(shlex.quote(t) for t in profile.tools)
    result = await sandbox.exec(f'for t in {names}; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done',
                                timeout=30)
    missing = result.stdout.split()
    if result.exit_code != 0 or missing:
        what = ", ".join(missing) or f"the check itself (exit {result.exit_code}: {result.stderr.strip()})"
        raise BlockedError(
            BlockedCause.ENVIRONMENT_UNHEALTHY.value,
            f"The sandbox of profile {profile.name!r} is missing {what}.",
            fix=f"Install {what} in the profile's template or image (or drop it from the profile's tools), "
                "resolve the health event, then resume the run.",
            sandbox=sandbox.link.id, missing=missing,
        )


async def open_health_event(store: Store, *, run_id: str, step: int | None, profile: str,
                            exc: BlockedError) -> str:
    event_id = new_id("health")
    data: dict[str, Any] = {
        "status": "open", "run_id": run_id, "step": step, "profile": profile,
        "sandbox": exc.details.get("sandbox"), "opened_at": now().isoformat(),
    }
    await store.put_record(RecordRow(id=event_id, kind=HEALTH_EVENT, title=exc.message, body=exc.fix, data=data))
    return event_id


async def get_health_event(store: Store, event_id: str) -> RecordRow:
    record = await store.get_record(event_id)
    if record is None or record.kind != HEALTH_EVENT:
        raise NotFound(f"no health event {event_id!r}", health_event=event_id)
    return record


async def resolve_health_event(store: Store, event_id: str, actor: str) -> RecordRow:
    record = await get_health_event(store, event_id)
    data = {**record.data, "status": "resolved", "resolved_by": actor, "resolved_at": now().isoformat()}
    resolved = record.model_copy(update={"data": data})
    await store.put_record(resolved)
    return resolved
