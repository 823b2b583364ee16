"""What a local sandbox must not be able to do. The bubblewrap checks are skipped, with the
reason, where bubblewrap does not work; `.ci/run` installs it so CI runs them. Resource limits are
checked in both isolation modes."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import LocalBackend, LocalSandbox
from flowrun.sandboxes.isolation import decide

pytestmark = pytest.mark.anyio

_PROBE = decide("auto", uid=65534, gid=65534)
needs_bwrap = pytest.mark.skipif(
    _PROBE.isolation != "bubblewrap", reason=f"bubblewrap unavailable: {_PROBE.reason}"
)
_SYSTEM = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt"}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to a sandbox uid needs root")


def profile(**kw: object) -> SandboxProfile:
    return SandboxProfile.model_validate({"name": "iso", **kw})


async def bwrap_sandbox(root: Path, **kw: object) -> LocalSandbox:
    backend = LocalBackend(root, isolation="bubblewrap")
    return await backend.acquire("run_iso", profile(**kw))


@pytest.fixture
def host_secret(tmp_path: Path) -> Iterator[Path]:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    yield secret


@needs_bwrap
async def test_cannot_read_host_files(sandbox_root: Path, host_secret: Path) -> None:
    sb = await bwrap_sandbox(sandbox_root)
    for path in (host_secret, Path("/root"), Path(__file__), sandbox_root.parent):
        result = await sb.exec(f"cat {path} || ls {path}")
        assert result.exit_code != 0, path
        assert "hunter2" not in result.stdout
    visible = set((await sb.exec("ls /")).stdout.split())
    assert visible <= {*_SYSTEM, "dev", "proc", "tmp", "workspace"}


@needs_bwrap
@needs_root
async def test_root_only_file_inside_the_workspace_is_unreadable(sandbox_root: Path) -> None:
    sb = await bwrap_sandbox(sandbox_root)
    planted = sb.host_path / "root-only"
    planted.write_text("hunter2\n")
    planted.chmod(0o600)
    result = await sb.exec("id -u; cat root-only; cat /etc/shadow")
    assert result.stdout == f"{sb.host_path.stat().st_uid}\n" and result.stdout != "0\n"
    assert "Permission denied" in result.stderr


@needs_bwrap
async def test_cannot_write_outside_the_workspace(sandbox_root: Path) -> None:
    sb = await bwrap_sandbox(sandbox_root)
    target = sandbox_root.parent / "escaped"
    for command in (
        f"touch {target}",
        "touch /usr/escaped",
        "touch /etc/escaped",
    ):
        result = await sb.exec(command)
        assert result.exit_code != 0, command
    # the sandbox's `/` is its own tmpfs: as root (dropped to the sandbox uid) it is not writable;
    # as a normal user bubblewrap maps that user to itself and may write there, but never the host's
    await sb.exec("touch /escaped")
    assert not await anyio.Path("/escaped").exists()
    assert not target.exists()
    assert not await anyio.Path("/usr/escaped").exists()
    assert not await anyio.Path("/etc/escaped").exists()
    assert (await sb.exec("touch inside /tmp/scratch")).exit_code == 0
    assert (sb.host_path / "inside").exists()


@needs_bwrap
async def test_cannot_see_host_processes(sandbox_root: Path) -> None:
    sb = await bwrap_sandbox(sandbox_root)
    result = await sb.exec(
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; ls -d /proc/[0-9]* | wc -l"
    )
    assert "pytest" not in result.stdout
    assert int(result.stdout.split()[-1]) < 10


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@needs_bwrap
async def test_no_network_unless_the_profile_allows_it(sandbox_root: Path, listener: int) -> None:
    connect = f"exec 3<>/dev/tcp/127.0.0.1/{listener} && echo connected"
    off = await bwrap_sandbox(sandbox_root)
    result = await off.exec(connect, timeout=10)
    assert result.exit_code != 0 and "connected" not in result.stdout
    on = await LocalBackend(sandbox_root, isolation="bubblewrap").acquire(
        "run_net", profile(network=True)
    )
    assert (await on.exec(connect, timeout=10)).stdout == "connected\n"


@needs_bwrap
async def test_cancel_kills_a_setsid_child(sandbox_root: Path) -> None:
    sb = await bwrap_sandbox(sandbox_root)
    with anyio.move_on_after(0.5) as scope:
        await sb.exec("setsid bash -c 'sleep 1.5; touch escaped' >/dev/null 2>&1 & sleep 30")
    assert scope.cancelled_caught
    result = await sb.exec(
        "setsid bash -c 'sleep 1.5; touch escaped2' >/dev/null 2>&1 & sleep 30", timeout=0.5
    )
    assert result.timed_out
    await anyio.sleep(2.0)
    assert not (sb.host_path / "escaped").exists()
    assert not (sb.host_path / "escaped2").exists()


@pytest.fixture(params=["bubblewrap", "process-group"])
def any_backend(request: pytest.FixtureRequest, sandbox_root: Path) -> LocalBackend:
    if request.param == "bubblewrap" and _PROBE.isolation != "bubblewrap":
        pytest.skip(f"bubblewrap unavailable: {_PROBE.reason}")
    return LocalBackend(sandbox_root, isolation=request.param)


async def test_file_size_limit(any_backend: LocalBackend) -> None:
    sb = await any_backend.acquire("run_lim", profile(limits={"file_size_mb": 1}))
    result = await sb.exec("head -c 3000000 /dev/zero > big")
    assert result.exit_code != 0
    assert (sb.host_path / "big").stat().st_size <= 1024 * 1024


async def test_cpu_limit(any_backend: LocalBackend) -> None:
    sb = await any_backend.acquire("run_lim", profile(limits={"cpu_seconds": 1}))
    with anyio.fail_after(15):
        result = await sb.exec("while :; do :; done", timeout=12)
    assert not result.timed_out
    assert result.exit_code == 128 + 24  # SIGXCPU


async def test_memory_limit(any_backend: LocalBackend) -> None:
    sb = await any_backend.acquire("run_lim", profile(limits={"memory_mb": 64}))
    big = await sb.exec("python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))'")
    assert big.exit_code != 0 and "MemoryError" in big.stderr
    small = await sb.exec("python3 -c 'b = bytearray(8 * 1024 * 1024); print(len(b))'")
    assert small.exit_code == 0, small.stderr


@needs_root
async def test_process_limit(any_backend: LocalBackend) -> None:
    sb = await any_backend.acquire("run_lim", profile(limits={"max_processes": 30}))
    result = await sb.exec(
        "for i in $(seq 60); do sleep 2 & done 2>&1; wait; echo finished", timeout=4
    )
    assert "Resource temporarily unavailable" in result.stderr + result.stdout


async def test_limits_cannot_be_raised(any_backend: LocalBackend) -> None:
    sb = await any_backend.acquire("run_lim", profile(limits={"cpu_seconds": 5}))
    result = await sb.exec("ulimit -t 100 && echo raised")
    assert result.exit_code != 0 and "raised" not in result.stdout
