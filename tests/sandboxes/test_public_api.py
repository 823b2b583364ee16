"""The package's public names are deliberate; importing it must not import the e2b SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import flowrun.sandboxes as sandboxes


def test_public_names() -> None:
    assert sorted(sandboxes.__all__) == [
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


def test_importing_sandboxes_does_not_import_e2b() -> None:
    code = "import sys, flowrun.sandboxes; print('e2b' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
