"""A run's transcript events folded into the blocks the Transcript tab shows.

Pure: events in, blocks out. Streamed pieces of one text or thinking block are joined; a tool
call's start, its streamed output and its end become one card (joined by `call_id`); sub-agent
entries are grouped under their sub-agent, placed where the sub-agent first spoke. Every block
has a DOM id derived from the seq of its first event, so re-rendering after new events yields the
same id and the page can replace just that block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..flows.enums import TranscriptKind
from ..flows.events import Event, TranscriptEntry

SETUP = "setup"
DELTA_LIMIT = 200_000  # characters of streamed shell output kept per card (the rest is counted)


@dataclass
class Block:
    id: str
    kind: TranscriptKind  # tool_start stands for a whole tool card
    step: int | None
    subagent: str | None
    first_seq: int
    last_seq: int
    text: str = ""
    stream: str | None = None
    tool: str | None = None
    call_id: str | None = None
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    output: str = ""  # streamed tool output (tool_delta), verbatim
    output_dropped: int = 0
    result: str | None = None  # tool_end text; None while the call runs
    result_data: dict[str, Any] = field(default_factory=dict)
    html: str | None = field(default=None, repr=False, compare=False)  # rendered as of html_seq (render.py)
    html_seq: int = field(default=-1, repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self.kind == TranscriptKind.TOOL_START and self.result is None


@dataclass
class Group:
    """A sub-agent's blocks inside a step."""

    id: str
    subagent: str
    first_seq: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return max((b.last_seq for b in self.blocks), default=self.first_seq)


Item = Block | Group


@dataclass
class Section:
    """The setup card (step None) or one step's transcript."""

    id: str
    step: int | None
    items: list[Item] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return max((i.last_seq for i in self.items), default=0)


def section_id(step: int | None) -> str:
    return "ts-setup" if step is None else f"ts-{step}"


def _group_id(step: int | None, subagent: str) -> str:
    digest = hashlib.sha1(subagent.encode()).hexdigest()[:10]
    return f"{section_id(step)}-sa-{digest}"


class _Folder:
    def __init__(self, steps: int) -> None:
        self.sections: dict[int | None, Section] = {None: Section(section_id(None), None)}
        for i in range(steps):
            self.sections[i] = Section(section_id(i), i)
        self.groups: dict[tuple[int | None, str], Group] = {}
        self.last: dict[tuple[int | None, str | None], Block] = {}  # the newest block per lane
        self.calls: dict[tuple[int | None, str | None, str], Block] = {}

    def section(self, step: int | None) -> Section:
        if step not in self.sections:
            self.sections[step] = Section(section_id(step), step)
        return self.sections[step]

    def place(self, block: Block) -> None:
        section = self.section(block.step)
        if block.subagent is None:
            section.items.append(block)
            return
        key = (block.step, block.subagent)
        group = self.groups.get(key)
        if group is None:
            group = Group(_group_id(block.step, block.subagent), block.subagent, block.first_seq)
            self.groups[key] = group
            section.items.append(group)
        group.blocks.append(block)

    def add(self, seq: int, entry: TranscriptEntry) -> None:
        step = entry.step
        lane = (step, entry.subagent)
        kind = entry.kind
        if kind in (TranscriptKind.TOOL_DELTA, TranscriptKind.TOOL_END) and entry.call_id:
            call = self.calls.get((step, entry.subagent, entry.call_id))
            if call is not None:
                call.last_seq = seq
                if kind == TranscriptKind.TOOL_DELTA:
                    self._append_output(call, entry.text)
                else:
                    call.result = entry.text
                    call.result_data = dict(entry.data)
                    call.is_error = call.is_error or entry.is_error
                return
        previous = self.last.get(lane)
        if (entry.stream is not None and kind in (TranscriptKind.TEXT, TranscriptKind.THINKING)
                and previous is not None and previous.stream == entry.stream and previous.kind == kind):
            previous.text += entry.text
            previous.last_seq = seq
            return
        if (kind == TranscriptKind.TOOL_DELTA and previous is not None and previous.kind == kind
                and previous.stream is not None and previous.stream == entry.stream):
            self._append_output(previous, entry.text)
            previous.last_seq = seq
            return
        block = Block(id=f"tb-{seq}", kind=kind, step=step, subagent=entry.subagent, first_seq=seq, last_seq=seq,
                      text=entry.text, stream=entry.stream, tool=entry.tool, call_id=entry.call_id,
                      is_error=entry.is_error, data=dict(entry.data))
        if kind == TranscriptKind.TOOL_DELTA:
            block.text, block.output = "", ""
            self._append_output(block, entry.text)
        if kind == TranscriptKind.TOOL_END:
            block.result, block.result_data, block.data = entry.text, dict(entry.data), {}
        if kind == TranscriptKind.TOOL_START and entry.call_id:
            self.calls[(step, entry.subagent, entry.call_id)] = block
        self.last[lane] = block
        self.place(block)

    @staticmethod
    def _append_output(block: Block, text: str) -> None:
        room = DELTA_LIMIT - len(block.output)
        if room >= len(text):
            block.output += text
        else:
            block.output += text[:max(room, 0)]
            block.output_dropped += len(text) - max(room, 0)


class Fold:
    """A transcript folded so far, to which later events are added (the run page keeps one per
    run it shows, so a refresh folds only what is new). `seq` is the last event added."""

    def __init__(self, steps: int) -> None:
        self._folder = _Folder(steps)
        self.seq = 0

    def add(self, events: Iterable[Event]) -> None:
        """Events after `seq`, in order (earlier ones are ignored: they are folded already)."""
        for event in events:
            if event.seq <= self.seq:
                continue
            if isinstance(event.data, TranscriptEntry):
                self._folder.add(event.seq, event.data)
            self.seq = event.seq

    def sections(self, steps: int) -> list[Section]:
        """The setup section, then one section per step (in order), each with its items."""
        sections = self._folder.sections
        for i in range(steps):
            self._folder.section(i)
        return [sections[None], *(sections[k] for k in sorted(k for k in sections if k is not None))]


def fold(events: Iterable[Event], steps: int) -> list[Section]:
    """The setup section, then one section per step (in order), each with its items."""
    folded = Fold(steps)
    folded.add(events)
    return folded.sections(steps)
