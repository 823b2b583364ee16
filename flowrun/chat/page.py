"""The chat page's server side: `/chats` (your chats, New chat), `/chats/{id}` (the conversation
with the Flow progress overlay of each run it started) and `/chats/{id}/live` (the conversation
rendered again, for the page to swap in). Markdown is rendered on the server, sanitized, with the
transcript's renderer; the page's script (`static/chat.js`) never builds markup from chat text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..flows.chat import MAX_MESSAGE_CHARS
from ..flows.errors import FlowrunError, StartRefused
from ..runtime.access import Actor
from ..web.auth import state_change_allowed
from ..web.pagebase import (
    SECURITY_HEADERS,
    UNAUTHENTICATED,
    Authenticate,
    PageBase,
    json_error,
    json_response,
)
from .service import ChatService
from .views import chat_view, fold

WHO = {"user": "you", "assistant": "agent", "note": "flowrun"}


class ChatPages(PageBase):
    def __init__(self, service: Callable[[], ChatService | None], authenticate: Authenticate, public_url: str,
                 may_change: Callable[[HTTPConnection], bool]) -> None:
        super().__init__(authenticate)
        self.service = service
        self.public_url = public_url
        self.may_change = may_change

    def _chats(self) -> ChatService:
        found = self.service()
        if found is None:
            raise StartRefused("Chats are still coming up; retry in 2 seconds.", code="warming_up", retryable=True)
        return found

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
            return self.signin()
        try:
            chats = await self._chats().list_chats(actor, limit=200)
        except FlowrunError as exc:
            return self.error(actor, exc)
        return self.html("chats.html", title="Chats", page="chats", actor=actor, module=None, chats=chats)

    async def create(self, request: Request) -> Response:
        actor = await self.poster(request, self.may_change)  # New chat is a form post: the API's Origin rule
        if isinstance(actor, Response):
            return actor
        try:
            chat = await self._chats().create(actor)
        except FlowrunError as exc:
            return self.error(actor, exc)
        return RedirectResponse(f"/chats/{chat.id}", status_code=303, headers=SECURITY_HEADERS)

    async def chat(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            ctx = await self._context(actor, request.path_params["chat_id"])
        except FlowrunError as exc:
            return self.error(actor, exc)
        return self.html("chat.html", title=ctx["chat"].title, page="chats", actor=actor, module="chat.js", **ctx)

    async def live(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return json_response(UNAUTHENTICATED, 401)
        try:
            ctx = await self._context(actor, request.path_params["chat_id"])
        except FlowrunError as exc:
            return json_error(exc)
        html = self.part("chat_messages.html", **ctx)
        return json_response({"seq": ctx["seq"], "regions": [{"id": "chat-messages", "html": html}],
                              "runs": [r.run_id for r in ctx["runs"]]})


def chat_page_routes(service: Callable[[], ChatService | None], authenticate: Authenticate,
                     public_url: str, may_change: Callable[[HTTPConnection], bool] = state_change_allowed,
                     ) -> list[BaseRoute]:
    """`may_change` says whether a form post may change state (the API's Origin rule)."""
    pages = ChatPages(service, authenticate, public_url, may_change)
    return [
        Route("/chats", pages.list_page, methods=["GET"]),
        Route("/chats", pages.create, methods=["POST"]),
        Route("/chats/{chat_id}", pages.chat, methods=["GET"]),
        Route("/chats/{chat_id}/live", pages.live, methods=["GET"]),
    ]

