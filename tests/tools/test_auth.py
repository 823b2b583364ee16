"""Bearer tokens from configuration, one row per rule of the token line format."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from flowrun.flows.enums import Scope
from flowrun.flows.errors import PermissionDenied, UsageError
from flowrun.tools.auth import BearerTokens, TokenTable, create_operator_token, parse_entry

TOKEN = "tok-0123456789abcdef"
ALL = frozenset(Scope)

ENTRIES: list[tuple[str, str, str, frozenset[Scope]]] = [
    # entry, actor, workspace, scopes
    (f"{TOKEN}=ana:flows.read", "ana", "default", frozenset({Scope.READ})),
    (f"{TOKEN}=ana:flows.read,flows.run", "ana", "default", frozenset({Scope.READ, Scope.RUN})),
    (f" {TOKEN} = ana@team : flows.read , flows.cancel.any ", "ana", "team",
     frozenset({Scope.READ, Scope.CANCEL_ANY})),
    (f"{TOKEN}=ops:*", "ops", "default", ALL),
]
BAD: list[tuple[str, str]] = [
    ("no-separator-0123456789", "TOKEN=ACTOR"),
    (f"{TOKEN}=ana", "TOKEN=ACTOR"),  # scopes are required: no silent default
    (f"{TOKEN}=:flows.read", "TOKEN=ACTOR"),
    ("short=ana:flows.read", "shorter than 16 characters"),
    (f"{TOKEN}=ana:flows.write", "unknown scope(s) flows.write"),
    (f"{TOKEN}=ana:", "unknown scope(s) (none given)"),
]


@pytest.mark.parametrize(("entry", "actor", "workspace", "scopes"), ENTRIES)
def test_token_entries(entry: str, actor: str, workspace: str, scopes: frozenset[Scope]) -> None:
    token, parsed = parse_entry(entry, "test")
    assert token == TOKEN
    assert (parsed.id, parsed.workspace, parsed.scopes) == (actor, workspace, scopes)


@pytest.mark.parametrize(("entry", "phrase"), BAD)
def test_bad_token_entries_name_the_problem_but_never_the_token(entry: str, phrase: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_entry(entry, "FLOWRUN_TOKENS")
    assert phrase in caught.value.message and caught.value.message.startswith("FLOWRUN_TOKENS: ")
    assert TOKEN not in caught.value.message


def test_tokens_come_from_the_environment_and_the_tokens_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = "other-token-0123456789"
    (tmp_path / "tokens").write_text(f"# the team\n{other}=bob:flows.read  # read only\n\n")
    (tmp_path / "tokens").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="flowrun.tools"):
        table = TokenTable.from_config({"FLOWRUN_TOKENS": f"{TOKEN}=ana:*; "}, tmp_path)
    assert "readable by other users" in caplog.text
    assert len(table) == 2
    ana, bob = table.lookup(TOKEN), table.lookup(other)
    assert ana is not None and ana.id == "ana" and ana.scopes == ALL
    assert bob is not None and bob.scopes == frozenset({Scope.READ})
    assert table.lookup("nope-0123456789abcdef") is None


def test_a_bad_line_in_the_tokens_file_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(f"{TOKEN}=ana:*\n{TOKEN}=ana:flows.everything\n")
    with pytest.raises(UsageError, match=r"tokens:2: unknown scope"):
        TokenTable.from_config({}, tmp_path)


def test_the_operator_token_is_private_and_works(tmp_path: Path) -> None:
    token = create_operator_token(tmp_path / "home")
    path = tmp_path / "home" / "tokens"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    actor = TokenTable.from_config({}, tmp_path / "home").lookup(token)
    assert actor is not None and actor.id == "local" and actor.scopes == ALL


@pytest.mark.anyio
async def test_the_sdk_verifier_maps_a_token_to_its_actor() -> None:
    bearer = BearerTokens(TokenTable.parse([(f"{TOKEN}=ana:flows.read", "test")]))
    access = await bearer.verify_token(TOKEN)
    assert access is not None and access.client_id == "ana" and access.scopes == ["flows.read"]
    assert await bearer.verify_token("unknown-0123456789abc") is None
    with pytest.raises(PermissionDenied):  # outside an authenticated request
        bearer.current_actor()
