"""The e2b backend through the real SDK, against fakes of e2b's API and envd on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from flowrun.flows.errors import BlockedError, SandboxError
from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import get_backend
from flowrun.sandboxes.e2b import E2BBackend
from flowrun.sandboxes.testing import FakeE2B, serve_fake_e2b

pytestmark = pytest.mark.anyio

PROFILE = SandboxProfile(
    name="e2b-node",
    backend="e2b",
    template="node20",
    env={"PROFILE_VAR": "p"},
    lifetime_s=900,
)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[FakeE2B]:
    async with serve_fake_e2b(tmp_path / "cloud") as fake:
        yield fake


@pytest.fixture
def backend(cloud: FakeE2B) -> E2BBackend:
    return E2BBackend(**cloud.backend_options())


class Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    async def __call__(self, stream: str, text: str) -> None:
        self.items.append((stream, text))


async def test_create_from_the_profile(cloud: FakeE2B, backend: E2BBackend) -> None:
    setup: list[tuple[str, dict[str, object]]] = []

    async def on_setup(text: str, data: dict[str, object]) -> None:
        setup.append((text, data))

    sb = await backend.acquire("run_42", PROFILE, on_setup=on_setup)
    fake = cloud.sandboxes[sb.id]
    assert fake.template == "node20"
    assert fake.metadata == {"flowrun_run_id": "run_42", "flowrun_profile": "e2b-node"}
    assert fake.envs == {"PROFILE_VAR": "p"}
    assert fake.timeout == 900 and fake.network is False
    assert [d["action"] for _, d in setup] == ["workspace", "ready"]
    assert setup[0][1]["template"] == "node20" and setup[0][1]["sandbox_id"] == sb.id
    assert sb.link.backend == "e2b" and sb.link.state == "active"
    assert (await sb.exec("echo $PROFILE_VAR")).stdout == "p\n"


async def test_get_backend_builds_it_lazily(cloud: FakeE2B, tmp_path: Path) -> None:
    backend = get_backend("e2b", root=tmp_path, **cloud.backend_options())
    assert isinstance(backend, E2BBackend)


async def test_output_streams_in_order_and_exit_codes(backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    seen = Recorder()
    result = await sb.exec(
        "for i in 1 2 3; do echo line$i; sleep 0.05; done; echo oops >&2; exit 3", on_output=seen
    )
    assert result.exit_code == 3 and not result.timed_out
    assert result.stdout == "line1\nline2\nline3\n" and result.stderr == "oops\n"
    assert seen.items == [
        ("stdout", "line1\n"),
        ("stdout", "line2\n"),
        ("stdout", "line3\n"),
        ("stderr", "oops\n"),
    ]
    assert (await sb.exec("true")).exit_code == 0


async def test_output_cap(backend: E2BBackend) -> None:
    profile = PROFILE.model_copy(
        update={"limits": PROFILE.limits.model_copy(update={"max_output_bytes": 100})}
    )
    sb = await backend.acquire("run_1", profile)
    result = await sb.exec("head -c 100000 /dev/zero | tr '\\0' y")
    assert result.truncated and len(result.stdout) == 100


async def test_our_deadline_kills_the_command(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    with anyio.fail_after(10):
        result = await sb.exec("echo started; sleep 30", timeout=0.5)
    assert result.timed_out and result.exit_code == 124
    assert result.stdout == "started\n"
    with anyio.fail_after(5):  # the kill was sent; the fake reaps the process on its own schedule
        for process in cloud.sandboxes[sb.id].processes.values():
            await process.finished.wait()
    assert all(p.ended for p in cloud.sandboxes[sb.id].processes.values())


async def test_a_long_command_outlives_the_sdk_default_timeout(backend: E2BBackend) -> None:
    # the SDK's own 60 s stream timeout must not apply: it is disabled, ours is in charge
    sb = await backend.acquire("run_1", PROFILE)
    result = await sb.exec("sleep 0.3; echo done", timeout=5)
    assert result.stdout == "done\n"


async def test_cancellation_kills_the_command(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    with anyio.move_on_after(0.5):
        await sb.exec("sleep 30")
    with anyio.fail_after(5):
        for process in cloud.sandboxes[sb.id].processes.values():
            await process.finished.wait()


async def test_files(backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    await sb.write_file("src/a.py", b"print(1)\n")
    await sb.write_file(f"{sb.workspace}/README.md", b"hi")
    assert await sb.read_file("src/a.py") == b"print(1)\n"
    assert await sb.list_files() == ["README.md", "src/"]
    assert await sb.list_files("src", recursive=True) == ["src/a.py"]
    for path, code in [
        ("../etc/passwd", "path_escape"),
        ("/etc/passwd", "path_escape"),
        ("nope", "not_found"),
    ]:
        with pytest.raises(SandboxError) as info:
            await sb.read_file(path)
        assert info.value.code == code
    with pytest.raises(SandboxError) as missing:
        await sb.list_files("nope")
    assert missing.value.code == "not_found"


async def test_repositories_are_uploaded(backend: E2BBackend, tmp_path: Path) -> None:
    source = tmp_path / "plain"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("x = 1\n")
    profile = SandboxProfile.model_validate(
        {
            **PROFILE.model_dump(),
            "repositories": [{"url": "plain", "path": "app"}],
            "source_dir": str(tmp_path),
        }
    )
    sb = await backend.acquire("run_1", profile)
    assert await sb.read_file("app/pkg/mod.py") == b"x = 1\n"
    assert await sb.list_files() == ["app/"]


async def test_pause_at_a_checkpoint_and_resume_the_same_sandbox(
    cloud: FakeE2B, backend: E2BBackend
) -> None:
    sb = await backend.acquire("run_bg", PROFILE)
    await sb.exec("echo work > progress.txt")
    link = await backend.release(sb, keep=True)
    assert link.state == "released" and cloud.sandboxes[sb.id].state == "paused"
    with pytest.raises(SandboxError, match="released"):
        await sb.exec("true")
    # approval, perhaps in another process: a new backend object reconnects by the link
    again = await E2BBackend(**cloud.backend_options()).acquire("run_bg", PROFILE, link=link)
    assert again.id == sb.id and cloud.sandboxes[sb.id].state == "running"
    assert (await again.exec("cat progress.txt")).stdout == "work\n"
    assert cloud.calls[-1] == f"POST /v2/sandboxes/{sb.id}/connect"


async def test_kill_when_the_run_ends(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    link = await backend.release(sb, keep=False)
    assert link.state == "destroyed" and cloud.sandboxes[sb.id].state == "killed"
    parked = await backend.acquire("run_2", PROFILE)
    parked_link = await backend.release(parked, keep=True)
    await backend.destroy(parked_link)
    assert cloud.sandboxes[parked.id].state == "killed"


async def test_auth_failure_blocks_with_the_fix(cloud: FakeE2B) -> None:
    backend = E2BBackend(**cloud.backend_options(api_key="e2b_wrong"))
    with pytest.raises(BlockedError) as info:
        await backend.acquire("run_1", PROFILE)
    assert info.value.cause == "credential_needed"
    assert "E2B_API_KEY" in info.value.fix


async def test_missing_key_blocks_before_calling(cloud: FakeE2B) -> None:
    backend = E2BBackend(**cloud.backend_options(api_key=None), env={"E2B_API_KEY": ""})
    backend._api_key = None  # nothing in the process environment either
    with pytest.raises(BlockedError) as info:
        await backend.acquire("run_1", PROFILE)
    assert info.value.cause == "credential_needed"
    assert cloud.calls == []


async def test_rate_limits_are_retried_boundedly(cloud: FakeE2B, backend: E2BBackend) -> None:
    cloud.rate_limit_next = 2
    sb = await backend.acquire("run_1", PROFILE)
    assert cloud.rate_limited == 2 and sb.id in cloud.sandboxes
    cloud.rate_limit_next = 10
    with pytest.raises(SandboxError) as info:
        await backend.acquire("run_2", PROFILE)
    assert info.value.code == "rate_limited"
    assert cloud.rate_limited == 2 + 4  # four attempts, then it gives up


async def test_vanished_sandbox_on_reconnect_blocks(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    link = await backend.release(sb, keep=True)
    cloud.vanish(sb.id)
    with pytest.raises(BlockedError) as info:
        await backend.acquire("run_1", PROFILE, link=link)
    assert info.value.cause == "environment_unhealthy"
    assert sb.id in info.value.message and sb.id in info.value.fix
    assert info.value.details["sandbox"] == sb.id


async def test_blank_replacement_on_resume_is_detected(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    link = await backend.release(sb, keep=True)
    cloud.blank_on_resume.add(sb.id)
    with pytest.raises(BlockedError) as info:
        await backend.acquire("run_1", PROFILE, link=link)
    assert info.value.cause == "environment_unhealthy"


async def test_sandbox_killed_under_a_running_step(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    cloud.vanish(sb.id)
    with pytest.raises(BlockedError) as info:
        await sb.exec("true")
    assert info.value.cause == "environment_unhealthy"


async def test_reattach_to_a_command_after_a_restart(cloud: FakeE2B, backend: E2BBackend) -> None:
    sb = await backend.acquire("run_1", PROFILE)
    # the previous process started a step's command, then died without a word
    previous = await sb.sdk.commands.run(
        "echo before; sleep 0.5; echo after; exit 4", background=True, cwd=sb.workspace, timeout=0
    )
    await previous.disconnect()
    restarted = E2BBackend(**cloud.backend_options())
    again = await restarted.acquire("run_1", PROFILE, link=sb.link)
    assert await again.running_commands() == [previous.pid]
    seen = Recorder()
    with anyio.fail_after(10):
        result = await again.attach(previous.pid, on_output=seen)
    assert result.exit_code == 4
    assert ("stdout", "after\n") in seen.items
