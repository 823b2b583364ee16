"""Probed escapes of the local sandbox, each closed: hardlinked clones, dangling or special
paths, and files that would block a tool forever. Run in both isolation modes."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowrun.flows.errors import SandboxError
from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import LocalBackend
from flowrun.sandboxes.isolation import decide

pytestmark = pytest.mark.anyio

_PROBE = decide("auto", uid=65534, gid=65534)


@pytest.fixture(params=["bubblewrap", "process-group"])
def backend(request: pytest.FixtureRequest, sandbox_root: Path) -> LocalBackend:
    if request.param == "bubblewrap" and _PROBE.isolation != "bubblewrap":
        pytest.skip(f"bubblewrap unavailable: {_PROBE.reason}")
    return LocalBackend(sandbox_root, isolation=request.param)


def profile(**kw: object) -> SandboxProfile:
    return SandboxProfile.model_validate({"name": "hard", **kw})


def _git(*args: str, cwd: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


@pytest.fixture
def bare_origin(sandbox_root: Path) -> Iterator[Path]:
    """A bare repository on the same filesystem as the workspaces (so git could hardlink)."""
    base = sandbox_root.parent / "origin-src"
    base.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=base)
    (base / "app.txt").write_text("original\n")
    _git("add", ".", cwd=base)
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "v1", cwd=base)
    bare = sandbox_root.parent / "origin.git"
    _git("clone", "-q", "--bare", str(base), str(bare), cwd=sandbox_root.parent)
    yield bare


def _objects(repo: Path) -> dict[str, str]:
    found = {}
    for path in sorted((repo / "objects").rglob("*")):
        if path.is_file():
            found[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def test_a_sandbox_cannot_rewrite_the_repository_it_was_cloned_from(
    backend: LocalBackend, bare_origin: Path
) -> None:
    before = _objects(bare_origin)
    sb = await backend.acquire("run_hl", profile(repositories=[{"url": str(bare_origin), "path": "repo"}]))
    for path in (sb.host_path / "repo" / ".git" / "objects").rglob("*"):
        if path.is_file():
            assert path.stat().st_nlink == 1, f"{path} shares its inode"
    result = await sb.exec(
        "cd repo/.git/objects && for f in $(find . -type f); do chmod u+w $f; echo planted > $f; done; echo done"
    )
    assert "done" in result.stdout, result.stderr
    assert _objects(bare_origin) == before
    fsck = await anyio.run_process(["git", "--git-dir", str(bare_origin), "fsck"], check=False)
    assert fsck.returncode == 0, fsck.stderr


async def test_giving_a_tree_away_never_changes_the_owner_of_an_outside_inode(
    sandbox_root: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("handing files to a sandbox uid needs root")
    outside = sandbox_root.parent / "outside.txt"
    outside.write_text("host\n")
    plain = sandbox_root.parent / "plain"
    plain.mkdir()
    os.link(outside, plain / "linked.txt")  # a plain directory whose file is hardlinked elsewhere
    backend = LocalBackend(sandbox_root, isolation="process-group")
    sb = await backend.acquire("run_plain", profile(repositories=[{"url": str(plain), "path": "p"}]))
    assert outside.stat().st_uid == 0
    assert (sb.host_path / "p" / "linked.txt").stat().st_ino != outside.stat().st_ino
    assert (await sb.read_file("p/linked.txt")) == b"host\n"


async def test_a_fifo_is_refused_at_once_not_read_for_ever(backend: LocalBackend) -> None:
    sb = await backend.acquire("run_fifo", profile())
    assert (await sb.exec("mkfifo pipe")).exit_code == 0
    with anyio.fail_after(5), pytest.raises(SandboxError) as info:
        await sb.read_file("pipe")
    assert info.value.code == "not_a_regular_file" and "FIFO" in info.value.message
    with anyio.fail_after(5), pytest.raises(SandboxError) as info:
        await sb.write_file("pipe", b"x")
    assert info.value.code == "not_a_regular_file"


async def test_a_socket_is_a_sandbox_error_that_names_no_host_path(backend: LocalBackend) -> None:
    sb = await backend.acquire("run_sock", profile())
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sb.host_path / "sock"))
        with pytest.raises(SandboxError) as info:
            await sb.read_file("sock")
    assert info.value.code == "not_a_regular_file"
    assert str(sb.host_path) not in info.value.message


@pytest.mark.parametrize("target", ["missing-dir", "/nonexistent/elsewhere", "file.txt"])
async def test_a_bad_cwd_is_a_sandbox_error_that_names_no_host_path(
    backend: LocalBackend, target: str
) -> None:
    sb = await backend.acquire("run_cwd", profile())
    await sb.write_file("file.txt", b"x")
    (sb.host_path / "link").symlink_to(target)
    with pytest.raises(SandboxError) as info:
        await sb.exec("pwd", cwd="link")
    assert info.value.code in ("not_found", "not_a_directory", "path_escape")
    assert str(sb.host_path) not in info.value.message
    assert "elsewhere" not in info.value.message or info.value.code == "path_escape"


async def test_a_cwd_through_a_symlink_inside_the_workspace_works(backend: LocalBackend) -> None:
    sb = await backend.acquire("run_cwd_ok", profile())
    await sb.write_file("real/sub/f.txt", b"x")
    (sb.host_path / "alias").symlink_to("real/sub")
    result = await sb.exec("ls && pwd", cwd="alias")
    assert result.exit_code == 0 and "f.txt" in result.stdout
