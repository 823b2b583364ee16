"""Command handlers. Each opens the engine in this process, does one thing, and returns an exit
code: 0 when the run ended where asked (completed, or parked waiting for you), 1 otherwise."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from ..flows.enums import RunStatus
from ..flows.errors import UsageError
from ..flows.run import Decision, Launch, Run
from ..runtime.access import LOCAL_OPERATOR, Actor
from ..runtime.engine import Engine
from .pageurl import announce
from .safe import markup, text

console = Console(highlight=False)
OK_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.PAUSED})


def _settings() -> Any:
    from ..config import Settings

    return Settings.from_env()


def _engine(settings: Any) -> Any:
    from ..config import open_engine

    return open_engine(settings)


def _asker(args: argparse.Namespace) -> Any:
    from .follow import Asker

    return Asker(console, auto_approve=bool(getattr(args, "yes", False)), interactive=sys.stdin.isatty())


def _url(settings: Any, run: Run) -> str:
    return f"{settings.public_url}/runs/{run.id}"


async def _follow_and_report(engine: Engine, actor: Actor, run: Run, args: argparse.Namespace, settings: Any,
                             after_seq: int = 0) -> int:
    from .follow import follow, show

    run = await follow(engine, actor, run.id, console, _asker(args), after_seq=after_seq,
                       verbose=not getattr(args, "quiet", False))
    console.print()
    show(console, run, _url(settings, run))
    return 0 if run.status in OK_STATUSES else 1


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"parameters are KEY=VALUE, got {pair!r}")
        params[key.strip()] = value
    return params


async def demo(args: argparse.Namespace) -> int:
    from ..config import ensure_demo_remote

    settings = _settings()
    remote = ensure_demo_remote(settings.home)
    console.rule("[bold]flowrun demo: the Full SDLC Flow, offline")
    console.print(f"Scripted model, local sandbox, sample repository {remote}. No key, no network.\n", style="dim")
    async with _engine(settings) as engine:
        run = await engine.start_run(
            LOCAL_OPERATOR, "full-sdlc", {}, sandbox_profile=args.profile, execution_mode=args.mode,
            checkpoint_mode=args.checkpoints,
        )
        announce(console, settings.public_url, run.id, open_browser=bool(getattr(args, "open", False)))
        code = await _follow_and_report(engine, LOCAL_OPERATOR, run, args, settings)
    if code == 0:
        import anyio

        log = await anyio.run_process(["git", "--git-dir", str(remote), "log", "--oneline", "-3", "flowrun/csv-export"],
                                      check=False)
        if log.returncode == 0:
            console.print(f"\nThe pull request branch in {remote}:", style="bold")
            console.print(log.stdout.decode().rstrip())
    return code


async def flows(args: argparse.Namespace) -> int:
    settings = _settings()
    from ..config import load_catalog

    catalog = load_catalog(settings)
    for flow in sorted(catalog.flows.values(), key=lambda f: f.id):
        console.print(f"[bold]{markup(flow.id)}[/]  {markup(flow.name)} — {markup(flow.description)}")
        for i, step in enumerate(flow.steps):
            mark = f"  ⏸ {step.checkpoint.message}" if step.checkpoint else ""
            console.print(text(f"   {i + 1}. {step.name} /{step.skill}{mark}", "dim"))
        for p in flow.parameters:
            req = "required" if p.required else "optional"
            default = f", default {p.default!r}" if p.default is not None else ""
            console.print(text(f"   -p {p.name}=<{p.type}>  ({req}{default}) {p.description}"))
    return 0


async def run(args: argparse.Namespace) -> int:
    from ..config import ensure_demo_remote

    settings = _settings()
    ensure_demo_remote(settings.home)  # the bundled Flow's sample repository (once; then a no-op)
    launch = Launch(kind="record", ref=args.record) if args.record else Launch()
    async with _engine(settings) as engine:
        started = await engine.start_run(
            LOCAL_OPERATOR, args.flow, _parse_params(args.param), sandbox_profile=args.profile,
            execution_mode=args.mode, checkpoint_mode=args.checkpoints, launch=launch,
        )
        console.print(text(f"started {started.id} ({started.flow.name})"))
        if args.open:
            announce(console, settings.public_url, started.id, open_browser=True)
        return await _follow_and_report(engine, LOCAL_OPERATOR, started, args, settings)


async def runs(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from .render import status_badge

    settings = _settings()
    async with _engine(settings) as engine:
        found = await engine.list_runs(LOCAL_OPERATOR, status=[RunStatus(s) for s in args.status or []],
                                       flow=args.flow, limit=args.limit)
    table = Table(box=None, header_style="bold")
    table.add_column("run", no_wrap=True, min_width=30)  # copied into other commands: never cut
    for column in ("flow", "status", "step", "started", "by", "turns", "cost"):
        table.add_column(column)
    for r in found:
        current = r.current_step
        table.add_row(text(r.id), text(r.flow.id), status_badge(r.status), text(current.name if current else ""),
                      Text(f"{r.created_at:%Y-%m-%d %H:%M}"), text(r.started_by), Text(str(r.usage.turns)),
                      Text(f"${r.usage.cost_usd:.4f}"))
    console.print(table if found else "no runs")
    return 0


async def show_run(args: argparse.Namespace) -> int:
    from .follow import show
    from .render import EventPrinter

    settings = _settings()
    async with _engine(settings) as engine:
        found = await engine.get_run(LOCAL_OPERATOR, args.run_id)
        if args.json:
            console.print_json(found.model_dump_json())
            return 0
        show(console, found, _url(settings, found))
        if args.outputs:
            from .render import step_outputs

            console.print(step_outputs(found))
        if args.transcript:
            printer = EventPrinter(console)
            for event in await engine.events(LOCAL_OPERATOR, found.id):
                printer(event)
            printer.flush()
    return 0


async def watch(args: argparse.Namespace) -> int:
    if args.server:
        from .remote import watch_remote

        return await watch_remote(console, args.server, args.run_id, args.token, from_start=args.from_start)
    from .follow import Asker, follow, show

    settings = _settings()
    async with _engine(settings) as engine:
        found = await engine.get_run(LOCAL_OPERATOR, args.run_id)
        show(console, found, _url(settings, found))
        if found.status.finished and found.status != RunStatus.RUNNING:
            return 0 if found.status in OK_STATUSES else 1
        after = 0 if args.from_start else found.last_seq
        result = await follow(engine, LOCAL_OPERATOR, found.id, console, Asker(console), after_seq=after)
        show(console, result, _url(settings, result))
        return 0 if result.status in OK_STATUSES else 1


async def decide(args: argparse.Namespace) -> int:
    settings = _settings()
    async with _engine(settings) as engine:
        before = await engine.get_run(LOCAL_OPERATOR, args.run_id)
        after = await engine.decide(LOCAL_OPERATOR, args.run_id, args.decision, comment=args.comment,
                                    step=args.step, decision_id=args.decision_id)
        repeated = args.decision_id is not None and (
            _decided_under(before, args.decision_id) is not None or _decided_under(after, args.decision_id) is None)
        if repeated:
            # the engine answered with the first decision under this id: say that, not "recorded"
            first = _decided_under(after, args.decision_id) or _decided_under(before, args.decision_id)
            what = f"{first.kind.value} by {first.actor} at {first.at:%Y-%m-%d %H:%M:%S}" if first else "a decision"
            console.print(text(f"decision id {args.decision_id} was already used ({what}); that first answer "
                               f"stands and nothing new was recorded. The run is {after.status.value}."))
        else:
            console.print(f"{args.decision} recorded on {after.id}; the run is {after.status.value}")
        if after.status != RunStatus.RUNNING:
            from .follow import show

            show(console, after, _url(settings, after))
            return 0
        return await _follow_and_report(engine, LOCAL_OPERATOR, after, args, settings, after_seq=before.last_seq)


def _decided_under(run: Run, decision_id: str | None) -> Decision | None:
    """The decision the run carries under `decision_id`, if any (None: every decision without one)."""
    for step in run.steps:
        if step.decision is not None and step.decision.decision_id == decision_id:
            return step.decision
    return None


async def resume(args: argparse.Namespace) -> int:
    settings = _settings()
    async with _engine(settings) as engine:
        before = await engine.get_run(LOCAL_OPERATOR, args.run_id)
        after = await engine.resume(LOCAL_OPERATOR, args.run_id)
        console.print(f"resumed {after.id}")
        return await _follow_and_report(engine, LOCAL_OPERATOR, after, args, settings, after_seq=before.last_seq)


async def retry(args: argparse.Namespace) -> int:
    settings = _settings()
    async with _engine(settings) as engine:
        before = await engine.get_run(LOCAL_OPERATOR, args.run_id)
        after = await engine.retry(LOCAL_OPERATOR, args.run_id, clone=args.clone)
        if after.id != before.id:
            console.print(f"retrying {before.id} as {after.id} (retry chain recorded)")
        else:
            console.print(f"retrying {after.id}")
        after_seq = before.last_seq if after.id == before.id else 0
        return await _follow_and_report(engine, LOCAL_OPERATOR, after, args, settings, after_seq=after_seq)


async def cancel(args: argparse.Namespace) -> int:
    settings = _settings()
    async with _engine(settings) as engine:
        after = await engine.cancel(LOCAL_OPERATOR, args.run_id)
        console.print(f"cancelled {after.id}")
    return 0


async def health(args: argparse.Namespace) -> int:
    settings = _settings()
    async with _engine(settings) as engine:
        if args.resolve:
            event = await engine.resolve_health_event(LOCAL_OPERATOR, args.resolve)
            console.print(text(f"resolved {event.id}; resume the run with: flowrun resume {event.data.get('run_id')}"))
            return 0
        events = await engine.health_events(LOCAL_OPERATOR, open_only=not args.all)
    if not events:
        console.print("no open health events" if not args.all else "no health events")
    for event in events:
        data = event.data
        console.print(f"[bold]{markup(event.id)}[/] "
                      + markup(f"({data.get('status')}) run {data.get('run_id')} profile {data.get('profile')}"))
        console.print(text(f"  {event.title}\n  fix: {event.body}", "dim"))
    return 0
