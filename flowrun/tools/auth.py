"""Bearer tokens for the HTTP face: which actor a token speaks for, and with which scopes.

Tokens come from configuration, in one line format everywhere:

    TOKEN=ACTOR[@WORKSPACE]:SCOPE[,SCOPE...]

`FLOWRUN_TOKENS` holds entries separated by `;`; the file `$FLOWRUN_HOME/tokens` holds one entry
per line (`#` starts a comment). Scopes are `flows.read`, `flows.run`, `flows.cancel.any`, or `*`
for all three. The engine enforces the scopes; this module only translates a token into an
`Actor`. Tokens are kept as SHA-256 digests so a lookup does not compare secrets byte by byte, and
they are never logged. stdio needs no token: it runs as the local operator.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..flows.enums import Scope
from ..flows.errors import PermissionDenied, UsageError
from ..runtime.access import ALL_SCOPES, Actor

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

log = logging.getLogger("flowrun.tools")

TOKENS_ENV = "FLOWRUN_TOKENS"
TOKENS_FILE = "tokens"
MIN_TOKEN_LENGTH = 16
_SCOPES = {s.value: s for s in Scope}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_entry(entry: str, source: str) -> tuple[str, Actor]:
    """One `TOKEN=ACTOR[@WORKSPACE]:SCOPES` entry.

    Raises:
        UsageError: naming the source and what is wrong (never echoing the token).
    """
    token, sep, rest = entry.strip().partition("=")
    token = token.strip()
    who, colon, scope_list = rest.partition(":")
    actor_id, _, workspace = who.strip().partition("@")
    if not sep or not colon or not token or not actor_id:
        raise UsageError(f"{source}: token entries look like TOKEN=ACTOR[@WORKSPACE]:SCOPE[,SCOPE...]")
    if len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(f"{source}: the token for {actor_id!r} is shorter than {MIN_TOKEN_LENGTH} characters")
    names = [s.strip() for s in scope_list.split(",") if s.strip()]
    if names == ["*"]:
        scopes = ALL_SCOPES
    else:
        unknown = [n for n in names if n not in _SCOPES]
        if unknown or not names:
            raise UsageError(f"{source}: unknown scope(s) {', '.join(unknown) or '(none given)'} for {actor_id!r}; "
                             f"use {', '.join(_SCOPES)} or *")
        scopes = frozenset(_SCOPES[n] for n in names)
    return token, Actor(id=actor_id, workspace=workspace.strip() or "default", scopes=scopes)


@dataclass
class TokenTable:
    """Token digests to actors. Empty means HTTP refuses every request (401)."""

    _actors: dict[str, Actor] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Iterable[tuple[str, str]]) -> TokenTable:
        """From `(entry, source)` pairs; a later entry for the same token wins."""
        table = cls()
        for entry, source in entries:
            token, actor = parse_entry(entry, source)
            table._actors[_digest(token)] = actor
        return table

    @classmethod
    def from_config(cls, env: Mapping[str, str], home: Path) -> TokenTable:
        entries = [(e, TOKENS_ENV) for e in env.get(TOKENS_ENV, "").split(";") if e.strip()]
        path = home / TOKENS_FILE
        if path.exists():
            if path.stat().st_mode & 0o077:
                log.warning("%s is readable by other users; chmod 600 it", path)
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                line = line.split("#", 1)[0].strip()
                if line:
                    entries.append((line, f"{path}:{number}"))
        return cls.parse(entries)

    def __len__(self) -> int:
        return len(self._actors)

    def lookup(self, token: str) -> Actor | None:
        return self._actors.get(_digest(token))

    def lookup_digest(self, digest: str) -> Actor | None:
        """By the token's SHA-256 hex digest (what a browser session keeps of its token)."""
        return self._actors.get(digest)


def create_operator_token(home: Path, actor: str = "local") -> str:
    """Write a fresh all-scopes token for the local operator to `$FLOWRUN_HOME/tokens` (0600) and
    return it; used when `flowrun serve` starts with no token configured at all."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the engine tightens an older home
    token = "frt_" + secrets.token_urlsafe(32)
    path = home / TOKENS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"# created by `flowrun serve`: the local operator, all scopes\n{token}={actor}:*\n")
    return token


class BearerTokens:
    """The SDK's `TokenVerifier` over a `TokenTable`, and the actor of the current request."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        actor = self.table.lookup(token)
        if actor is None:
            log.info("refused an unknown bearer token")
            return None
        return AccessToken(token=token, client_id=actor.id, scopes=sorted(s.value for s in actor.scopes))

    def current_actor(self) -> Actor:
        """The actor behind the bearer token of the request being served.

        Raises:
            PermissionDenied: no authenticated token (the HTTP layer normally answers 401 first).
        """
        from mcp.server.auth.middleware.auth_context import get_access_token

        access = get_access_token()
        actor = self.table.lookup(access.token) if access is not None else None
        if actor is None:
            raise PermissionDenied("this request carries no valid bearer token")
        return actor
