"""Collecting a command's output: streamed to the caller line by line, kept up to a byte budget.

Shared by every backend so the transcript sees the same thing whichever ran the command: whole
lines as they complete (a long line without a newline is sent in pieces), stdout and stderr kept
apart, and once the budget is spent nothing more is kept or streamed and `truncated` is set.
"""

from __future__ import annotations

from typing import Literal

from .base import OutputCallback

StreamName = Literal["stdout", "stderr"]
_PARTIAL_LINE_CHARS = 8192


class OutputCollector:
    def __init__(self, limit: int, on_output: OutputCallback | None) -> None:
        self.limit = limit
        self.on_output = on_output
        self.used = 0
        self.truncated = False
        self._kept: dict[StreamName, list[str]] = {"stdout": [], "stderr": []}
        self._pending: dict[StreamName, str] = {"stdout": "", "stderr": ""}

    async def feed(self, stream: StreamName, text: str) -> None:
        """Take a decoded chunk; stream whatever lines it completes."""
        if self.truncated or not text:
            return
        size = len(text.encode("utf-8"))
        if self.used + size > self.limit:
            self.truncated = True
            room = max(self.limit - self.used, 0)
            text = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
            size = len(text.encode("utf-8"))
        self.used += size
        self._kept[stream].append(text)
        if self.on_output is None:
            return
        pending = self._pending[stream] + text
        cut = pending.rfind("\n") + 1
        if self.truncated or (cut == 0 and len(pending) >= _PARTIAL_LINE_CHARS):
            cut = len(pending)
        self._pending[stream] = pending[cut:]
        if cut:
            await self.on_output(stream, pending[:cut])

    async def close(self) -> None:
        """Send what is left of unfinished lines."""
        for stream in ("stdout", "stderr"):
            rest, self._pending[stream] = self._pending[stream], ""
            if rest and self.on_output is not None:
                await self.on_output(stream, rest)

    def text(self, stream: StreamName) -> str:
        return "".join(self._kept[stream])
