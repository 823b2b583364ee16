"""A fresh machine: root, a 0700 home, no bubblewrap. Commands run as the sandbox uid and must
really work in their workspace (git and unittest stat it by its absolute path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import LocalBackend
from flowrun.sandboxes.rootdir import reachable_root, unsearchable_ancestor

pytestmark = pytest.mark.anyio
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to a sandbox uid needs root")


def closed_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    return home


def test_a_closed_directory_on_the_way_is_found(sandbox_root: Path) -> None:
    home = closed_home(sandbox_root.parent)  # the fixture's root is 0711, pytest's tmp_path 0700
    assert unsearchable_ancestor(str(home / ".flowrun" / "sandboxes"), 65534, 65534) == str(home)
    assert unsearchable_ancestor(str(sandbox_root.parent / "open"), 65534, 65534) is None
    assert unsearchable_ancestor("/usr/lib/not-there-yet/x", 65534, 65534) is None


@needs_root
def test_an_unreachable_root_moves_to_a_private_reachable_directory(tmp_path: Path) -> None:
    home = closed_home(tmp_path)
    shared = Path("/tmp") / f"{tmp_path.name}-shared"  # outside pytest's 0700 directories
    try:
        moved = reachable_root(home / "sandboxes", 65534, 65534, parent=shared / "x")
        assert moved.parent == shared / "x"
        assert unsearchable_ancestor(str(moved / "run_1"), 65534, 65534) is None
        assert oct(moved.stat().st_mode & 0o777) == "0o711"  # enter, not list
        assert reachable_root(moved, 65534, 65534) == moved  # a reachable root stays
        # the same configured root always maps to the same place (a restart finds its workspaces)
        assert reachable_root(home / "sandboxes", 65534, 65534, parent=moved.parent) == moved
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@needs_root
def test_a_prepared_directory_of_someone_else_is_refused(tmp_path: Path) -> None:
    from flowrun.flows.errors import SandboxError

    home = closed_home(tmp_path)
    trap = Path("/tmp") / f"{tmp_path.name}-trap"
    trap.mkdir(mode=0o777)
    os.chown(trap, 65534, 65534)
    try:
        with pytest.raises(SandboxError, match="FLOWRUN_SANDBOX_ROOT") as caught:
            reachable_root(home / "sandboxes", 65534, 65534, parent=trap)
        assert caught.value.code == "sandbox_root_unreachable"
    finally:
        shutil.rmtree(trap, ignore_errors=True)


@needs_root
async def test_commands_really_work_as_root_without_bubblewrap_under_a_0700_home(tmp_path: Path) -> None:
    home = closed_home(tmp_path)
    backend = LocalBackend(home / ".flowrun" / "sandboxes", isolation="process-group")
    sandbox = await backend.acquire("run_fresh", SandboxProfile(name="fresh"))
    try:
        assert not str(sandbox.host_path).startswith(str(home))
        await sandbox.write_file("pkg/tests/test_ok.py", b"import unittest\n\nclass T(unittest.TestCase):\n"
                                                         b"    def test_ok(self) -> None:\n        pass\n")
        await sandbox.write_file("pkg/tests/__init__.py", b"")
        result = await sandbox.exec(
            "cd pkg && id -u && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm c "
            "&& git status --short && python3 -m unittest 2>&1"
        )
        assert result.exit_code == 0, result.stdout + result.stderr
        assert int(result.stdout.split()[0]) != 0 and "Ran 1 test" in result.stdout  # a dropped uid
        assert "Permission denied" not in result.stdout + result.stderr
    finally:
        await backend.destroy(sandbox.link)
    assert not sandbox.host_path.exists()
