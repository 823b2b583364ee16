"""Who is asking the web face: a bearer token (programs) or a session cookie (browsers).

Programs send `Authorization: Bearer TOKEN` (the tokens `/mcp` uses, from `tools.auth`), or, on
the websocket, a first message `{"type": "auth", "token": ...}`. Browsers log in once through a
one-time link that `flowrun serve` prints (`/login?token=CODE`, as Jupyter does); it sets an
HttpOnly, SameSite=Strict cookie `flowrun_session` and redirects to the page asked for.

Codes and sessions live in this process's memory and are kept as SHA-256 digests: a restarted
server prints a fresh link, and a stolen database holds no session. Origin is checked as `/mcp`
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

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..runtime.access import Actor
from ..tools.auth import TokenTable
from .errors import plain_error

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
    """Bearer tokens, one-time login codes and browser sessions for one app."""

    tokens: TokenTable
    public_url: str
    session_ttl_s: float = SESSION_TTL_S
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _sessions: dict[str, _Grant] = field(default_factory=dict)

    # login links and sessions -------------------------------------------------------------------

    def issue_login(self, actor: Actor, ttl_s: float = LOGIN_TTL_S) -> str:
        """A one-time login code for `actor`; `login_url` wraps it in the link to print."""
        code = "frl_" + secrets.token_urlsafe(24)
        self._codes[_digest(code)] = _Grant(actor, time.monotonic() + ttl_s)
        return code

    def login_url(self, actor: Actor, next_path: str = "/") -> str:
        url = f"{self.public_url.rstrip('/')}{LOGIN_PATH}?token={self.issue_login(actor)}"
        return url if next_path == "/" else f"{url}&next={next_path}"

    def redeem(self, secret: str) -> Actor | None:
        """The actor of a login code (used up now) or of a bearer token; None if neither."""
        grant = self._codes.pop(_digest(secret), None)
        if grant is not None:
            return grant.actor if grant.expires > time.monotonic() else None
        return self.tokens.lookup(secret)

    def open_session(self, actor: Actor) -> str:
        cookie = secrets.token_urlsafe(32)
        self._sessions[_digest(cookie)] = _Grant(actor, time.monotonic() + self.session_ttl_s)
        self._prune()
        return cookie

    def end_session(self, cookie: str) -> None:
        self._sessions.pop(_digest(cookie), None)

    def session_actor(self, cookie: str) -> Actor | None:
        grant = self._sessions.get(_digest(cookie))
        if grant is None or grant.expires <= time.monotonic():
            return None
        return grant.actor

    def _prune(self) -> None:
        now = time.monotonic()
        for table in (self._codes, self._sessions):
            for key in [k for k, g in table.items() if g.expires <= now]:
                del table[key]

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
        actor = auth.redeem(secret)
        if actor is None:
            log.info("refused a login with an unknown or used code")
            return plain_error(401, "unauthenticated", "This login link is not valid (it works once); "
                               "restart `flowrun serve` or ask it for a new one.")
        response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        response.set_cookie(SESSION_COOKIE, auth.open_session(actor), max_age=int(auth.session_ttl_s), path="/",
                            httponly=True, samesite="strict", secure=auth.secure_cookies)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the code is in this URL
        return response

    async def logout(request: Request) -> Response:
        if not auth.state_change_allowed(request, request.method):
            return plain_error(403, "forbidden_origin", "This request's Origin is not allowed.")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            auth.end_session(cookie)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [Route(LOGIN_PATH, login, methods=["GET"]), Route("/logout", logout, methods=["POST"])]
