"""`flowrun plans`: plans and initiatives, the records a run can be launched from."""

from __future__ import annotations

import argparse
import sys

from ..runtime.access import LOCAL_OPERATOR
from ..runtime.records import RecordData, create_record, get_record, list_records, update_record
from ..storage.base import RecordRow
from .commands import _engine, _settings, console
from .safe import markup as escape  # markup escaped, control characters shown
from .safe import text


def _line(record: RecordRow) -> None:
    data = RecordData.model_validate(record.data)
    repo = f"  {escape(data.repository)}" if data.repository else ""
    console.print(f"[bold]{record.id}[/]  {record.kind}  {data.status}  {escape(record.title)}[dim]{repo}[/]")


def _body(args: argparse.Namespace) -> str | None:
    if getattr(args, "body_file", None):
        return str(sys.stdin.read() if args.body_file == "-" else open(args.body_file, encoding="utf-8").read())
    return getattr(args, "body", None)


async def plans(args: argparse.Namespace) -> int:
    async with _engine(_settings()) as engine:
        store = engine.deps.store
        if args.action == "add":
            record = await create_record(store, LOCAL_OPERATOR, args.kind, args.title, _body(args) or "",
                                         repository=args.repository, status=args.status or "draft")
            _line(record)
            console.print(f"launch a Flow from it: flowrun run FLOW --record {record.id}", style="dim")
        elif args.action == "show":
            record = await get_record(store, LOCAL_OPERATOR, args.id)
            _line(record)
            data = RecordData.model_validate(record.data)
            for link in data.links:
                console.print(f"  link  {escape(link)}", style="dim")
            console.print(text(record.body))
        elif args.action == "update":
            record = await update_record(store, LOCAL_OPERATOR, args.id, title=args.title, body=_body(args),
                                         repository=args.repository, status=args.status, add_links=args.link or [])
            _line(record)
        else:
            found = await list_records(store, LOCAL_OPERATOR, args.kind if args.kind_given else None)
            if not found:
                console.print("no plans or initiatives yet: flowrun plans add --title \"...\"")
            for record in found:
                _line(record)
    return 0
