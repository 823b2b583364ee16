"""Probed escapes of the local sandbox, each closed: hardlinked clones, dangling or special
paths, and files that would block a tool forever. Run in both isolation modes."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
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


async def _alive(marker: str, *, gone: bool = True) -> list[str]:
    """Processes whose command line holds `marker`. With `gone`, once the ones already killed
    have exited (a torn-down PID namespace or a supervisor takes a moment); waits 3 s at most."""
    done = await anyio.run_process(["pgrep", "-f", marker], check=False)
    with anyio.move_on_after(3):
        while gone and done.stdout.split():
            await anyio.sleep(0.05)
            done = await anyio.run_process(["pgrep", "-f", marker], check=False)
    return done.stdout.decode().split()


async def test_a_setsid_child_dies_with_the_command_on_cancel_timeout_and_exit(
    backend: LocalBackend,
) -> None:
    sb = await backend.acquire("run_tree", profile())
    tag = secrets.randbelow(10**9)  # this test's own processes (other test runs share the machine)
    escape = "setsid bash -c 'sleep 1.5; touch {name}; exec sleep 3000.{tag}' >/dev/null 2>&1 < /dev/null &"
    with anyio.move_on_after(0.5) as scope:
        await sb.exec(escape.format(name="after-cancel", tag=tag) + " sleep 30")
    assert scope.cancelled_caught
    result = await sb.exec(escape.format(name="after-timeout", tag=tag) + " sleep 30", timeout=0.5)
    assert result.timed_out
    done = await sb.exec(escape.format(name="after-exit", tag=tag) + " disown; echo left")
    assert done.exit_code == 0 and done.stdout == "left\n"
    await anyio.sleep(2.0)  # long enough for an escapee to leave its mark
    for name in ("after-cancel", "after-timeout", "after-exit"):
        assert not (sb.host_path / name).exists(), name
    assert await _alive(f"sleep 3000.{tag}") == []


async def test_many_escaped_children_do_not_pile_up(backend: LocalBackend) -> None:
    sb = await backend.acquire("run_pile", profile())
    tag = secrets.randbelow(10**9)
    for _ in range(3):
        result = await sb.exec(
            f"for i in $(seq 20); do setsid sleep 4000.{tag} >/dev/null 2>&1 < /dev/null & done; echo spawned"
        )
        assert result.stdout == "spawned\n"
    assert await _alive(f"sleep 4000.{tag}") == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a uid per sandbox needs root")


@needs_root
async def test_each_sandbox_runs_as_a_uid_of_its_own(backend: LocalBackend) -> None:
    a = await backend.acquire("run_uid_a", profile())
    b = await backend.acquire("run_uid_b", profile())
    ids = [(await sb.exec("id -u")).stdout.strip() for sb in (a, b)]
    assert len(set(ids)) == 2 and "0" not in ids and "65534" not in ids
    for sb, uid in zip((a, b), ids, strict=True):
        info = sb.host_path.stat()
        assert str(info.st_uid) == uid and info.st_mode & 0o777 == 0o700
    # a restart (a new backend on the same root) keeps each workspace's uid
    again = LocalBackend(backend.root, isolation=backend.isolation)
    reacquired = await again.acquire("run_uid_a", profile(), link=a.link)
    assert (await reacquired.exec("id -u")).stdout.strip() == ids[0]


@needs_root
async def test_one_sandbox_filling_its_process_limit_does_not_starve_another(backend: LocalBackend) -> None:
    hog = await backend.acquire("run_hog", profile(limits={"max_processes": 40}))
    other = await backend.acquire("run_other", profile(limits={"max_processes": 40}))
    full = anyio.Event()

    async def on_output(stream: str, text: str) -> None:
        if "full" in text:
            full.set()

    async with anyio.create_task_group() as tg:
        # the hog holds 35 processes of its limit of 40 (sharing one uid, nobody else could fork)
        tg.start_soon(lambda: hog.exec("for i in $(seq 35); do sleep 60 & done; echo full; wait", on_output=on_output))
        with anyio.fail_after(20):
            await full.wait()
        result = await other.exec("for i in $(seq 20); do sleep 0.1 & done; wait; echo fine", timeout=8)
        tg.cancel_scope.cancel()
    assert result.stdout == "fine\n", result.stderr


@needs_root
async def test_a_sandbox_cannot_read_another_sandboxs_workspace(sandbox_root: Path) -> None:
    backend = LocalBackend(sandbox_root, isolation="process-group")
    a = await backend.acquire("run_read_a", profile())
    b = await backend.acquire("run_read_b", profile())
    await b.write_file("secret.txt", b"b's work\n")
    result = await a.exec(f"cat {b.host_path}/secret.txt")
    assert result.exit_code != 0 and "b's work" not in result.stdout


@needs_root
async def test_a_sandbox_cannot_read_flowruns_database(sandbox_root: Path) -> None:
    from flowrun.config import Settings, open_engine

    home = sandbox_root.parent / "home"
    async with open_engine(Settings.from_env({"FLOWRUN_HOME": str(home)})):
        backend = LocalBackend(sandbox_root, isolation="process-group")  # sees the host filesystem
        sb = await backend.acquire("run_db", profile())
        result = await sb.exec(f"cat {home}/flowrun.db | head -c 16; ls {home}")
    assert "SQLite format" not in result.stdout and "Permission denied" in result.stderr


_ENGINE = """
import sys, anyio
from pathlib import Path
from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import LocalBackend

async def main() -> None:
    sb = await LocalBackend(Path(sys.argv[1]), isolation="process-group").acquire("run_dies", SandboxProfile(name="d"))
    async def out(stream: str, text: str) -> None:
        print(text, end="", flush=True)
    await sb.exec(f"setsid sleep 5000.{sys.argv[2]} >/dev/null 2>&1 < /dev/null & echo READY; sleep 5000.{sys.argv[2]}",
                  on_output=out)

anyio.run(main)
"""


async def test_the_tree_dies_when_the_engine_is_killed(sandbox_root: Path) -> None:
    tag = secrets.randbelow(10**9)
    engine = await anyio.open_process([sys.executable, "-c", _ENGINE, str(sandbox_root), str(tag)])
    try:
        assert engine.stdout is not None
        with anyio.fail_after(30):
            async for chunk in engine.stdout:
                if b"READY" in chunk:
                    break
        assert await _alive(f"sleep 5000.{tag}", gone=False)
        engine.kill()  # no cleanup of any kind: the supervisor notices its parent died
        await engine.wait()
        assert await _alive(f"sleep 5000.{tag}") == []
    finally:
        if engine.returncode is None:
            engine.kill()
        await engine.aclose()
