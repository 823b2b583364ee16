"""The local backend's behaviour in either isolation mode: streaming, timeouts, exit codes,
output caps, cancellation, path safety, provisioning, and a workspace that outlives release."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from flowrun.flows.errors import BlockedError, SandboxError
from flowrun.flows.profiles import RepositorySpec, ResourceLimits, SandboxProfile
from flowrun.flows.run import SandboxLink
from flowrun.sandboxes import LocalBackend, LocalSandbox

pytestmark = pytest.mark.anyio

MODES = ["bubblewrap", "process-group"]


@pytest.fixture(params=MODES)
def backend(request: pytest.FixtureRequest, sandbox_root: Path) -> LocalBackend:
    mode = request.param
    b = LocalBackend(sandbox_root, isolation="auto" if mode == "bubblewrap" else mode)
    if mode == "bubblewrap" and b.isolation != "bubblewrap":
        pytest.skip("bubblewrap is unavailable here")
    return b


def profile(**kw: object) -> SandboxProfile:
    return SandboxProfile.model_validate({"name": "test", **kw})


async def acquire(backend: LocalBackend, run_id: str = "run_1", **kw: object) -> LocalSandbox:
    return await backend.acquire(run_id, profile(**kw))


class Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    async def __call__(self, stream: str, text: str) -> None:
        self.items.append((stream, text))


async def test_exit_codes_and_captured_output(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    ok = await sb.exec("echo out; echo err >&2")
    assert (ok.exit_code, ok.stdout, ok.stderr, ok.timed_out) == (0, "out\n", "err\n", False)
    bad = await sb.exec("exit 7")
    assert bad.exit_code == 7
    killed = await sb.exec("kill -TERM $$")
    assert killed.exit_code in (128 + 15, 143)


async def test_output_streams_line_by_line_in_order(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    seen = Recorder()
    result = await sb.exec(
        "for i in 1 2 3; do echo line$i; done; echo oops >&2; sleep 0.2; echo after",
        on_output=seen,
    )
    stdout = [t for s, t in seen.items if s == "stdout"]
    assert "".join(stdout) == "line1\nline2\nline3\nafter\n" == result.stdout
    assert stdout[-1] == "after\n"  # arrived by itself, after the pause
    assert ("stderr", "oops\n") in seen.items
    assert seen.items.index(("stderr", "oops\n")) < len(seen.items) - 1


async def test_streaming_happens_while_the_command_runs(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    first = anyio.Event()

    async def on_output(stream: str, text: str) -> None:
        first.set()

    async def run() -> None:
        await sb.exec("echo early; sleep 30", timeout=10, on_output=on_output)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            await first.wait()
        tg.cancel_scope.cancel()


async def test_timeout_kills_and_reports_124(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    with anyio.fail_after(10):
        result = await sb.exec("echo started; sleep 30 & sleep 30", timeout=0.5)
    assert result.timed_out and result.exit_code == 124
    assert result.stdout == "started\n"


async def test_profile_timeout_applies_by_default(backend: LocalBackend) -> None:
    sb = await acquire(backend, limits={"command_timeout_s": 0.3})
    with anyio.fail_after(10):
        result = await sb.exec("sleep 30")
    assert result.timed_out


async def test_output_is_capped(backend: LocalBackend) -> None:
    sb = await acquire(backend, limits=ResourceLimits(max_output_bytes=1000).model_dump())
    seen = Recorder()
    with anyio.fail_after(20):
        result = await sb.exec("head -c 5000000 /dev/zero | tr '\\0' x", on_output=seen)
    assert result.truncated and result.exit_code == 0
    assert len(result.stdout) == 1000
    assert sum(len(t) for _, t in seen.items) == 1000


async def test_cancellation_kills_the_tree_and_reraises(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    marker = sb.host_path / "survived"
    with anyio.move_on_after(0.5) as scope:
        await sb.exec("(sleep 1.5; touch survived) & sleep 30")
    assert scope.cancelled_caught
    await anyio.sleep(2.0)
    assert not marker.exists()


async def test_background_children_do_not_outlive_the_command(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    marker = sb.host_path / "late"
    with anyio.fail_after(5):
        result = await sb.exec("(sleep 1; touch late) >/dev/null 2>&1 & echo done")
    assert result.stdout == "done\n"
    await anyio.sleep(1.5)
    assert not marker.exists()


async def test_clean_environment(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWRUN_TEST_SECRET", "hunter2")
    sb = await acquire(backend, env={"PROFILE_VAR": "p"})
    result = await sb.exec("env", env={"CALL_VAR": "c"})
    assert "hunter2" not in result.stdout
    assert "PROFILE_VAR=p" in result.stdout and "CALL_VAR=c" in result.stdout
    assert f"HOME={sb.workspace}" in result.stdout


async def test_files_round_trip_and_listing(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    await sb.write_file("src/pkg/a.py", b"print(1)\n")
    await sb.write_file(f"{sb.workspace}/top.txt", b"top")
    assert await sb.read_file("src/pkg/a.py") == b"print(1)\n"
    assert await sb.read_file("./top.txt") == b"top"
    assert await sb.list_files() == ["src/", "top.txt"]
    assert await sb.list_files("src", recursive=True) == ["src/pkg/", "src/pkg/a.py"]
    # files the server wrote are the sandbox user's to change
    result = await sb.exec("echo more >> src/pkg/a.py && mkdir src/pkg/sub && cat src/pkg/a.py")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "print(1)\nmore\n"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../outside", "path_escape"),
        ("a/../../outside", "path_escape"),
        ("/etc/passwd", "path_escape"),
        ("escape/passwd", "path_escape"),
        ("escape-abs", "path_escape"),
        ("missing.txt", "not_found"),
        ("dir/missing.txt", "not_found"),
    ],
)
async def test_read_refuses_escapes(backend: LocalBackend, path: str, code: str) -> None:
    sb = await acquire(backend)
    os.symlink("/etc", sb.host_path / "escape")
    os.symlink("/etc/hostname", sb.host_path / "escape-abs")
    (sb.host_path / "dir").mkdir()
    with pytest.raises(SandboxError) as info:
        await sb.read_file(path)
    assert info.value.code == code


async def test_symlinks_inside_the_workspace_work(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    await sb.write_file("docs/readme.md", b"hi")
    os.symlink("docs/readme.md", sb.host_path / "README")
    os.symlink(f"{sb.workspace}/docs", sb.host_path / "d")
    os.symlink("../docs", sb.host_path / "docs" / "self")
    assert await sb.read_file("README") == b"hi"
    assert await sb.read_file("d/readme.md") == b"hi"
    assert await sb.read_file("docs/self/self/readme.md") == b"hi"


async def test_write_through_an_escaping_symlink_is_refused(
    backend: LocalBackend, tmp_path: Path
) -> None:
    sb = await acquire(backend)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, sb.host_path / "out")
    os.symlink(outside / "f", sb.host_path / "f")
    for path in ("out/x", "f", "../x"):
        with pytest.raises(SandboxError) as info:
            await sb.write_file(path, b"x")
        assert info.value.code == "path_escape"
    assert list(outside.iterdir()) == []


async def test_cwd_must_stay_inside(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    await sb.write_file("sub/f", b"")
    assert (await sb.exec("pwd", cwd="sub")).stdout == f"{sb.workspace}/sub\n"
    with pytest.raises(SandboxError):
        await sb.exec("pwd", cwd="..")


async def test_release_and_reacquire_keep_the_workspace(backend: LocalBackend) -> None:
    sb = await acquire(backend)
    assert (await sb.exec("echo kept > state.txt")).exit_code == 0
    link = await backend.release(sb, keep=True)
    assert link == SandboxLink(backend="local", id="run_1", state="released")
    with pytest.raises(SandboxError) as info:
        await sb.exec("true")
    assert info.value.code == "sandbox_not_active"
    # a new backend object: as after a restart
    again = await LocalBackend(backend.root, isolation=backend.isolation).acquire(
        "run_1", profile(), link=link
    )
    assert (await again.exec("cat state.txt")).stdout == "kept\n"
    gone = await backend.release(again, keep=False)
    assert gone.state == "destroyed"
    assert not again.host_path.exists()
    with pytest.raises(BlockedError) as blocked:
        await backend.acquire("run_1", profile(), link=link)
    assert blocked.value.cause == "environment_unhealthy"


def _git(*args: str, cwd: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


async def test_acquire_clones_repositories_and_reports_setup(
    backend: LocalBackend, tmp_path: Path
) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    _git("init", "-q", "-b", "main", cwd=origin)
    (origin / "app.txt").write_text("v1\n")
    _git("add", ".", cwd=origin)
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "v1", cwd=origin)
    _git("tag", "v1", cwd=origin)
    (origin / "app.txt").write_text("v2\n")
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "v2", cwd=origin)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.md").write_text("plain\n")
    prof = profile(
        repositories=[
            {"url": "origin", "ref": "v1", "path": "repo"},
            {"url": str(plain), "path": "vendor/plain"},
        ],
        source_dir=str(tmp_path),
    )
    setup: list[tuple[str, dict[str, object]]] = []

    async def on_setup(text: str, data: dict[str, object]) -> None:
        setup.append((text, data))

    sb = await backend.acquire("run_clone", prof, on_setup=on_setup)
    assert (await sb.read_file("repo/app.txt")) == b"v1\n"
    assert (await sb.read_file("vendor/plain/notes.md")) == b"plain\n"
    actions = [d["action"] for _, d in setup]
    assert actions == ["workspace", "clone", "clone", "ready"]
    assert setup[0][1]["backend"] == "local" and setup[0][1]["isolation"] == backend.isolation
    assert all("duration_s" in d for _, d in setup[1:])
    result = await sb.exec("cd repo && echo local >> app.txt && git status --porcelain")
    assert result.exit_code == 0, result.stderr
    # reacquire: the clone is left alone, local changes survive
    await backend.release(sb, keep=True)
    setup.clear()
    again = await backend.acquire("run_clone", prof, link=sb.link, on_setup=on_setup)
    assert (await again.read_file("repo/app.txt")) == b"v1\nlocal\n"
    assert [d.get("reused") for _, d in setup if d["action"] == "clone"] == [True, True]


async def test_private_repository_without_credential_blocks(backend: LocalBackend) -> None:
    prof = profile(
        repositories=[RepositorySpec(url="https://github.com/acme/secret.git", private=True)]
    )
    with pytest.raises(BlockedError) as info:
        await backend.acquire("run_priv", prof)
    assert info.value.cause == "credential_needed"
    assert "GitHub" in info.value.fix


async def test_missing_local_repository_is_a_sandbox_error(
    backend: LocalBackend, tmp_path: Path
) -> None:
    prof = profile(repositories=[{"url": "nope"}], source_dir=str(tmp_path))
    with pytest.raises(SandboxError) as info:
        await backend.acquire("run_missing", prof)
    assert info.value.code == "repository_not_found"


async def test_invalid_run_ids_are_refused(backend: LocalBackend) -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(SandboxError):
            await backend.acquire(bad, profile())
