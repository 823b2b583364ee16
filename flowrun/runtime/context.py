"""What the engine's parts share: the store, the catalog, backends, models and settings."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..flows.enums import Plan
from ..flows.profiles import SandboxProfile
from ..flows.redact import Redactor
from ..flows.run import Run
from ..llm.base import ModelProvider
from ..sandboxes.base import Sandbox, SandboxBackend
from ..storage.base import RecordRow, Store
from .catalog import Catalog
from .integrations import GitHub
from .tools.base import Tool


class RunStopped(Exception):
    """The run was changed by someone else (e.g. cancelled from another process): its driver
    stops. Not a failure of the step: every catch-all in the step lets it through."""


def process_owner() -> str:
    """Identifies this engine process in `runs.owner`, so recovery after a restart can tell a run
    left behind by a dead process from one another live process is driving."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class EngineConfig:
    default_model: str = "scripted"
    default_plan: Plan = Plan.BUSINESS
    plans: Mapping[str, Plan] = field(default_factory=dict)  # per workspace
    step_timeout_s: float = 3600.0
    warmup_retry_after_s: float = 2.0
    run_url: str | None = None  # e.g. "http://127.0.0.1:8765/runs/{run_id}"
    snapshot_dir: Path | None = None  # workspace snapshots at step boundaries (None: none kept)
    owner: str = field(default_factory=process_owner)
    # leases (see runtime/leases.py): whether this process drives runs, and for how long a
    # claim holds without renewal (a run whose driver died is taken over after about this)
    drive: str = "auto"  # always (worker, serve) | auto (CLI, mcp: when no worker lives) | never
    kind: str = "engine"  # shown in the workers table: worker | serve | cli | mcp ...
    lease_s: float = 10.0
    max_active_runs: int = 64  # a worker claims no more runs than this at once

    def plan_for(self, workspace: str) -> Plan:
        return self.plans.get(workspace, self.default_plan)


@dataclass
class EngineDeps:
    store: Store
    catalog: Catalog
    backend_for: Callable[[str], SandboxBackend]
    provider_for: Callable[[str], ModelProvider]
    tools: Mapping[str, Tool]
    config: EngineConfig
    redactor: Redactor | None = None  # streamed pieces; the store redacts every write again
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)  # held sandboxes by run id
    github: GitHub | None = None  # where GitHub is and whose tokens this machine holds

    def profile(self, run: Run) -> SandboxProfile:
        from ..flows.errors import NotFound

        try:
            return self.catalog.profiles[run.sandbox_profile]
        except KeyError:
            known = ", ".join(sorted(self.catalog.profiles)) or "none"
            raise NotFound(f"no sandbox profile {run.sandbox_profile!r} (profiles: {known})") from None


def step_context(run: Run, record: RecordRow | None) -> dict[str, Any]:
    """What conditions and skill instructions can read: params, the launching record, earlier
    steps' results, and the run itself."""
    steps = {
        s.name: {
            "status": s.status.value, "outcome": s.outcome.value if s.outcome else None, "summary": s.summary,
            "output": s.output, "artifacts": [a.model_dump() for a in s.artifacts],
        }
        for s in run.steps
    }
    return {
        "params": run.params,
        "record": record.model_dump() if record else None,
        "steps": steps,
        "run": {"id": run.id, "flow": run.flow.id, "started_by": run.started_by, "mode": run.execution_mode.value},
    }
