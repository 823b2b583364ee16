"""A fake envd (the agent inside an e2b sandbox) built on the SDK's own generated services.

Commands run for real, as host processes in their sandbox's directory, and stream their output
as envd's `Start` event stream (start, data..., end); `Connect` re-attaches to a running one.
A sandbox's filesystem is a host directory: sandbox path `/a/b` is `<root>/a/b`. Commands see
host paths, so they should use paths relative to their working directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteReceiveStream, Process, TaskGroup
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.filesystem import filesystem_pb
from e2b.envd.filesystem.filesystem_connect import Filesystem
from e2b.envd.process import process_pb
from e2b.envd.process.process_connect import Process as ProcessService
from protobuf import Oneof

if TYPE_CHECKING:
    from connectrpc.request import RequestContext

    from . import FakeE2B, FakeSandbox

Event = process_pb.ProcessEvent


def _oneof(name: str, value: object) -> Any:
    """A oneof value; the generated stubs want the field name as a literal type."""
    return Oneof(name, value)


class FakeProcess:
    """One command: its events so far, and a signal for each new one."""

    def __init__(self, process: Process, config: process_pb.ProcessConfig | None = None) -> None:
        self.process = process
        self.config = config or process_pb.ProcessConfig()
        self.pid = process.pid
        self.events: list[Event] = [Event(event=_oneof("start", Event.StartEvent(pid=self.pid)))]
        self.changed = anyio.Event()
        self.ended = False
        self.finished = anyio.Event()

    def _append(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()

    async def pump(self) -> None:
        async with anyio.create_task_group() as tg:
            for name in ("stdout", "stderr"):
                stream = getattr(self.process, name)
                tg.start_soon(self._read, stream, name)
        code = await self.process.wait()
        status = f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name}"
        self.ended = True
        self.finished.set()
        self._append(
            Event(
                event=_oneof(
                    "end",
                    Event.EndEvent(
                        exit_code=code if code >= 0 else -1, exited=code >= 0, status=status
                    ),
                )
            )
        )

    async def _read(self, stream: ByteReceiveStream, name: str) -> None:
        async for chunk in stream:
            data = Event.DataEvent(output=_oneof(name, chunk))
            self._append(Event(event=_oneof("data", data)))

    async def follow(self, start: int = 0) -> AsyncIterator[Event]:
        index = start
        while True:
            changed = self.changed
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.ended:
                return
            await changed.wait()

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


def _sandbox(cloud: FakeE2B, ctx: RequestContext[Any, Any]) -> FakeSandbox:
    sandbox_id = ctx.request_headers.get("e2b-sandbox-id", "")
    return cloud.running(sandbox_id)


class FakeProcessService(ProcessService):
    def __init__(self, cloud: FakeE2B, tasks: TaskGroup) -> None:
        self.cloud = cloud
        self.tasks = tasks

    async def start(
        self,
        request: process_pb.StartRequest,
        ctx: RequestContext[process_pb.StartRequest, process_pb.StartResponse],
    ) -> AsyncIterator[process_pb.StartResponse]:
        sandbox = _sandbox(self.cloud, ctx)
        config = request.process or process_pb.ProcessConfig()
        cwd = sandbox.host_path(config.cwd or "/")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
        env.update(sandbox.envs)
        env.update(config.envs)
        process = await anyio.open_process(
            [config.cmd, *config.args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fake = FakeProcess(process, config)
        sandbox.processes[fake.pid] = fake
        self.cloud.commands.append(list(config.args)[-1] if config.args else config.cmd)
        self.tasks.start_soon(fake.pump)
        async for event in fake.follow():
            yield process_pb.StartResponse(event=event)

    async def connect(
        self,
        request: process_pb.ConnectRequest,
        ctx: RequestContext[process_pb.ConnectRequest, process_pb.ConnectResponse],
    ) -> AsyncIterator[process_pb.ConnectResponse]:
        sandbox = _sandbox(self.cloud, ctx)
        fake = sandbox.processes.get(_pid(request.process))
        if fake is None or fake.ended:
            raise ConnectError(Code.NOT_FOUND, "process not found")
        yield process_pb.ConnectResponse(event=fake.events[0])
        async for event in fake.follow(len(fake.events)):
            yield process_pb.ConnectResponse(event=event)

    async def send_signal(
        self,
        request: process_pb.SendSignalRequest,
        ctx: RequestContext[process_pb.SendSignalRequest, process_pb.SendSignalResponse],
    ) -> process_pb.SendSignalResponse:
        sandbox = _sandbox(self.cloud, ctx)
        fake = sandbox.processes.get(_pid(request.process))
        if fake is None or fake.ended:
            raise ConnectError(Code.NOT_FOUND, "process not found")
        fake.kill()
        return process_pb.SendSignalResponse()

    async def list(
        self,
        request: process_pb.ListRequest,
        ctx: RequestContext[process_pb.ListRequest, process_pb.ListResponse],
    ) -> process_pb.ListResponse:
        sandbox = _sandbox(self.cloud, ctx)
        running = [p for p in sandbox.processes.values() if not p.ended]
        return process_pb.ListResponse(
            processes=[process_pb.ProcessInfo(pid=p.pid, config=p.config) for p in running]
        )


def _pid(selector: process_pb.ProcessSelector | None) -> int:
    if selector is None or selector.selector is None or selector.selector.field != "pid":
        raise ConnectError(Code.INVALID_ARGUMENT, "select the process by pid")
    return int(selector.selector.value)


def entry_info(path: Path, shown: str) -> filesystem_pb.EntryInfo:
    kind = filesystem_pb.FileType.DIRECTORY if path.is_dir() else filesystem_pb.FileType.FILE
    return filesystem_pb.EntryInfo(
        name=path.name, type=kind, path=shown, size=path.stat().st_size if kind.value == 1 else 0
    )


class FakeFilesystemService(Filesystem):
    def __init__(self, cloud: FakeE2B) -> None:
        self.cloud = cloud

    async def list_dir(
        self,
        request: filesystem_pb.ListDirRequest,
        ctx: RequestContext[filesystem_pb.ListDirRequest, filesystem_pb.ListDirResponse],
    ) -> filesystem_pb.ListDirResponse:
        sandbox = _sandbox(self.cloud, ctx)
        top = sandbox.host_path(request.path)
        if not top.exists():
            raise ConnectError(Code.NOT_FOUND, f"path {request.path} not found")
        if not top.is_dir():
            raise ConnectError(Code.INVALID_ARGUMENT, f"path {request.path} is not a directory")
        depth = request.depth or 1
        entries: list[filesystem_pb.EntryInfo] = []

        def walk(directory: Path, shown: str, level: int) -> None:
            for child in sorted(directory.iterdir()):
                child_shown = f"{shown.rstrip('/')}/{child.name}"
                entries.append(entry_info(child, child_shown))
                if child.is_dir() and not child.is_symlink() and level < depth:
                    walk(child, child_shown, level + 1)

        walk(top, request.path, 1)
        return filesystem_pb.ListDirResponse(entries=entries)

    async def make_dir(
        self,
        request: filesystem_pb.MakeDirRequest,
        ctx: RequestContext[filesystem_pb.MakeDirRequest, filesystem_pb.MakeDirResponse],
    ) -> filesystem_pb.MakeDirResponse:
        target = _sandbox(self.cloud, ctx).host_path(request.path)
        if target.exists():
            raise ConnectError(Code.ALREADY_EXISTS, f"{request.path} already exists")
        target.mkdir(parents=True)
        return filesystem_pb.MakeDirResponse(entry=entry_info(target, request.path))

    async def stat(
        self,
        request: filesystem_pb.StatRequest,
        ctx: RequestContext[filesystem_pb.StatRequest, filesystem_pb.StatResponse],
    ) -> filesystem_pb.StatResponse:
        target = _sandbox(self.cloud, ctx).host_path(request.path)
        if not target.exists():
            raise ConnectError(Code.NOT_FOUND, f"path {request.path} not found")
        return filesystem_pb.StatResponse(entry=entry_info(target, request.path))
