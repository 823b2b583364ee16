"""The browser session table: kept in a 0600 file, shared by processes on one home, expiring."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowrun.flows.enums import Scope
from flowrun.runtime.access import Actor
from flowrun.web.sessions import SessionTable

ANA = Actor("ana", workspace="team", scopes=frozenset({Scope.READ}))


def test_two_processes_on_one_home_see_each_others_logins_and_logouts(tmp_path: Path) -> None:
    path = tmp_path / "home" / "web-sessions.json"
    first, second = SessionTable(path), SessionTable(path)
    cookie = first.open(ANA, 3600, token="a-bearer-token-123")
    found = second.get(cookie)
    assert found is not None and found.actor == ANA and found.token is not None and "bearer" not in found.token
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    second.end(cookie)
    assert first.get(cookie) is None and SessionTable(path).get(cookie) is None
    assert second.get("never-issued") is None


def test_expired_sessions_are_refused_and_dropped(tmp_path: Path) -> None:
    table = SessionTable(tmp_path / "s.json")
    old = table.open(ANA, 0.001)
    time.sleep(0.01)
    assert table.get(old) is None
    table.open(ANA, 60)
    assert len(SessionTable(tmp_path / "s.json")) == 1  # the expired one was not written back


def test_an_unreadable_table_signs_everyone_out_and_is_rewritten(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.json"
    cookie = SessionTable(path).open(ANA, 60)
    path.write_text("{not json")
    table = SessionTable(path)
    assert table.get(cookie) is None and "cannot read the browser sessions" in caplog.text
    fresh = table.open(ANA, 60)
    assert SessionTable(path).get(fresh) is not None


def test_memory_only_without_a_path() -> None:
    table = SessionTable()
    cookie = table.open(ANA, 60)
    assert table.get(cookie) is not None
    table.end(cookie)
    assert table.get(cookie) is None
