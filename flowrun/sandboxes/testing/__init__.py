"""Fakes of e2b's REST API and envd, served on 127.0.0.1, for running the real SDK end to end.

    async with serve_fake_e2b(tmp_path) as cloud:
        backend = E2BBackend(**cloud.backend_options())

One uvicorn server answers both: the control plane (`POST /v2/sandboxes`, `.../connect`,
`.../pause`, `DELETE /sandboxes/{id}`) checks the `X-API-KEY` and keeps each sandbox's state;
envd (connect-rpc `process.Process` and `filesystem.Filesystem`, HTTP `/files` and `/health`)
serves the sandbox named by the `E2b-Sandbox-Id` header, and answers like e2b's proxy (502, "was
not found") when that sandbox is not running. Knobs for failure tests: `rate_limit_next`,
`blank_on_resume`, `vanish(id)`. Imports starlette, uvicorn and the e2b SDK: tests only.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import uvicorn
from e2b.envd.client_shared import ENVD_JSON_CODEC
from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._envd import FakeFilesystemService, FakeProcess, FakeProcessService

API_KEY = "e2b_fake_test_key"
ENVD_VERSION = "0.6.4"


class NotRunning(Exception):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"The sandbox {sandbox_id} was not found")


@dataclass
class FakeSandbox:
    id: str
    template: str
    root: Path
    metadata: dict[str, str]
    envs: dict[str, str]
    network: bool
    timeout: int | None
    state: Literal["running", "paused", "killed"] = "running"
    processes: dict[int, FakeProcess] = field(default_factory=dict)

    def host_path(self, path: str) -> Path:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"fake envd refuses {path!r}")
        return self.root.joinpath(*parts)

    def stop_processes(self) -> None:
        for process in self.processes.values():
            if not process.ended:
                process.kill()


@dataclass
class FakeE2B:
    """The fake cloud's state; tests read and steer it."""

    root: Path
    url: str = ""
    api_key: str = API_KEY
    sandboxes: dict[str, FakeSandbox] = field(default_factory=dict)
    rate_limit_next: int = 0  # answer 429 to this many control-plane calls first
    rate_limited: int = 0
    blank_on_resume: set[str] = field(default_factory=set)  # resumed as an empty machine
    calls: list[str] = field(default_factory=list)  # "POST /v2/sandboxes", ...
    commands: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def backend_options(self, **overrides: Any) -> dict[str, Any]:
        """Options for `E2BBackend` that point the real SDK here."""
        return {
            "api_key": self.api_key,
            "api_url": self.url,
            "sandbox_url": self.url,
            "http_version": "1.1",  # uvicorn speaks HTTP/1.1 only
            "retry_backoff_s": 0.01,
            **overrides,
        }

    def running(self, sandbox_id: str) -> FakeSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.state != "running":
            raise NotRunning(sandbox_id)
        return sandbox

    def vanish(self, sandbox_id: str) -> None:
        """The sandbox disappears, as after an idle timeout."""
        sandbox = self.sandboxes.pop(sandbox_id)
        sandbox.stop_processes()

    def _new(self, body: dict[str, Any]) -> FakeSandbox:
        sandbox_id = f"fake{next(self._ids):04d}"
        root = self.root / sandbox_id
        (root / "home" / "user").mkdir(parents=True)
        sandbox = FakeSandbox(
            id=sandbox_id,
            template=str(body.get("templateID", "base")),
            root=root,
            metadata=dict(body.get("metadata") or {}),
            envs=dict(body.get("envVars") or {}),
            network=bool(body.get("allow_internet_access", True)),
            timeout=body.get("timeout"),
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _described(sandbox: FakeSandbox) -> dict[str, Any]:
    return {
        "templateID": sandbox.template,
        "sandboxID": sandbox.id,
        "clientID": "fake",
        "envdVersion": ENVD_VERSION,
    }


def _control_plane(cloud: FakeE2B) -> list[Route]:
    async def guard(request: Request) -> Response | None:
        cloud.calls.append(f"{request.method} {request.url.path}")
        if request.headers.get("x-api-key") != cloud.api_key:
            return _error(401, "Invalid API key")
        if cloud.rate_limit_next > 0:
            cloud.rate_limit_next -= 1
            cloud.rate_limited += 1
            return _error(429, "Rate limit exceeded")
        return None

    async def create(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        sandbox = cloud._new(json.loads(await request.body()))
        return JSONResponse(_described(sandbox), status_code=201)

    async def connect(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        sandbox = cloud.sandboxes.get(request.path_params["id"])
        if sandbox is None or sandbox.state == "killed":
            return _error(404, f"Sandbox {request.path_params['id']} not found")
        if sandbox.state == "paused" and sandbox.id in cloud.blank_on_resume:
            await anyio.to_thread.run_sync(_wipe, sandbox.root)
        sandbox.state = "running"
        return JSONResponse(_described(sandbox), status_code=201)

    async def pause(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        sandbox = cloud.sandboxes.get(request.path_params["id"])
        if sandbox is None or sandbox.state == "killed":
            return _error(404, "Sandbox not found")
        if sandbox.state == "paused":
            return _error(409, "Sandbox is already paused")
        sandbox.state = "paused"
        return Response(status_code=204)

    async def kill(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        sandbox = cloud.sandboxes.get(request.path_params["id"])
        if sandbox is None or sandbox.state == "killed":
            return _error(404, "Sandbox not found")
        sandbox.stop_processes()
        sandbox.state = "killed"
        return Response(status_code=204)

    return [
        Route("/v2/sandboxes", create, methods=["POST"]),
        Route("/v2/sandboxes/{id}/connect", connect, methods=["POST"]),
        Route("/sandboxes/{id}/pause", pause, methods=["POST"]),
        Route("/sandboxes/{id}", kill, methods=["DELETE"]),
    ]


def _wipe(root: Path) -> None:
    shutil.rmtree(root)
    (root / "home" / "user").mkdir(parents=True)


def _envd_http(cloud: FakeE2B) -> list[Route]:
    async def health(request: Request) -> Response:
        cloud.running(request.headers.get("e2b-sandbox-id", ""))
        return Response(status_code=204)

    async def files(request: Request) -> Response:
        sandbox = cloud.running(request.headers.get("e2b-sandbox-id", ""))
        shown = request.query_params.get("path", "")
        target = sandbox.host_path(shown)
        if request.method == "GET":
            if target.is_dir():
                return _error(400, f"path {shown} is a directory")
            if not target.is_file():
                return _error(404, f"path {shown} not found")
            return Response(target.read_bytes(), media_type="application/octet-stream")
        if request.headers.get("content-type") != "application/octet-stream":
            return _error(400, "the fake envd takes octet-stream uploads only")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await request.body())
        return JSONResponse([{"name": target.name, "type": "file", "path": shown}])

    return [
        Route("/health", health, methods=["GET"]),
        Route("/files", files, methods=["GET", "POST"]),
    ]


class _Dispatch:
    """Route by path to the control plane, envd's HTTP API or its connect-rpc services, and
    answer for a sandbox that is not running the way e2b's proxy does."""

    def __init__(self, http: ASGIApp, rpc: dict[str, ASGIApp]) -> None:
        self.http = http
        self.rpc = rpc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            path = scope.get("path", "")
            for prefix, app in self.rpc.items():
                if path.startswith(prefix + "/"):
                    headers = dict(scope.get("headers") or [])
                    self._cloud.running(headers.get(b"e2b-sandbox-id", b"").decode())
                    await app(scope, receive, send)
                    return
            await self.http(scope, receive, send)
        except NotRunning as exc:
            await _error(502, str(exc))(scope, receive, send)

    _cloud: FakeE2B


@asynccontextmanager
async def serve_fake_e2b(root: Path) -> AsyncIterator[FakeE2B]:
    """Serve a fake e2b on an ephemeral 127.0.0.1 port for the duration of the block."""
    cloud = FakeE2B(root=root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # clients may connect before uvicorn starts accepting
    cloud.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with anyio.create_task_group() as tasks:
        http = Starlette(routes=[*_control_plane(cloud), *_envd_http(cloud)])
        process = ProcessASGIApplication(FakeProcessService(cloud, tasks), codecs=[ENVD_JSON_CODEC])
        filesystem = FilesystemASGIApplication(
            FakeFilesystemService(cloud), codecs=[ENVD_JSON_CODEC]
        )
        app = _Dispatch(http, {process.path: process, filesystem.path: filesystem})
        app._cloud = cloud
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        stopped = anyio.Event()

        async def serve() -> None:
            try:
                await server.serve([sock])
            finally:
                stopped.set()

        tasks.start_soon(serve)
        try:
            yield cloud
        finally:
            for sandbox in cloud.sandboxes.values():
                sandbox.stop_processes()
            server.should_exit = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await stopped.wait()
            tasks.cancel_scope.cancel()
            sock.close()
