"""Who is asking the web face: a bearer token (programs) or a session cookie (browsers).

Programs send `Authorization: Bearer TOKEN` (the tokens `/mcp` uses, from `tools.auth`), or, on
the websocket, a first message `{"type": "auth", "token": ...}`. Browsers log in once through a
one-time link that `flowrun serve` prints (`/login?token=CODE`, as Jupyter does); it sets an
HttpOnly, SameSite=Strict cookie `flowrun_session` and redirects to the page asked for.

Login codes live in this process's memory (a restarted server prints a fresh link). Sessions are
kept as SHA-256 digests in `$FLOWRUN_HOME/web-sessions.json` (0600; see `sessions.py`), so they
survive a restart and a logout stays a logout; a session opened with a bearer token ends when
that token is no longer configured, and takes the token's current scopes. Origin is checked as `/mcp`
checks it: a request that names a foreign Origin is refused, and a browser request that changes
state must name an allowed one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..runtime.access import Actor
from ..tools.auth import TokenTable
from .errors import plain_error
from .sessions import SessionTable

log = logging.getLogger("flowrun.web")

SESSION_COOKIE = "flowrun_session"
LOGIN_PATH = "/login"
SESSION_TTL_S = 7 * 24 * 3600.0
LOGIN_TTL_S = 24 * 3600.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class _Grant:
    actor: Actor
    expires: float


@dataclass
class WebAuth:
    """Bearer tokens, one-time login codes and browser sessions for one app (sessions in memory
    only unless given a `SessionTable` with a path)."""

    tokens: TokenTable
    public_url: str
    session_ttl_s: float = SESSION_TTL_S
    sessions: SessionTable = field(default_factory=SessionTable)
    _codes: dict[str, _Grant] = field(default_factory=dict)

    # login links and sessions -------------------------------------------------------------------

    def issue_login(self, actor: Actor, ttl_s: float = LOGIN_TTL_S) -> str:
        """A one-time login code for `actor`; `login_url` wraps it in the link to print."""
        code = "frl_" + secrets.token_urlsafe(24)
        self._codes[_digest(code)] = _Grant(actor, time.monotonic() + ttl_s)
        return code

    def login_url(self, actor: Actor, next_path: str = "/") -> str:
        url = f"{self.public_url.rstrip('/')}{LOGIN_PATH}?token={self.issue_login(actor)}"
        return url if next_path == "/" else f"{url}&next={next_path}"

    def redeem(self, secret: str) -> tuple[Actor, str | None] | None:
        """The actor of a login code (used up now) or of a bearer token, with the token (None
        for a code); None if neither."""
        grant = self._codes.pop(_digest(secret), None)
        if grant is not None:
            return (grant.actor, None) if grant.expires > time.monotonic() else None
        actor = self.tokens.lookup(secret)
        return (actor, secret) if actor is not None else None

    def open_session(self, actor: Actor, token: str | None = None) -> str:
        """A session cookie for `actor`; with the bearer `token` it was opened with, the session
        lasts only as long as that token is configured. Writes the session table (blocking I/O:
        call it from a worker thread)."""
        self._prune()
        return self.sessions.open(actor, self.session_ttl_s, token)

    def end_session(self, cookie: str) -> None:
        """Blocking I/O, like `open_session`."""
        self.sessions.end(cookie)

    def session_actor(self, cookie: str) -> Actor | None:
        session = self.sessions.get(cookie)
        if session is None:
            return None
        if session.token is None:
            return session.actor
        return self.tokens.lookup_digest(session.token)  # gone with its token; its scopes as they are now

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, g in self._codes.items() if g.expires <= now]:
            del self._codes[key]

    # requests -----------------------------------------------------------------------------------

    def bearer_actor(self, conn: HTTPConnection) -> Actor | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.lookup(token.strip())

    def authenticate(self, conn: HTTPConnection) -> Actor | None:
        """The bearer token's actor, else the session cookie's, else None."""
        actor = self.bearer_actor(conn)
        if actor is not None:
            return actor
        cookie = conn.cookies.get(SESSION_COOKIE)
        return self.session_actor(cookie) if cookie else None

    def origin_allowed(self, origin: str | None) -> bool:
        """No Origin (a program) is fine; else it must be loopback or the public URL's origin."""
        if origin is None:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.hostname in LOOPBACK_HOSTS:
            return True
        public = urlsplit(self.public_url)
        return (parts.scheme, parts.netloc) == (public.scheme, public.netloc)

    def state_change_allowed(self, conn: HTTPConnection, method: str) -> bool:
        """Origin check for a request that changes state. A cookie-authenticated one must carry
        an allowed Origin (browsers always send it on POST): that closes the CSRF door."""
        origin = conn.headers.get("origin")
        if not self.origin_allowed(origin):
            return False
        if method in SAFE_METHODS or self.bearer_actor(conn) is not None:
            return True
        return origin is not None

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"


async def authenticate(conn: HTTPConnection) -> Actor | None:
    """The actor behind a request or websocket (bearer header or session cookie), or None.

    For the pages: the app built by `flowrun.server.create_app` keeps its `WebAuth` in
    `app.state.web_auth`.
    """
    auth: WebAuth = conn.app.state.web_auth
    return auth.authenticate(conn)


def state_change_allowed(conn: HTTPConnection) -> bool:
    """For the pages' forms: the API's Origin rule for this request (see
    `WebAuth.state_change_allowed`), with the app's `WebAuth` from `app.state.web_auth`."""
    auth: WebAuth = conn.app.state.web_auth
    return auth.state_change_allowed(conn, conn.scope.get("method", "GET"))


def _safe_next(value: str | None) -> str:
    """Only a local path: `/login?next=https://evil` must not become an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def login_routes(auth: WebAuth) -> list[BaseRoute]:
    async def login(request: Request) -> Response:
        secret = request.query_params.get("token")
        if not secret:
            return plain_error(401, "unauthenticated", "Open the login link that `flowrun serve` printed "
                               "(it looks like /login?token=...).")
        redeemed = auth.redeem(secret)
        if redeemed is None:
            log.info("refused a login with an unknown or used code")
            return plain_error(401, "unauthenticated", "This login link is not valid (it works once); "
                               "restart `flowrun serve` or ask it for a new one.")
        response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        cookie = await anyio.to_thread.run_sync(auth.open_session, *redeemed)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=int(auth.session_ttl_s), path="/",
                            httponly=True, samesite="strict", secure=auth.secure_cookies)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the code is in this URL
        return response

    async def logout(request: Request) -> Response:
        if not auth.state_change_allowed(request, request.method):
            return plain_error(403, "forbidden_origin", "This request's Origin is not allowed.")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await anyio.to_thread.run_sync(auth.end_session, cookie)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [Route(LOGIN_PATH, login, methods=["GET"]), Route("/logout", logout, methods=["POST"])]
