"""Browser sessions that survive a restart of the server, and end for good on logout.

A session cookie is a random secret (32 bytes); the server keeps only its SHA-256 digest, with
the actor, the wall-clock expiry and, when the person logged in with a bearer token, that
token's digest. With a path (`$FLOWRUN_HOME/web-sessions.json`, 0600 in the 0700 home) the table
is written through on every login and logout (atomically, fsynced), and read back at start-up,
so a restart keeps everyone signed in, and a logout is never undone by one.

Why a table and not a signed cookie: a signed cookie survives a restart without any state, but
then logout needs a list of revoked cookies that must itself be kept and shared, and a cookie
would carry scopes that a later change of the tokens could not take back. A table makes logout a
deletion, lets a session die with the token it came from (checked on every request by
`WebAuth`), and a copy of the file holds no usable cookie. Several processes on one home see
each other's logins and logouts: the file is read again when it changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..flows.enums import Scope
from ..runtime.access import Actor

log = logging.getLogger("flowrun.web")

SESSIONS_FILE = "web-sessions.json"
FORMAT_VERSION = 1


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    actor: Actor
    expires: float  # time.time(): a deadline that means the same after a restart
    token: str | None = None  # the digest of the bearer token it was opened with, if any


class SessionTable:
    """Cookie digests to sessions; thread-safe (login and logout write from a worker thread)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) last read or written
        if path is not None:
            with self._lock:
                self._reload()

    def open(self, actor: Actor, ttl_s: float, token: str | None = None) -> str:
        """A new session for `actor`; returns the cookie value (the only copy of the secret)."""
        cookie = secrets.token_urlsafe(32)
        with self._lock:
            self._reload()
            now = time.time()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[digest(cookie)] = Session(actor, now + ttl_s, digest(token) if token else None)
            self._write()
        return cookie

    def end(self, cookie: str) -> None:
        with self._lock:
            self._reload()
            if self._sessions.pop(digest(cookie), None) is not None:
                self._write()

    def get(self, cookie: str) -> Session | None:
        with self._lock:
            self._reload()
            session = self._sessions.get(digest(cookie))
        if session is None or session.expires <= time.time():
            return None
        return session

    def __len__(self) -> int:
        return len(self._sessions)

    # the file -----------------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        """Every write replaces the file, so a new inode says "changed" even within one tick."""
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        """Read the file again if it changed since we last read or wrote it (another process)."""
        if self.path is None:
            return
        seen = self._stat()
        if seen == self._seen:
            return
        self._seen = seen
        if seen is None:
            self._sessions = {}
            return
        try:
            data = json.loads(self.path.read_text())
            self._sessions = {key: _session(row) for key, row in data["sessions"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # unreadable: nobody is signed in (safe), and the next login rewrites it whole
            log.warning("cannot read the browser sessions in %s (%s); everyone signs in again", self.path, exc)
            self._sessions = {}

    def _write(self) -> None:
        if self.path is None:
            return
        rows = {key: {"actor": s.actor.id, "workspace": s.actor.workspace,
                      "scopes": sorted(scope.value for scope in s.actor.scopes), "expires": s.expires,
                      "token": s.token} for key, s in self._sessions.items()}
        text = json.dumps({"version": FORMAT_VERSION, "sessions": rows}, sort_keys=True)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._seen = self._stat()


def _session(row: dict[str, Any]) -> Session:
    actor = Actor(id=str(row["actor"]), workspace=str(row["workspace"]),
                  scopes=frozenset(Scope(name) for name in row["scopes"]))
    token = row.get("token")
    return Session(actor, float(row["expires"]), str(token) if token else None)
