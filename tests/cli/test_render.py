"""The terminal feed: streamed deltas of one block are joined and printed whole."""

from __future__ import annotations

from rich.console import Console

from flowrun.cli.render import EventPrinter
from flowrun.flows.enums import TranscriptKind
from flowrun.flows.events import Event, TranscriptEntry


def entry(seq: int, kind: TranscriptKind, text: str, stream: str | None = None) -> Event:
    return Event(run_id="run_x", seq=seq, data=TranscriptEntry(kind=kind, step=0, text=text, stream=stream))


def test_deltas_of_a_block_are_joined_and_blocks_stay_apart() -> None:
    console = Console(record=True, width=200)
    printer = EventPrinter(console)
    for event in [
        entry(1, TranscriptKind.THINKING, "Let me ", "0.0.0"),
        entry(2, TranscriptKind.THINKING, "think.", "0.0.0"),
        entry(3, TranscriptKind.TEXT, "Doing ", "0.0.1"),
        entry(4, TranscriptKind.TEXT, "it now.", "0.0.1"),
        entry(5, TranscriptKind.INFO, "a note"),
    ]:
        printer(event)
    printer.flush()
    lines = [line.rstrip() for line in console.export_text().splitlines() if line.strip()]
    assert lines == ["  ∴ Let me think.", "  Doing it now.", "  ℹ a note"]
