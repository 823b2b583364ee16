"""File access inside an e2b sandbox, with the same path rules and listing shape as the others.

Paths are checked lexically (`paths.workspace_parts`): the sandbox is a separate machine, so a
symlink inside it cannot lead the server anywhere, but a step must still not name a file outside
its workspace. Listings are relative to the workspace, directories end with `/`, and a recursive
listing does not descend into `.git`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from e2b import AsyncSandbox
from e2b.sandbox.filesystem.filesystem import FileType

from ..flows.errors import SandboxError
from .paths import not_found, relative, workspace_parts

_RECURSIVE_DEPTH = 64


class _Call(Protocol):
    def __call__(
        self,
        action: str,
        operation: Callable[[], Awaitable[Any]],
        *,
        sandbox_id: str | None = None,
        attempts: int | None = None,
    ) -> Awaitable[Any]: ...


class E2BFiles:
    def __init__(self, sandbox: AsyncSandbox, workspace: str, call: _Call) -> None:
        self._sdk = sandbox
        self._workspace = workspace
        self._call = call

    @property
    def _id(self) -> str:
        return str(self._sdk.sandbox_id)

    def _absolute(self, path: str) -> tuple[str, list[str]]:
        parts = workspace_parts(path, self._workspace)
        return posixpath.join(self._workspace, *parts), parts

    async def read(self, path: str) -> bytes:
        absolute, _ = self._absolute(path)
        try:
            return await self.read_absolute(absolute)
        except SandboxError as exc:
            if exc.code == "not_found":
                raise not_found(path) from None
            raise

    async def read_absolute(self, absolute: str) -> bytes:
        data = await self._call(
            "read a file",
            lambda: self._sdk.files.read(absolute, format="bytes"),
            sandbox_id=self._id,
        )
        return bytes(data)

    async def write(self, path: str, data: bytes) -> None:
        absolute, parts = self._absolute(path)
        if not parts:
            raise SandboxError(f"{path!r} is a directory", code="is_a_directory", path=path)
        await self.write_absolute(absolute, data)

    async def write_absolute(self, absolute: str, data: bytes) -> None:
        await self._call(
            "write a file",
            lambda: self._sdk.files.write(absolute, bytes(data), use_octet_stream=True),
            sandbox_id=self._id,
        )

    async def list(self, path: str, recursive: bool) -> list[str]:
        absolute, parts = self._absolute(path)
        try:
            entries = await self._call(
                "list files",
                lambda: self._sdk.files.list(absolute, depth=_RECURSIVE_DEPTH if recursive else 1),
                sandbox_id=self._id,
            )
        except SandboxError as exc:
            if exc.code == "not_found":
                raise not_found(path) from None
            raise
        prefix = "" if not parts else relative(parts) + "/"
        found: list[str] = []
        for entry in entries:
            inner = posixpath.relpath(entry.path, absolute)
            if inner.startswith("..") or inner == ".":
                continue
            if "/.git/" in f"/{inner}" and not inner.endswith("/.git") and inner != ".git":
                continue
            found.append(prefix + inner + ("/" if entry.type == FileType.DIR else ""))
        return sorted(found)
