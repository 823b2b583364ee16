"""The GitHub integration: a person's token, kept on this machine, used on the server's side.

`flowrun integrations connect github` checks a token against GitHub (`GET /user`) and stores it
in `$FLOWRUN_HOME/integrations/github.json` (directory 0700, file 0600, written atomically); it
is never printed again, never sent into a sandbox, and it joins the secrets redacted from every
transcript and log. Each actor connects their own; a run's pull request is opened with the token
of the person who started it, else the local operator's, else `GITHUB_TOKEN`.

GitHub Enterprise (or a mirror): `FLOWRUN_GITHUB_URL` (web and git, default https://github.com)
and `FLOWRUN_GITHUB_API_URL` (default https://api.github.com).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..flows.errors import BlockedError, UsageError
from ..flows.run import now

GITHUB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
CONNECT_FIX = "connect GitHub: `flowrun integrations connect github`, then resume the run"


class Connection(BaseModel):
    actor: str
    login: str
    token: str
    connected_at: str


@dataclass(frozen=True)
class GitHub:
    """Where GitHub is, and whose token to use."""

    home: Path
    url: str = GITHUB_URL
    api_url: str = GITHUB_API_URL
    env_token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> GitHub:
        return cls(home=home, url=(env.get("FLOWRUN_GITHUB_URL") or GITHUB_URL).rstrip("/"),
                   api_url=(env.get("FLOWRUN_GITHUB_API_URL") or GITHUB_API_URL).rstrip("/"),
                   env_token=env.get("GITHUB_TOKEN") or None)

    @property
    def path(self) -> Path:
        return self.home / "integrations" / "github.json"

    def connections(self) -> dict[str, Connection]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.path} is unreadable ({exc}); reconnect with flowrun integrations connect github") from None
        return {actor: Connection.model_validate(c) for actor, c in raw.items()}

    def _write(self, connections: Mapping[str, Connection]) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".github-", suffix=".json")  # 0600 from the start
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({a: c.model_dump() for a, c in connections.items()}, out)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def connect(self, actor: str, login: str, token: str) -> Connection:
        connection = Connection(actor=actor, login=login, token=token, connected_at=now().isoformat())
        self._write({**self.connections(), actor: connection})
        return connection

    def disconnect(self, actor: str) -> bool:
        connections = self.connections()
        if actor not in connections:
            return False
        del connections[actor]
        self._write(connections)
        return True

    def token_for(self, actor: str, fallback_actor: str = "local") -> str | None:
        connections = self.connections()
        for who in (actor, fallback_actor):
            if who in connections:
                return connections[who].token
        return self.env_token

    def tokens(self) -> list[str]:
        """Every token this machine holds: they are redacted wherever they would appear."""
        return [c.token for c in self.connections().values()] + ([self.env_token] if self.env_token else [])

    def require_token(self, actor: str, why: str) -> str:
        token = self.token_for(actor)
        if token is None:
            raise BlockedError("credential_needed", f"GitHub is not connected: {why} needs it.",
                               fix=CONNECT_FIX, integration="github")
        return token

    def repository(self, url: str) -> str | None:
        """`owner/name` when `url` is a repository on this GitHub, else None."""
        for base in (self.url, GITHUB_URL):
            prefix = base.rstrip("/") + "/"
            if url.startswith(prefix):
                name = url[len(prefix):].removesuffix("/").removesuffix(".git")
                return name if name.count("/") == 1 else None
        return None

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION, "User-Agent": "flowrun"}


async def whoami(github: GitHub, token: str) -> str:
    """The login a token belongs to. Raises UsageError when GitHub refuses it."""
    import httpx2

    async with httpx2.AsyncClient(timeout=20.0) as client:
        try:
            response = await client.get(f"{github.api_url}/user", headers=github.headers(token))
        except httpx2.HTTPError as exc:
            raise UsageError(f"could not reach GitHub at {github.api_url}: {exc}") from None
    if response.status_code == 401:
        raise UsageError("GitHub refused that token (401 Bad credentials): nothing was stored")
    if response.status_code != 200:
        raise UsageError(f"GitHub answered {response.status_code} to GET /user: nothing was stored")
    body: Any = response.json()
    return str(body.get("login", ""))


def check_token_text(token: str) -> str:
    """The pasted token, trimmed; one with inner whitespace or control characters is refused
    (it could only be a paste gone wrong, and it must never reach a header). Never echoes it."""
    token = token.strip()
    if not token:
        raise UsageError("no token given: nothing was stored")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise UsageError("the token has spaces or control characters in it (a paste gone wrong?): nothing was stored")
    return token


async def connect_github(github: GitHub, actor: str, token: str) -> Connection:
    """Check `token` against GitHub (`GET /user`), then store it for `actor` (0600). The CLI and
    the web both connect through here. Raises UsageError (nothing stored) when GitHub refuses it."""
    token = check_token_text(token)
    login = await whoami(github, token)
    return github.connect(actor, login, token)
