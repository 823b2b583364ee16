"""The do-nothing backend keeps the protocol's contract: states, paths, files across release."""

from __future__ import annotations

import pytest

from flowrun.flows.errors import BlockedError, SandboxError
from flowrun.flows.profiles import SandboxProfile
from flowrun.sandboxes import NoopBackend

pytestmark = pytest.mark.anyio
PROFILE = SandboxProfile(name="p", backend="noop")


async def test_exec_is_instant_and_recorded() -> None:
    backend = NoopBackend()
    sb = await backend.acquire("run_1", PROFILE)
    result = await sb.exec("make test")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert sb.commands == ["make test"]


async def test_files_survive_release_and_follow_path_rules() -> None:
    backend = NoopBackend()
    sb = await backend.acquire("run_1", PROFILE)
    await sb.write_file("src/a.py", b"a")
    await sb.write_file("/workspace/src/pkg/b.py", b"b")
    assert await sb.list_files() == ["src/"]
    assert await sb.list_files("src") == ["src/a.py", "src/pkg/"]
    assert await sb.list_files(recursive=True) == ["src/", "src/a.py", "src/pkg/", "src/pkg/b.py"]
    for bad, code in [
        ("../x", "path_escape"),
        ("/etc/passwd", "path_escape"),
        ("nope", "not_found"),
    ]:
        with pytest.raises(SandboxError) as info:
            await sb.read_file(bad)
        assert info.value.code == code
    link = await backend.release(sb, keep=True)
    with pytest.raises(SandboxError, match="released"):
        await sb.exec("true")
    again = await backend.acquire("run_1", PROFILE, link=link)
    assert await again.read_file("src/a.py") == b"a"
    await backend.release(again, keep=False)
    with pytest.raises(BlockedError):
        await backend.acquire("run_1", PROFILE, link=link)
