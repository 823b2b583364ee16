"""Resolving caller-supplied paths to places inside a workspace, and nowhere else.

Two layers. `workspace_parts` is lexical and shared by every backend: it turns a relative path,
or an absolute one inside the workspace, into path components and refuses `..`, NUL bytes and
absolute paths outside. `open_beneath` then walks those components on the host one directory
file descriptor at a time with `O_NOFOLLOW`, resolving symlinks itself, so a symlink (or a
directory swapped for one while we walk) can never lead the server, which may run as root, out of
the workspace. Symlinks that stay inside the workspace work as usual.
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Callable
from contextlib import suppress

from ..flows.errors import SandboxError

_MAX_SYMLINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def escape(path: str, why: str) -> SandboxError:
    return SandboxError(f"path {path!r} {why}", code="path_escape", path=path)


def not_found(path: str) -> SandboxError:
    return SandboxError(f"no such file or directory: {path!r}", code="not_found", path=path)


def workspace_parts(path: str, workspace: str) -> list[str]:
    """The components of `path` below `workspace`; `[]` is the workspace itself.

    Raises:
        SandboxError: `path_escape` for `..` components, NUL bytes, or absolute paths that are
            not inside `workspace`.
    """
    if "\0" in path:
        raise escape(path, "contains a NUL byte")
    if path.startswith("/"):
        root = workspace.rstrip("/") or "/"
        normal = posixpath.normpath(path)
        if ".." in path.split("/"):
            raise escape(path, "contains '..'")
        if normal != root and not normal.startswith(root.rstrip("/") + "/"):
            raise escape(path, f"is outside the workspace {workspace}")
        path = normal[len(root) :]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise escape(path, "contains '..'")
    return parts


def relative(parts: list[str]) -> str:
    return "/".join(parts) or "."


def open_beneath(
    root_fd: int,
    workspace: str,
    parts: list[str],
    *,
    shown: str,
    create_dirs: bool = False,
    on_created: Callable[[int, str], None] | None = None,
) -> tuple[int, str]:
    """Walk to the parent of the last component; returns `(parent_fd, name)`.

    `name` is `""` when `parts` names the workspace itself (then `parent_fd` is the workspace).
    When the last component is a symlink it is resolved here too, so the caller can open `name`
    with `O_NOFOLLOW` and a symlink that appears later fails instead of being followed.
    The caller owns `parent_fd` and must close it. `on_created(dir_fd, name)` is called for each
    directory made by `create_dirs`, so the caller can hand it to the sandbox user.

    Raises:
        SandboxError: `path_escape` if a symlink leads outside, `not_found` for a missing parent.
    """
    fds = [os.dup(root_fd)]
    todo = list(reversed(parts))
    hops = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":  # only ever from a symlink's target
                if len(fds) == 1:
                    raise escape(shown, "leads outside the workspace through a symlink")
                os.close(fds.pop())
                continue
            target = _readlink(name, fds[-1])
            if target is not None:
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise SandboxError(
                        f"too many symlinks in {shown!r}", code="path_escape", path=shown
                    )
                if target.startswith("/"):
                    inner = _absolute_inside(target, workspace)
                    if inner is None:
                        raise escape(shown, "leads outside the workspace through a symlink")
                    while len(fds) > 1:
                        os.close(fds.pop())
                    todo.extend(reversed(inner))
                else:
                    todo.extend(reversed(target.split("/")))
                continue
            if not todo:
                return fds.pop(), name
            fds.append(_open_dir(fds[-1], name, shown, create_dirs, on_created))
        return fds.pop(), ""
    finally:
        for fd in fds:
            os.close(fd)


def _absolute_inside(target: str, workspace: str) -> list[str] | None:
    root = workspace.rstrip("/")
    if target != root and not target.startswith(root + "/"):
        return None
    return target[len(root) :].split("/")


def _readlink(name: str, dir_fd: int) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _open_dir(
    parent: int,
    name: str,
    shown: str,
    create: bool,
    on_created: Callable[[int, str], None] | None,
) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise not_found(shown) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink after we looked
            raise escape(shown, "changed into a symlink while being resolved") from None
        if exc.errno == errno.ENOTDIR:
            raise SandboxError(
                f"{shown!r}: {name!r} is not a directory", code="not_a_directory", path=shown
            ) from None
        raise
    with suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
        if on_created is not None:
            on_created(parent, name)
    return _open_dir(parent, name, shown, False, None)
