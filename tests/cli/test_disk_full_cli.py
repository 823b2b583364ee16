"""A really full disk (a small tmpfs, filled up): `flowrun runs` and `show` keep working, and a
command that must write says "disk full" in one line, with no traceback. Needs root and a private
mount namespace (`unshare -m`), as CI has; skipped elsewhere, with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
set -u
mount -t tmpfs -o size=6m tmpfs "$MNT"
export FLOWRUN_HOME="$MNT/home"
flowrun() { "$PY" -c 'import sys; from flowrun.cli import main; sys.exit(main())' "$@"; }
flowrun demo --yes > /dev/null 2>&1 || { echo "SETUP FAILED"; exit 3; }
run=$(flowrun runs | grep -o 'run_[0-9A-Z]*' | head -1)
dd if=/dev/zero of="$MNT/fill" bs=16k > /dev/null 2>&1
echo "== runs"; flowrun runs; echo "rc=$?"
echo "== show"; flowrun show "$run"; echo "rc=$?"
echo "== demo"; flowrun demo --yes 2>&1; echo "rc=$?"
"""


def can_mount() -> str:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False)
    return "" if probe.returncode == 0 else "cannot make a private mount namespace here"


@pytest.mark.skipif(bool(can_mount()), reason=can_mount() or "ok")
def test_reading_works_and_writing_says_disk_full_on_a_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "MNT": str(mnt), "PY": sys.executable, "COLUMNS": "200",
           "FLOWRUN_SANDBOX_ROOT": str(tmp_path / "sandboxes")}
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", SCRIPT],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
    out = done.stdout + done.stderr
    assert "SETUP FAILED" not in out, out
    runs, show, demo = out.split("== runs")[1].split("== show")[0], out.split("== show")[1].split("== demo")[0], \
        out.split("== demo")[1]
    assert "full-sdlc" in runs and "rc=0" in runs, out
    assert "Full SDLC" in show and "rc=0" in show, out
    assert "disk full" in demo and "rc=1" in demo, out
    assert "Traceback" not in out
