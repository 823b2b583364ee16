"""A closed stdout must not stop the engine.

`flowrun run ... | head -1` closes the pipe after one line. The command drives its run in this
process, so an exception from `print` would interrupt the run. Instead, output to a closed pipe
is dropped from then on (fd 1 points to /dev/null, so not even the interpreter's last flush
complains) and the run goes on to where it parks, as if nobody were reading.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, TextIO


class ClosedPipeSafe:
    """Wraps a text stream; a write or flush to a closed pipe turns it into a sink."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._broken(exc)
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except OSError as exc:
                self._broken(exc)

    def _broken(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
            raise exc
        self.closed_pipe = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_stdout() -> ClosedPipeSafe:
    """Replace `sys.stdout` with a guarded one (idempotent)."""
    if not isinstance(sys.stdout, ClosedPipeSafe):
        sys.stdout = ClosedPipeSafe(sys.stdout)
    return sys.stdout
