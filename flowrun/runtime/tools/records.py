"""`save_record`: a step writes a plan or an initiative; it becomes the step's artifact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from ...flows.errors import FlowrunError
from ...storage.base import Store
from ..access import Actor
from ..records import create_record, update_record
from .base import ToolContext, ToolOutput


@dataclass(frozen=True)
class RecordAccess:
    """What the tool needs, given by the step: the store, and who the run acts for."""

    store: Store
    actor: Actor


class SaveRecordInput(BaseModel):
    kind: Literal["plan", "initiative"] = "plan"
    title: str = Field(description="A short title.")
    body: str = Field(default="", description="The plan or initiative itself, in Markdown.")
    id: str | None = Field(default=None, description="Update this record (e.g. the run's own plan) instead of creating one.")
    status: Literal["draft", "active", "done", "archived"] | None = None


class SaveRecord:
    name: ClassVar[str] = "save_record"
    description: ClassVar[str] = (
        "Create a plan or initiative (or update one, given its id) that people can open from the run; "
        "it is recorded as this step's View Plan / View Initiative artifact."
    )
    input_model: ClassVar[type[BaseModel]] = SaveRecordInput

    async def preview(self, ctx: ToolContext, args: SaveRecordInput) -> dict[str, Any]:
        return {"kind": args.kind, "title": args.title, "id": args.id}

    async def run(self, ctx: ToolContext, args: SaveRecordInput) -> ToolOutput:
        access = ctx.extras.get("records")
        if not isinstance(access, RecordAccess):
            return ToolOutput("records are not available in this step", is_error=True)
        try:
            if args.id:
                record = await update_record(access.store, access.actor, args.id, title=args.title,
                                             body=args.body or None, status=args.status)
            else:
                record = await create_record(access.store, access.actor, args.kind, args.title, args.body,
                                             status=args.status or "draft")
        except FlowrunError as exc:
            return ToolOutput(exc.message, is_error=True)
        verb = "updated" if args.id else "created"
        return ToolOutput(
            f"{record.kind} {verb}: {record.id} ({record.title})",
            data={"record": record.id, "artifact": {"kind": record.kind, "ref": record.id,
                                                    "label": f"{record.kind.title()}: {record.title}"}},
        )
