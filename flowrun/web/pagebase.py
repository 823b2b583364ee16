"""What every server-rendered page shares: the security headers, HTML and JSON responses that
carry them, the sign-in page, and how a refusal from the engine becomes a page or a JSON error.

The Sessions/Flows/run pages (`pages.py`), plans and initiatives (`recordpages.py`) and the chat
pages (`flowrun.chat.page`) all build on `PageBase`, so a page looks, refuses and is protected
the same way wherever it lives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..flows.enums import Scope as AccessScope
from ..flows.errors import FlowrunError, NotFound, ParameterError, PermissionDenied
from ..runtime.access import Actor
from .render import make_env

Authenticate = Callable[[HTTPConnection], Awaitable[Actor | None]]
StateCheck = Callable[[HTTPConnection], bool]
"""May this request change state? The API's Origin rule (`WebAuth.state_change_allowed`)."""
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
UNAUTHENTICATED = {"code": "unauthenticated", "message": "Sign in with the login link."}
HEADINGS = {400: "Not accepted", 404: "Not found", 403: "Not allowed", 503: "Not available yet"}


class SecureHeaders:
    """Adds the security headers to every HTTP response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secure)


def json_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store", **SECURITY_HEADERS})


def error_status(exc: FlowrunError) -> int:
    """404 for what does not exist (or is not yours), 403 for a missing scope, 400 for bad input,
    503 for everything else a page meets (the engine or chats still coming up)."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    return 400 if isinstance(exc, ParameterError) else 503


def json_error(exc: FlowrunError) -> JSONResponse:
    return json_response({"code": exc.code, "message": exc.message}, error_status(exc))


class PageBase:
    """Rendering and refusals for a set of pages; subclasses add the handlers."""

    def __init__(self, authenticate: Authenticate) -> None:
        self.authenticate = authenticate
        self.env = make_env()

    def html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store", **SECURITY_HEADERS})

    def part(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def signin(self) -> Response:
        return self.html("signin.html", status=401, title="Sign in", page="signin", actor=None, module=None)

    def error(self, actor: Actor, exc: FlowrunError) -> Response:
        status = error_status(exc)
        heading = HEADINGS[status]
        return self.html("error.html", status=status, title=heading, page="error", actor=actor, module=None,
                         heading=heading, message=exc.message)

    async def poster(self, request: HTTPConnection, may_change: StateCheck, scope: AccessScope | None = None,
                     doing: str = "") -> Actor | Response:
        """Who posts a form that changes state, or the page that refuses it, in this order:
        nobody signed in gets the sign-in page (401); a foreign Origin, 403 before anything is
        read or changed (`foreign_origin`); without `scope` (to be `doing` something), the
        error page (403)."""
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        if not may_change(request):
            return self.foreign_origin(actor)
        if scope is not None:
            try:
                actor.require(scope, doing)
            except FlowrunError as exc:
                return self.error(actor, exc)
        return actor

    def foreign_origin(self, actor: Actor) -> Response:
        """A form post whose Origin is not this site's (or missing, with a cookie): refused."""
        return self.refused(actor, 403, "Not allowed", "This form was not sent from this site (its Origin is not "
                            "allowed), so nothing was changed. Open the page again and send it from there.")

    def refused(self, actor: Actor, status: int, heading: str, message: str) -> Response:
        """A page that says why the request was not done (a foreign Origin, say)."""
        return self.html("error.html", status=status, title=heading, page="error", actor=actor, module=None,
                         heading=heading, message=message)
