"""The regular-expression half of `search_files` without ripgrep, in a process of its own.

Python's `re` backtracks and has no timeout: a pattern such as `(a+)+$` can take hours on one
short line, and in the engine's process it would stop the event loop (every run and the HTTP
server with it). Here it can only use up this process, which the engine kills at its deadline.
Run by path with the standard library only (`python -I search_worker.py`).

Input on stdin: one JSON line `{"pattern", "ignore_case", "literal", "max_results"}`, then per
file a frame: 4-byte big-endian length + UTF-8 path, 8-byte length + content. Output on stdout:
one JSON line `[path, line_number, line]` per match, at most `max_results + 1` of them.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from typing import BinaryIO


def _frames(stream: BinaryIO) -> tuple[str, bytes] | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    path = stream.read(struct.unpack(">I", head)[0]).decode("utf-8", errors="replace")
    size = struct.unpack(">Q", stream.read(8))[0]
    return path, stream.read(size)


def main() -> None:
    stdin, out = sys.stdin.buffer, sys.stdout
    request = json.loads(stdin.readline())
    flags = re.IGNORECASE if request["ignore_case"] else 0
    pattern = re.escape(request["pattern"]) if request["literal"] else request["pattern"]
    regex = re.compile(pattern, flags)
    limit = int(request["max_results"]) + 1
    found = 0
    while (frame := _frames(stdin)) is not None:
        path, data = frame
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if regex.search(line):
                out.write(json.dumps([path, number, line]) + "\n")
                found += 1
                if found >= limit:
                    out.flush()
                    return
        out.flush()


if __name__ == "__main__":
    main()
