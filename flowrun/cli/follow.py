"""Following a run live in the terminal, and asking at its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from rich.console import Console
from rich.live import Live
from rich.prompt import Prompt

from ..flows.enums import DecisionKind, RunStatus
from ..flows.errors import FlowrunError
from ..flows.events import RunStatusChanged
from ..flows.run import Run
from ..runtime.access import Actor
from ..runtime.engine import Engine
from .render import EventPrinter, checkpoint_panel, summary, timeline
from .safe import text

PARKED = frozenset(s for s in RunStatus if s.finished)


@dataclass
class Asker:
    """How checkpoints are answered: by a person at the prompt, automatically (`--yes`), or not
    at all (the command returns and says how to decide later)."""

    console: Console
    auto_approve: bool = False
    interactive: bool = False

    async def ask(self, run: Run) -> tuple[DecisionKind, str] | None:
        if self.auto_approve:
            return DecisionKind.APPROVE, "Approved with --yes."
        if not self.interactive:
            return None

        def prompt() -> tuple[DecisionKind, str]:
            choice = Prompt.ask(
                "[bold]Approve[/], [bold]reject[/] or [bold]skip[/]?", choices=["approve", "reject", "skip", "a", "r", "s"],
                default="approve", console=self.console,
            )
            kind = {"a": "approve", "r": "reject", "s": "skip"}.get(choice, choice)
            comment = Prompt.ask("Comment (optional)", default="", console=self.console, show_default=False)
            return DecisionKind(kind), comment

        return await anyio.to_thread.run_sync(prompt)


class _LiveTimeline:
    """In a terminal, the timeline stays at the bottom and updates while the transcript scrolls
    above it; elsewhere (pipes, CI) nothing is drawn but the feed."""

    def __init__(self, console: Console) -> None:
        self.live = Live(console=console, refresh_per_second=8, transient=True) if console.is_terminal else None

    def show(self, run: Run) -> None:
        if self.live is not None:
            self.live.update(timeline(run))
            if not self.live.is_started:
                self.live.start()

    def stop(self) -> None:
        if self.live is not None and self.live.is_started:
            self.live.stop()


LIVE_UPDATES = frozenset({"run_status", "step_status", "usage", "decision"})


async def follow(engine: Engine, actor: Actor, run_id: str, console: Console, asker: Asker,
                 *, after_seq: int = 0, verbose: bool = True) -> Run:
    """Print the run's events from `after_seq` until it parks; answer checkpoints via `asker`.

    Raises:
        StorageError: this process stopped driving the run because the store failed (a full
            disk): the run cannot park in the store, so following it would never end.
    """
    halted: FlowrunError | None = None
    result: Run | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal halted
            halted = await engine.wait_halted(run_id)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        result = await _follow(engine, actor, run_id, console, asker, after_seq=after_seq, verbose=verbose)
        tg.cancel_scope.cancel()
    if halted is not None:
        raise halted
    assert result is not None
    return result


async def _follow(engine: Engine, actor: Actor, run_id: str, console: Console, asker: Asker,
                  *, after_seq: int, verbose: bool) -> Run:
    printer = EventPrinter(console, verbose=verbose)
    live = _LiveTimeline(console)
    try:
        async for event in engine.subscribe(actor, run_id, after_seq):
            printer(event)
            data = event.data
            if data.type in LIVE_UPDATES:
                live.show(await engine.get_run(actor, run_id))
            if not (isinstance(data, RunStatusChanged) and data.status in PARKED):
                continue
            printer.flush()
            run = await engine.get_run(actor, run_id)
            if run.status not in PARKED:
                continue  # it has moved on since; keep reading
            if run.status != RunStatus.PAUSED:
                await engine.idle()
                return await engine.get_run(actor, run_id)
            live.stop()
            if live.live is not None:
                console.print(timeline(run))
            console.print(checkpoint_panel(run))
            answer = await asker.ask(run)
            if answer is None:
                console.print(f"Decide with: flowrun approve|reject|skip {run.id} [--comment TEXT]", style="dim")
                return run
            kind, comment = answer
            try:
                await engine.decide(actor, run.id, kind, comment=comment,
                                    step=run.checkpoint.step if run.checkpoint else None, expected_version=run.version)
            except FlowrunError as exc:
                console.print(text(exc.message, "red"))
                return await engine.get_run(actor, run_id)
    finally:
        live.stop()
    raise AssertionError("subscription ended")  # pragma: no cover


def show(console: Console, run: Run, url: str | None = None) -> None:
    console.print(summary(run, url))
    console.print(timeline(run))
