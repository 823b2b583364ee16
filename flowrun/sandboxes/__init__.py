"""Layer 1: sandboxes. Where a step's commands run and its files live.

`get_backend` builds a backend by name; the e2b backend is imported only when asked for, because
importing the e2b SDK costs about a second and `flowrun` must start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..flows.errors import NotFound
from .base import ExecResult, OutputCallback, Sandbox, SandboxBackend, SetupCallback
from .local import LocalBackend, LocalSandbox
from .noop import NoopBackend, NoopSandbox
from .profiles import load_profiles, select_profile
from .state import SandboxState

BACKENDS = ("local", "e2b", "noop")


def get_backend(name: str, *, root: Path, **options: Any) -> SandboxBackend:
    """The backend called `name` ("local" | "e2b" | "noop"), built with `options`.

    `root` is where local workspaces live (ignored by the others).

    Raises:
        NotFound: no backend has that name.
    """
    if name == "local":
        return LocalBackend(root, **options)
    if name == "noop":
        return NoopBackend(**options)
    if name == "e2b":
        from .e2b import E2BBackend  # deliberately lazy: see above

        return E2BBackend(**options)
    raise NotFound(f"unknown sandbox backend {name!r} (known: {', '.join(BACKENDS)})", backend=name)


__all__ = [
    "BACKENDS",
    "ExecResult",
    "LocalBackend",
    "LocalSandbox",
    "NoopBackend",
    "NoopSandbox",
    "OutputCallback",
    "Sandbox",
    "SandboxBackend",
    "SandboxState",
    "SetupCallback",
    "get_backend",
    "load_profiles",
    "select_profile",
]
