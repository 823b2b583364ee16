"""`flowrun watch RUN_ID --server URL`: a second program follows a run over `/ws`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from .webkit import ANA, WAIT_S, environment, served

pytestmark = pytest.mark.anyio
FLOWRUN = Path(sys.executable).with_name("flowrun")


async def test_watch_follows_a_served_run_until_it_parks(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as s:
        async with s.http() as http:
            run = (await http.post("/api/runs", json={"flow_id": "full-sdlc"})).json()["id"]
        env = {**os.environ, "FLOWRUN_HOME": str(tmp_path / "elsewhere"), "FLOWRUN_TOKEN": ANA, "COLUMNS": "200"}
        with anyio.fail_after(WAIT_S):
            watched = await anyio.run_process([str(FLOWRUN), "watch", run, "--server", s.base, "--from-start"],
                                              env=env, check=False)
        out = watched.stdout.decode()
        assert watched.returncode == 0, watched.stderr.decode()
        assert "Full SDLC" in out and run in out
        assert "step 1 completed" in out and "Waiting at step 4 'Create PR': Sign off before the PR opens." in out
        assert not (tmp_path / "elsewhere").exists()  # nothing local was opened

        refused = await anyio.run_process([str(FLOWRUN), "watch", run, "--server", s.base],
                                          env={**env, "FLOWRUN_TOKEN": "forged-token-0123456789"}, check=False)
        assert refused.returncode == 2 and "pass --token" in refused.stderr.decode()
