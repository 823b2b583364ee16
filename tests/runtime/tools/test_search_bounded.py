"""`search_files` without ripgrep never runs a regex on the event loop, and a pattern that
backtracks for ever is stopped at its deadline with a tool error that says why."""

from __future__ import annotations

import anyio
import pytest

from flowrun.flows.events import TranscriptEntry
from flowrun.runtime.tools import search
from flowrun.runtime.tools.base import ToolContext
from flowrun.runtime.tools.search import SearchFiles, SearchFilesInput
from flowrun.sandboxes.noop import NoopSandbox

pytestmark = pytest.mark.anyio


async def _emit(entry: TranscriptEntry) -> None:
    del entry


def context(files: dict[str, bytes]) -> ToolContext:
    # the noop sandbox runs no command, so there is no rg: the Python fallback searches
    return ToolContext(run_id="run_1", step=0, call_id="t", sandbox=NoopSandbox("run_1", files, []), emit=_emit)


async def test_a_catastrophic_pattern_neither_blocks_the_loop_nor_runs_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search, "PYTHON_SEARCH_TIMEOUT_S", 2.0)
    ctx = context({"notes.txt": b"a" * 40 + b"!\n"})
    ticks = 0
    order: list[str] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.05)
            ticks += 1
            if ticks == 3:
                order.append("loop ran")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            out = await SearchFiles().run(ctx, SearchFilesInput(pattern="(a+)+$"))
            order.append("search returned")
            tg.cancel_scope.cancel()
    assert order == ["loop ran", "search returned"]  # the loop kept running while it searched
    assert out.is_error and "took longer than 2 s" in out.content and "(a+)+$" in out.content


async def test_the_fallback_still_finds_matches_and_caps_them() -> None:
    files = {f"f{i}.txt": b"alpha\nbeta\nalphabet\n" for i in range(5)}
    with anyio.fail_after(30):
        out = await SearchFiles().run(context(files), SearchFilesInput(pattern="^alpha", max_results=3))
    assert not out.is_error and out.data["engine"] == "python" and out.data["truncated"]
    assert out.content.splitlines()[:3] == ["f0.txt:1: alpha", "f0.txt:3: alphabet", "f1.txt:1: alpha"]
