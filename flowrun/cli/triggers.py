"""`flowrun schedules`: the Flows that run on a schedule, their next fire times, pause and resume."""

from __future__ import annotations

import argparse

from ..flows.errors import UsageError
from ..runtime.access import LOCAL_OPERATOR
from ..runtime.triggers import ScheduleStatus, Triggers
from .commands import _engine, _settings, console
from .safe import markup as escape  # markup escaped, control characters shown


def _print(status: ScheduleStatus) -> None:
    state = "[yellow]paused[/]" if status.paused else "[green]active[/]"
    console.print(f"[bold]{escape(status.flow_id)}[/]  {escape(status.cron)} ({escape(status.timezone)})  {state}")
    for at in status.next_fires:
        console.print(f"  next  {at.isoformat(timespec='minutes')}", style="dim")
    for claim in status.recent:
        what = claim.data.get("run_id") or claim.data.get("message", "")
        console.print(f"  fired {escape(str(claim.data.get('slot', '')))}  {claim.status}  {escape(str(what))}",
                      style="dim")


async def schedules(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.flow:
        raise UsageError(f"flowrun schedules {args.action} needs the Flow: flowrun schedules {args.action} FLOW")
    async with _engine(_settings()) as engine:
        triggers = Triggers(engine)
        if args.action == "pause":
            _print(await triggers.pause(LOCAL_OPERATOR, args.flow))
        elif args.action == "resume":
            _print(await triggers.resume(LOCAL_OPERATOR, args.flow))
        else:
            found = await triggers.statuses(LOCAL_OPERATOR)
            if not found:
                console.print("no Flow has a schedule (add triggers.schedule to a Flow's YAML)")
            for status in found:
                _print(status)
    return 0


async def notifications(args: argparse.Namespace) -> int:
    from ..runtime.notify import list_notifications

    async with _engine(_settings()) as engine:
        notes = await list_notifications(engine, LOCAL_OPERATOR.workspace, limit=args.limit)
    if not notes:
        console.print("no notifications yet (flowrun serve records them as runs wait, block, fail or complete)")
    for note in notes:
        delivery = {None: "", True: "  delivered", False: f"  not delivered: {note.error}"}[note.delivered]
        console.print(f"{note.at:%Y-%m-%d %H:%M}  {escape(note.title)}  [dim]{note.run_id}{escape(delivery)}[/]")
        console.print(f"  {escape(note.message)}", style="dim")
    return 0
