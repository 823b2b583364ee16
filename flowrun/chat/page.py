"""The chat page's server side: `/chats` (your chats, New chat), `/chats/{id}` (the conversation
with the Flow progress overlay of each run it started) and `/chats/{id}/live` (the conversation
rendered again, for the page to swap in). Markdown is rendered on the server, sanitized, with the
transcript's renderer; the page's script (`static/chat.js`) never builds markup from chat text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..flows.chat import MAX_MESSAGE_CHARS
from ..flows.errors import FlowrunError, NotFound, PermissionDenied, StartRefused
from ..runtime.access import Actor
from ..web.pages import SECURITY_HEADERS, json_response
from ..web.render import make_env
from .service import ChatService
from .views import chat_view, fold

Authenticate = Callable[[HTTPConnection], Awaitable[Actor | None]]
WHO = {"user": "you", "assistant": "agent", "note": "flowrun"}


class ChatPages:
    def __init__(self, service: Callable[[], ChatService | None], authenticate: Authenticate, public_url: str) -> None:
        self.service = service
        self.authenticate = authenticate
        self.public_url = public_url
        self.env = make_env()

    def _chats(self) -> ChatService:
        found = self.service()
        if found is None:
            raise StartRefused("Chats are still coming up; retry in 2 seconds.", code="warming_up", retryable=True)
        return found

    def html(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store", **SECURITY_HEADERS})

    def _signin(self) -> Response:
        return self.html("signin.html", status=401, title="Sign in", page="signin", actor=None, module=None)

    def _error(self, actor: Actor, exc: FlowrunError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 503
        heading = {404: "Not found", 403: "Not allowed", 503: "Not available yet"}[status]
        return self.html("error.html", status=status, title=heading, page="error", actor=actor, module=None,
                         heading=heading, message=exc.message)

    async def _context(self, actor: Actor, chat_id: str) -> dict[str, Any]:
        chats = self._chats()
        chat = await chats.get(actor, chat_id)
        events = await chats.events(actor, chat_id)
        messages, runs = fold(events)
        return {"chat": chat_view(chat, self.public_url), "messages": messages, "runs": runs, "who": WHO,
                "seq": events[-1].seq if events else 0, "max_chars": MAX_MESSAGE_CHARS}

    async def list_page(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self._signin()
        try:
            chats = await self._chats().list_chats(actor, limit=200)
        except FlowrunError as exc:
            return self._error(actor, exc)
        return self.html("chats.html", title="Chats", page="chats", actor=actor, module=None, chats=chats)

    async def create(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self._signin()
        try:
            chat = await self._chats().create(actor)
        except FlowrunError as exc:
            return self._error(actor, exc)
        return RedirectResponse(f"/chats/{chat.id}", status_code=303, headers=SECURITY_HEADERS)

    async def chat(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self._signin()
        try:
            ctx = await self._context(actor, request.path_params["chat_id"])
        except FlowrunError as exc:
            return self._error(actor, exc)
        return self.html("chat.html", title=ctx["chat"].title, page="chats", actor=actor, module="chat.js", **ctx)

    async def live(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return json_response({"code": "unauthenticated", "message": "Sign in with the login link."}, 401)
        try:
            ctx = await self._context(actor, request.path_params["chat_id"])
        except FlowrunError as exc:
            status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 503
            return json_response({"code": exc.code, "message": exc.message}, status)
        html = self.env.get_template("chat_messages.html").render(**ctx)
        return json_response({"seq": ctx["seq"], "regions": [{"id": "chat-messages", "html": html}],
                              "runs": [r.run_id for r in ctx["runs"]]})


def chat_page_routes(service: Callable[[], ChatService | None], authenticate: Authenticate,
                     public_url: str) -> list[BaseRoute]:
    pages = ChatPages(service, authenticate, public_url)
    return [
        Route("/chats", pages.list_page, methods=["GET"]),
        Route("/chats", pages.create, methods=["POST"]),
        Route("/chats/{chat_id}", pages.chat, methods=["GET"]),
        Route("/chats/{chat_id}/live", pages.live, methods=["GET"]),
    ]

