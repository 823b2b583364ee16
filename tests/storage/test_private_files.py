"""Flowrun's own files are private: the database and its -wal/-shm 0600, the home 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flowrun.config import Settings, open_engine
from flowrun.storage.private import private_database

from .storekit import created, make_run, store_at

pytestmark = pytest.mark.anyio


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_and_its_companions_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "flowrun.db"
    old = os.umask(0o022)
    try:
        async with store_at(db) as store:
            run = make_run()
            await store.create_run(run, created(run))
            companions = [Path(f"{db}-wal"), Path(f"{db}-shm")]
            assert all(p.exists() for p in companions)
            assert [mode(p) for p in (db, *companions)] == [0o600, 0o600, 0o600]
    finally:
        os.umask(old)


def test_an_older_world_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "flowrun.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_bytes(b"")
        Path(f"{db}{suffix}").chmod(0o644)
    private_database(str(db))
    assert [mode(Path(f"{db}{s}")) for s in ("", "-wal", "-shm")] == [0o600] * 3


async def test_the_engine_makes_its_home_0700(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    settings = Settings.from_env({"FLOWRUN_HOME": str(home)})
    async with open_engine(settings):
        assert mode(home) == 0o700
        assert mode(settings.db_path) == 0o600
