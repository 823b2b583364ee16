"""Finding things in the workspace: `list_files` and `search_files`.

`search_files` prefers ripgrep inside the sandbox, because that is where the files are (an e2b
workspace is remote) and rg honours `.gitignore`. Whether rg exists is decided by the same shell
command that runs it (a sentinel line first), so it costs no extra round trip and a sandbox whose
`exec` does nothing (the noop backend) is recognised instead of reporting "no matches". Without
rg, a pure-Python search walks `Sandbox.list_files` / `read_file`; it skips the usual
dependency and VCS directories but does not read `.gitignore`.

Paths in results are relative to the agent's working directory, as its other tools expect. Both
tools cap what they return and say so when they did.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import struct
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import BaseModel, Field

from ...flows.errors import SandboxError
from .base import ToolContext, ToolOutput, cap_output

SKIP_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".tox", "dist", "build"}
)
MAX_FILE_BYTES = 1_000_000
MAX_LINE_CHARS = 300
_RG_SENTINEL = "__flowrun_rg__"
PYTHON_SEARCH_TIMEOUT_S = 30.0
_WORKER = Path(__file__).resolve().parent / "search_worker.py"


def _path(ctx: ToolContext, path: str) -> str:
    """A path the agent gave, relative to its working directory, as a workspace path."""
    if ctx.cwd and not path.startswith("/"):
        return f"{ctx.cwd.rstrip('/')}/{path}" if path not in ("", ".") else ctx.cwd
    return path


def _shown(ctx: ToolContext, workspace_path: str) -> str:
    """A workspace-relative path as the agent sees it (relative to its working directory)."""
    if ctx.cwd:
        prefix = ctx.cwd.strip("/") + "/"
        if workspace_path.startswith(prefix):
            return workspace_path[len(prefix) :]
    return workspace_path


def _ignored(path: str) -> bool:
    return any(part in SKIP_DIRS for part in path.rstrip("/").split("/")[:-1]) or (
        path.endswith("/") and path.rstrip("/").rsplit("/", 1)[-1] in SKIP_DIRS
    )


class ListFilesInput(BaseModel):
    path: str = Field(default=".", description="Directory relative to the working directory.")
    recursive: bool = Field(default=False, description="List the whole tree below `path`.")
    max_entries: int = Field(default=500, ge=1, le=5000)


class ListFiles:
    name: ClassVar[str] = "list_files"
    description: ClassVar[str] = (
        "List files and directories (directories end with '/'). Recursive listings skip "
        f"dependency and VCS directories ({', '.join(sorted(SKIP_DIRS))})."
    )
    input_model: ClassVar[type[BaseModel]] = ListFilesInput

    async def preview(self, ctx: ToolContext, args: ListFilesInput) -> dict[str, Any]:
        return {"path": args.path, "recursive": args.recursive}

    async def run(self, ctx: ToolContext, args: ListFilesInput) -> ToolOutput:
        try:
            entries = await ctx.sandbox.list_files(_path(ctx, args.path), recursive=args.recursive)
        except SandboxError as exc:
            return ToolOutput(content=exc.message, is_error=True, data={"path": args.path})
        if args.recursive:
            entries = [e for e in entries if not _ignored(e)]
        shown = [_shown(ctx, e) for e in entries]
        truncated = len(shown) > args.max_entries
        lines = shown[: args.max_entries]
        if truncated:
            lines.append(
                f"[... {len(shown) - args.max_entries} more entries not shown; list a subdirectory]"
            )
        content = "\n".join(lines) if lines else f"{args.path} is empty"
        return ToolOutput(
            content=cap_output(content),
            data={"path": args.path, "count": len(shown), "truncated": truncated},
        )


class SearchFilesInput(BaseModel):
    pattern: str = Field(description="A regular expression (or literal text with `literal`).")
    path: str = Field(
        default=".", description="File or directory to search, relative to the working directory."
    )
    glob: str | None = Field(
        default=None, description="Only files matching this glob, e.g. '*.py'."
    )
    ignore_case: bool = False
    literal: bool = Field(default=False, description="Treat `pattern` as plain text.")
    max_results: int = Field(default=200, ge=1, le=2000)


class SearchFiles:
    name: ClassVar[str] = "search_files"
    description: ClassVar[str] = (
        "Search file contents under the workspace for a regular expression, like ripgrep. "
        "Returns `path:line: text` for each match, capped at max_results."
    )
    input_model: ClassVar[type[BaseModel]] = SearchFilesInput

    async def preview(self, ctx: ToolContext, args: SearchFilesInput) -> dict[str, Any]:
        return {"pattern": args.pattern, "path": args.path, "glob": args.glob}

    async def run(self, ctx: ToolContext, args: SearchFilesInput) -> ToolOutput:
        flags = re.IGNORECASE if args.ignore_case else 0
        try:  # validated here; matched by rg in the sandbox or in a worker process
            re.compile(re.escape(args.pattern) if args.literal else args.pattern, flags)
        except re.error as exc:
            return ToolOutput(
                content=f"invalid regular expression {args.pattern!r}: {exc}", is_error=True
            )
        found = await _rg(ctx, args)
        engine = "rg"
        if found is None:
            engine = "python"
            try:
                found = await _python_search(ctx, args)
            except SandboxError as exc:
                return ToolOutput(content=exc.message, is_error=True, data={"path": args.path})
        if isinstance(found, ToolOutput):
            return found
        matches, truncated = found
        data = {
            "pattern": args.pattern,
            "path": args.path,
            "matches": len(matches),
            "truncated": truncated,
            "engine": engine,
        }
        if not matches:
            return ToolOutput(content=f"no matches for {args.pattern!r} in {args.path}", data=data)
        lines = [f"{p}:{n}: {_clip(text)}" for p, n, text in matches]
        if truncated:
            lines.append(
                f"[results truncated at {args.max_results} matches; narrow the pattern, path or glob]"
            )
        return ToolOutput(content=cap_output("\n".join(lines)), data=data)


Match = tuple[str, int, str]


def _clip(line: str) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"


async def _rg(
    ctx: ToolContext, args: SearchFilesInput
) -> tuple[list[Match], bool] | ToolOutput | None:
    """Search with ripgrep in the sandbox; `None` when rg is not there (or exec is inert)."""
    rg = [
        "rg",
        "--line-number",
        "--with-filename",
        "--no-heading",
        "--null",
        "--color=never",
        "--sort=path",
    ]
    rg += [
        f"--max-filesize={MAX_FILE_BYTES}",
        f"--max-columns={MAX_LINE_CHARS}",
        "--max-columns-preview",
    ]
    if args.ignore_case:
        rg.append("--ignore-case")
    if args.literal:
        rg.append("--fixed-strings")
    if args.glob:
        rg += ["--glob", args.glob]
    for skipped in sorted(SKIP_DIRS):  # the same directories the Python search skips
        rg += ["--glob", f"!{skipped}/"]
    rg += ["--regexp", args.pattern, "--", args.path]
    limit = args.max_results + 1
    # rg exits 1 for "no match" and 2 for errors; `head` may cut it short (SIGPIPE), which is fine
    script = (
        f"command -v rg >/dev/null 2>&1 || exit 0; echo {_RG_SENTINEL}; "
        f"{shlex.join(rg)} 2>&1 | head -n {limit}; "
        'exit "${PIPESTATUS[0]}"'
    )
    result = await ctx.sandbox.exec(script, cwd=ctx.cwd, timeout=120)
    out = result.stdout
    if not out.startswith(_RG_SENTINEL):
        return None
    body = out[len(_RG_SENTINEL) + 1 :]
    if result.timed_out:
        return ToolOutput(
            content="the search timed out after 120 s; narrow the path or glob", is_error=True
        )
    if result.exit_code == 2 and "\0" not in body:
        return ToolOutput(
            content=f"rg failed: {body.strip() or result.stderr.strip()}", is_error=True
        )
    matches: list[Match] = []
    for line in body.splitlines():
        path, nul, rest = line.partition("\0")
        number, colon, text = rest.partition(":")
        if nul and colon and number.isdigit():
            matches.append((path.removeprefix("./"), int(number), text))
    truncated = len(matches) > args.max_results
    return matches[: args.max_results], truncated


async def _python_search(
    ctx: ToolContext, args: SearchFilesInput
) -> tuple[list[Match], bool] | ToolOutput:
    """Read the files through the sandbox and match them in a child process (`search_worker`)
    that is killed after `PYTHON_SEARCH_TIMEOUT_S`: the event loop never runs the regex."""
    root = _path(ctx, args.path)
    try:
        files = [
            f for f in await ctx.sandbox.list_files(root, recursive=True) if not f.endswith("/")
        ]
    except SandboxError as exc:
        if exc.code != "not_a_directory":
            raise
        files = [root.strip("/")]  # a single file
    request = {
        "pattern": args.pattern,
        "ignore_case": args.ignore_case,
        "literal": args.literal,
        "max_results": args.max_results,
    }
    matches: list[Match] = []
    with anyio.move_on_after(PYTHON_SEARCH_TIMEOUT_S) as deadline:
        async with await anyio.open_process(
            [sys.executable, "-I", str(_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as process:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_feed, ctx, args, files, json.dumps(request), process)
                    assert process.stdout is not None
                    matches = await _collect(BufferedByteReceiveStream(process.stdout))
                    tg.cancel_scope.cancel()  # the worker stopped: it has enough
            finally:
                with suppress(ProcessLookupError):
                    process.kill()
    if deadline.cancelled_caught:
        return ToolOutput(
            content=f"the search took longer than {PYTHON_SEARCH_TIMEOUT_S:g} s and was stopped (ripgrep is "
            "not in the sandbox, and a pattern that backtracks, such as '(a+)+$', can take exponential "
            "time on Python's regex engine): simplify the pattern or narrow the path or glob",
            is_error=True,
            data={"pattern": args.pattern, "path": args.path, "timed_out": True},
        )
    truncated = len(matches) > args.max_results
    return matches[: args.max_results], truncated


async def _collect(stream: BufferedByteReceiveStream) -> list[Match]:
    """The worker's JSON lines, until it exits."""
    found: list[Match] = []
    while True:
        try:
            line = await stream.receive_until(b"\n", 4 * MAX_FILE_BYTES)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return found
        path, number, content = json.loads(line)
        found.append((str(path), int(number), str(content)))


async def _feed(ctx: ToolContext, args: SearchFilesInput, files: list[str], request: str, process: Process) -> None:
    stdin = process.stdin
    assert stdin is not None
    try:
        await stdin.send(request.encode() + b"\n")
        for workspace_path in files:
            if _ignored(workspace_path):
                continue
            shown = _shown(ctx, workspace_path)
            if args.glob and not _glob_match(shown, args.glob):
                continue
            try:
                data = await ctx.sandbox.read_file(workspace_path)
            except SandboxError:
                continue  # a FIFO, a socket, or gone since the listing: rg skips those too
            if len(data) > MAX_FILE_BYTES or b"\0" in data[:8192]:
                continue  # large or binary: rg skips these too
            name = shown.encode("utf-8", errors="replace")
            await stdin.send(struct.pack(">I", len(name)) + name + struct.pack(">Q", len(data)) + data)
        await stdin.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the worker found enough and exited


def _glob_match(path: str, glob: str) -> bool:
    """rg's rule: a glob without `/` matches the file name, otherwise the whole path."""
    return fnmatch.fnmatchcase(path if "/" in glob else path.rsplit("/", 1)[-1], glob)
