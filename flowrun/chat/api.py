"""The chat's JSON API (mounted by the web face beside the runs' API): create, list, read, post.

A posted message is answered `202 Accepted` once it is durably stored; the reply streams as the
chat's events (over `/ws`, `subscribe {chat_id, after_seq}`, or `GET .../events`).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from ..flows.chat import MAX_MESSAGE_CHARS
from ..flows.errors import StartRefused
from ..web.models import EventPage
from ..web.openapi import Call, Endpoint, Query
from .service import ChatService
from .views import ChatDetail, ChatList, ChatView, MessageView, chat_view, fold

MAX_EVENTS_PAGE = 1000


class CreateChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=200)


class PostMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description=f"the person's message (1 to {MAX_MESSAGE_CHARS} characters); a line starting "
                                  "with / is a command: /run FLOW k=v, /approve, /reject, /skip, /status, /cancel")


def chat_endpoints(service: Callable[[], ChatService | None], public_url: str) -> list[Endpoint]:
    def chats() -> ChatService:
        found = service()
        if found is None:
            raise StartRefused("Chats are still coming up; retry in 2 seconds.", code="warming_up",
                               retryable=True, retry_after=2.0)
        return found

    async def create_chat(call: Call) -> ChatView:
        body = call.body
        assert isinstance(body, CreateChatRequest)
        return chat_view(await chats().create(call.actor, title=body.title), public_url)

    async def list_chats(call: Call) -> ChatList:
        found = await chats().list_chats(call.actor, limit=call.query.get("limit", 50))
        return ChatList(chats=[chat_view(c, public_url) for c in found])

    async def get_chat(call: Call) -> ChatDetail:
        service = chats()
        chat = await service.get(call.actor, call.path["chat_id"])
        messages, runs = fold(await service.events(call.actor, chat.id))
        return ChatDetail(chat=chat_view(chat, public_url), messages=messages, runs=runs)

    async def post_message(call: Call) -> MessageView:
        body = call.body
        assert isinstance(body, PostMessageRequest)
        event = await chats().post(call.actor, call.path["chat_id"], body.text)
        messages, _ = fold([event])
        return messages[0]

    async def chat_events(call: Call) -> EventPage:
        after = call.query.get("after_seq", 0)
        limit = call.query.get("limit", MAX_EVENTS_PAGE)
        page = await chats().events(call.actor, call.path["chat_id"], after, limit + 1)
        shown = page[:limit]
        return EventPage(events=[e.model_dump(mode="json") for e in shown],
                         last_seq=shown[-1].seq if shown else after, has_more=len(page) > limit)

    errors = (401, 403, 404)
    return [
        Endpoint("POST", "/api/chats", create_chat, "Start a chat with the chat agent", ChatView,
                 body=CreateChatRequest, status=201, tag="chats"),
        Endpoint("GET", "/api/chats", list_chats, "Your chats, most recently active first", ChatList, tag="chats",
                 query=(Query("limit", "at most this many", "integer", minimum=1, maximum=200),)),
        Endpoint("GET", "/api/chats/{chat_id}", get_chat, "A chat: its conversation and the runs it started",
                 ChatDetail, tag="chats", errors=errors),
        Endpoint("POST", "/api/chats/{chat_id}/messages", post_message, "Send a message (the reply streams)",
                 MessageView, body=PostMessageRequest, status=202, tag="chats", errors=(400, 401, 403, 404),
                 description="Refusals: empty_message and message_too_long (400); a chat that is not yours is 404. "
                             "The reply arrives as the chat's events: subscribe {chat_id, after_seq} on /ws."),
        Endpoint("GET", "/api/chats/{chat_id}/events", chat_events, "A chat's stored events after a seq", EventPage,
                 tag="chats", errors=errors,
                 query=(Query("after_seq", "events after this seq", "integer", minimum=0),
                        Query("limit", "at most this many", "integer", minimum=1, maximum=MAX_EVENTS_PAGE))),
    ]
