"""The everyday tools: shell, read/write/edit a file, and the agent's checklist."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from ...flows.enums import TranscriptKind
from ...flows.errors import SandboxError
from ...flows.events import TranscriptEntry
from ...sandboxes.base import CALL_ENV, ExecResult
from .base import ToolContext, ToolOutput, cap_output


def _path(ctx: ToolContext, path: str) -> str:
    """Paths are relative to the agent's working directory (a sub-agent has its own)."""
    if ctx.cwd and not path.startswith("/"):
        return f"{ctx.cwd.rstrip('/')}/{path}"
    return path


class ShellInput(BaseModel):
    command: str = Field(description="A bash command, run in the workspace.")
    cwd: str | None = Field(default=None, description="Directory relative to the workspace.")
    timeout_s: float = Field(default=300, gt=0, le=3600)


class Shell:
    name: ClassVar[str] = "shell"
    description: ClassVar[str] = (
        "Run a bash command in the sandbox workspace. Output streams to the transcript; "
        "the exit code, stdout and stderr come back to you."
    )
    input_model: ClassVar[type[BaseModel]] = ShellInput

    async def preview(self, ctx: ToolContext, args: ShellInput) -> dict[str, Any]:
        return {"command": args.command}

    async def run(self, ctx: ToolContext, args: ShellInput) -> ToolOutput:
        async def on_output(stream: Literal["stdout", "stderr"], text: str) -> None:
            await ctx.emit(TranscriptEntry(
                kind=TranscriptKind.TOOL_DELTA, step=ctx.step, text=text, tool=self.name, call_id=ctx.call_id,
                stream=f"{ctx.subagent}.{ctx.call_id}:{stream}" if ctx.subagent else f"{ctx.call_id}:{stream}",
                subagent=ctx.subagent, data={"stream": stream},
            ))

        attach = getattr(ctx.sandbox, "attach", None)
        if ctx.attach_pid is not None and attach is not None:
            # the engine restarted while this command ran on a sandbox that outlives it: keep
            # streaming the same command rather than running it again
            result: ExecResult = await attach(ctx.attach_pid, timeout=args.timeout_s, on_output=on_output)
        else:
            cwd = _path(ctx, args.cwd) if args.cwd else ctx.cwd
            result = await ctx.sandbox.exec(args.command, cwd=cwd, timeout=args.timeout_s, on_output=on_output,
                                            env={CALL_ENV: ctx.call_id})
        parts = [f"exit code: {result.exit_code}" + (" (timed out)" if result.timed_out else "")]
        if ctx.attach_pid is not None:
            parts.append("[the engine restarted while this ran: the output below is what came after it]")
        if result.stdout:
            parts.append(f"stdout:\n{result.stdout}")
        if result.stderr:
            parts.append(f"stderr:\n{result.stderr}")
        if result.truncated:
            parts.append("[output was truncated by the sandbox's output limit]")
        return ToolOutput(
            content=cap_output("\n".join(parts)),
            is_error=result.exit_code != 0,
            data={"exit_code": result.exit_code, "timed_out": result.timed_out, "duration_s": round(result.duration_s, 3)},
        )


class ReadFileInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")


class ReadFile:
    name: ClassVar[str] = "read_file"
    description: ClassVar[str] = "Read a text file from the workspace."
    input_model: ClassVar[type[BaseModel]] = ReadFileInput

    async def preview(self, ctx: ToolContext, args: ReadFileInput) -> dict[str, Any]:
        return {"path": args.path}

    async def run(self, ctx: ToolContext, args: ReadFileInput) -> ToolOutput:
        data = await ctx.sandbox.read_file(_path(ctx, args.path))
        return ToolOutput(content=cap_output(data.decode("utf-8", errors="replace")), data={"bytes": len(data)})


class WriteFileInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    content: str = Field(description="The whole new content of the file.")


class WriteFile:
    name: ClassVar[str] = "write_file"
    description: ClassVar[str] = "Create or overwrite a file in the workspace with the given content."
    input_model: ClassVar[type[BaseModel]] = WriteFileInput

    async def preview(self, ctx: ToolContext, args: WriteFileInput) -> dict[str, Any]:
        return {"path": args.path, "content": args.content}

    async def run(self, ctx: ToolContext, args: WriteFileInput) -> ToolOutput:
        await ctx.sandbox.write_file(_path(ctx, args.path), args.content.encode())
        return ToolOutput(content=f"wrote {len(args.content)} characters to {args.path}")


class EditFileInput(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    old_string: str = Field(description="Exact text to replace; must occur exactly once unless replace_all.")
    new_string: str = Field(description="The replacement text.")
    replace_all: bool = False


def _apply_edit(text: str, args: EditFileInput) -> str:
    count = text.count(args.old_string)
    if count == 0:
        raise SandboxError(f"{args.path}: old_string was not found in the file", code="edit_no_match")
    if count > 1 and not args.replace_all:
        raise SandboxError(
            f"{args.path}: old_string occurs {count} times; give more context or set replace_all",
            code="edit_ambiguous",
        )
    return text.replace(args.old_string, args.new_string, -1 if args.replace_all else 1)


def unified_diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=f"a/{path}", tofile=f"b/{path}",
    ))


class EditFile:
    name: ClassVar[str] = "edit_file"
    description: ClassVar[str] = (
        "Replace an exact string in a file. The transcript shows the edit as a unified diff."
    )
    input_model: ClassVar[type[BaseModel]] = EditFileInput

    async def preview(self, ctx: ToolContext, args: EditFileInput) -> dict[str, Any]:
        try:
            before = (await ctx.sandbox.read_file(_path(ctx, args.path))).decode()
            return {"path": args.path, "diff": unified_diff(args.path, before, _apply_edit(before, args))}
        except SandboxError:
            return {"path": args.path}  # run() reports the problem

    async def run(self, ctx: ToolContext, args: EditFileInput) -> ToolOutput:
        path = _path(ctx, args.path)
        before = (await ctx.sandbox.read_file(path)).decode()
        after = _apply_edit(before, args)
        await ctx.sandbox.write_file(path, after.encode())
        diff = unified_diff(args.path, before, after)
        return ToolOutput(content=f"edited {args.path}\n{cap_output(diff, 4000)}", data={"diff": diff})


class Todo(BaseModel):
    content: str
    status: Literal["pending", "in_progress", "completed"] = "pending"


class TodoWriteInput(BaseModel):
    todos: list[Todo] = Field(description="The whole checklist, replacing the previous one.")


class TodoWrite:
    name: ClassVar[str] = "todo_write"
    description: ClassVar[str] = "Write your working checklist (replaces the previous one)."
    input_model: ClassVar[type[BaseModel]] = TodoWriteInput

    async def preview(self, ctx: ToolContext, args: TodoWriteInput) -> dict[str, Any]:
        return {"todos": [t.model_dump() for t in args.todos]}

    async def run(self, ctx: ToolContext, args: TodoWriteInput) -> ToolOutput:
        done = sum(t.status == "completed" for t in args.todos)
        return ToolOutput(content=f"checklist saved: {done}/{len(args.todos)} done")
