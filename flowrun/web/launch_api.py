"""The JSON API for launch paths: plans and initiatives, schedules, notifications.

Same declarative `Endpoint`s as `api.py` (auth, Origin checks, typed errors, OpenAPI come with
them); the engine-side rules live in `runtime.records`, `runtime.triggers` and `runtime.notify`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..runtime.notify import Notification, list_notifications
from ..runtime.records import (
    RecordData,
    RecordKind,
    RecordStatus,
    create_record,
    get_record,
    list_records,
    update_record,
)
from ..runtime.triggers import ScheduleStatus, Triggers
from ..storage.base import RecordRow
from ..tools.face import EngineSlot
from .openapi import Call, Endpoint, Query


class RecordView(BaseModel):
    id: str
    kind: str
    title: str
    body: str
    repository: str | None
    status: str
    links: list[str]
    created_by: str
    updated_at: str


class RecordList(BaseModel):
    records: list[RecordView]


class RecordCreate(BaseModel):
    kind: RecordKind = "plan"
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=100_000)
    repository: str | None = Field(default=None, max_length=200, description="owner/name")
    status: RecordStatus = "draft"
    links: list[str] = Field(default_factory=list, max_length=50)


class RecordUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=100_000)
    repository: str | None = Field(default=None, max_length=200)
    status: RecordStatus | None = None
    links: list[str] | None = Field(default=None, max_length=50, description="replaces the links")
    add_links: list[str] = Field(default_factory=list, max_length=50)


class ScheduleList(BaseModel):
    schedules: list[ScheduleStatus]


class NotificationList(BaseModel):
    notifications: list[Notification]


def record_view(row: RecordRow) -> RecordView:
    data = RecordData.model_validate(row.data)
    return RecordView(id=row.id, kind=row.kind, title=row.title, body=row.body, repository=data.repository,
                      status=data.status, links=data.links, created_by=data.created_by, updated_at=data.updated_at)


def launch_endpoints(slot: EngineSlot) -> list[Endpoint]:
    async def plans(call: Call) -> RecordList:
        kind: Any = call.query.get("kind")
        return RecordList(records=[record_view(r) for r in await list_records(slot.get().deps.store, call.actor, kind)])

    async def create(call: Call) -> RecordView:
        body = call.body
        assert isinstance(body, RecordCreate)
        row = await create_record(slot.get().deps.store, call.actor, body.kind, body.title, body.body,
                                  repository=body.repository, status=body.status, links=body.links)
        return record_view(row)

    async def get(call: Call) -> RecordView:
        return record_view(await get_record(slot.get().deps.store, call.actor, call.path["record_id"]))

    async def update(call: Call) -> RecordView:
        body = call.body
        assert isinstance(body, RecordUpdate)
        row = await update_record(slot.get().deps.store, call.actor, call.path["record_id"], title=body.title,
                                  body=body.body, repository=body.repository, status=body.status,
                                  add_links=body.add_links, links=body.links)
        return record_view(row)

    async def schedules(call: Call) -> ScheduleList:
        return ScheduleList(schedules=await Triggers(slot.get()).statuses(call.actor))

    def toggle(action: Literal["pause", "resume"]) -> Any:
        async def handler(call: Call) -> ScheduleStatus:
            triggers = Triggers(slot.get())
            method = triggers.pause if action == "pause" else triggers.resume
            return await method(call.actor, call.path["flow_id"])

        return handler

    async def notifications(call: Call) -> NotificationList:
        return NotificationList(notifications=await list_notifications(
            slot.get(), call.actor.workspace, limit=call.query.get("limit", 50)))

    kind = Query("kind", "plan or initiative")
    return [
        Endpoint("GET", "/api/records", plans, "Plans and initiatives, newest first", RecordList, tag="records",
                 query=(kind,)),
        Endpoint("POST", "/api/records", create, "Create a plan or initiative", RecordView, body=RecordCreate,
                 status=201, tag="records", errors=(401, 403, 422)),
        Endpoint("GET", "/api/records/{record_id}", get, "A plan or initiative", RecordView, tag="records",
                 errors=(401, 403, 404)),
        Endpoint("POST", "/api/records/{record_id}", update, "Change a plan or initiative", RecordView,
                 body=RecordUpdate, tag="records", errors=(401, 403, 404, 422)),
        Endpoint("GET", "/api/schedules", schedules, "Flows on a schedule with their next fire times",
                 ScheduleList, tag="triggers"),
        Endpoint("POST", "/api/schedules/{flow_id}/pause", toggle("pause"), "Pause a Flow's schedule",
                 ScheduleStatus, tag="triggers", errors=(401, 403, 404)),
        Endpoint("POST", "/api/schedules/{flow_id}/resume", toggle("resume"),
                 "Resume a Flow's schedule (missed slots do not fire)", ScheduleStatus, tag="triggers",
                 errors=(401, 403, 404)),
        Endpoint("GET", "/api/notifications", notifications, "What runs told you, newest first",
                 NotificationList, tag="notifications",
                 query=(Query("limit", "at most this many", "integer", minimum=1, maximum=200),)),
    ]
