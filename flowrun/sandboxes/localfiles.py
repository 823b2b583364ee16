"""File access to a local workspace on behalf of the engine, which may run as root.

Every operation goes through `paths.open_beneath`, so a symlink planted by a command cannot make
the server read or write outside the workspace. These functions block: the sandbox calls them in
a worker thread. Listing semantics are shared with the other backends: paths relative to the
workspace, directories with a trailing `/`, sorted; a recursive listing does not descend into
`.git`.
"""

from __future__ import annotations

import errno
import os
import stat

from ..flows.errors import SandboxError
from .paths import escape, not_found, open_beneath, relative, workspace_parts

_SKIP_DIRS = frozenset({".git"})


class WorkspaceFiles:
    def __init__(
        self, root: os.PathLike[str] | str, *, owner: tuple[int, int] | None, shown_as: str
    ) -> None:
        self.root = os.fspath(root)
        self.owner = owner
        self.shown_as = shown_as  # the workspace path as commands see it

    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SandboxError(
                f"the workspace {self.root} is gone", code="workspace_gone", path=self.root
            ) from None

    def _locate(self, path: str, *, create_dirs: bool = False) -> tuple[int, str, list[str]]:
        parts = workspace_parts(path, self.shown_as)
        root_fd = self._open_root()
        try:
            parent, name = open_beneath(
                root_fd,
                self.shown_as,
                parts,
                shown=path,
                create_dirs=create_dirs,
                on_created=self._give_dir if create_dirs else None,
            )
        finally:
            os.close(root_fd)
        return parent, name, parts

    def _give_dir(self, dir_fd: int, name: str) -> None:
        if self.owner is not None:
            os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    def read(self, path: str) -> bytes:
        parent, name, _ = self._locate(path)
        try:
            if not name:
                raise _is_dir(path)
            fd = _open_regular(name, os.O_RDONLY, parent, path)
            try:
                with os.fdopen(fd, "rb", closefd=False) as handle:
                    return handle.read()
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def write(self, path: str, data: bytes) -> None:
        parent, name, _ = self._locate(path, create_dirs=True)
        try:
            if not name:
                raise _is_dir(path)
            fd = _open_regular(name, os.O_WRONLY | os.O_CREAT, parent, path)
            try:
                os.ftruncate(fd, 0)
                if self.owner is not None:
                    os.fchown(fd, *self.owner)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                raise _io_error(path, exc) from None
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def directory(self, path: str) -> list[str]:
        """The components, below the workspace, of the directory `path` names after resolving
        its symlinks (which must stay inside). Raises SandboxError (`not_found`,
        `not_a_directory`, `path_escape`) rather than anything that names a host path."""
        parent, name, parts = self._locate(path)
        try:
            fd = _open(name, os.O_RDONLY | os.O_DIRECTORY, parent, path) if name else os.dup(parent)
        finally:
            os.close(parent)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return parts  # no /proc: the walk above already refused every way out
        finally:
            os.close(fd)
        root = os.path.realpath(self.root)
        if real == root:
            return []
        if not real.startswith(root + "/"):
            raise escape(path, "leads outside the workspace")
        return real[len(root) + 1 :].split("/")

    def list(self, path: str, recursive: bool) -> list[str]:
        parent, name, parts = self._locate(path)
        try:
            fd = _open(name, os.O_RDONLY | os.O_DIRECTORY, parent, path) if name else os.dup(parent)
        finally:
            os.close(parent)
        prefix = "" if not parts else relative(parts) + "/"
        try:
            if not recursive:
                with os.scandir(fd) as entries:
                    found = [
                        prefix + e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
                        for e in entries
                    ]
                return sorted(found)
            out: list[str] = []
            for top, dirs, files, _dir_fd in os.fwalk(".", dir_fd=fd):
                rel = "" if top == "." else top[2:] + "/"
                out.extend(prefix + rel + d + "/" for d in dirs)
                out.extend(prefix + rel + f for f in files)
                dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            return sorted(out)
        finally:
            os.close(fd)


def _open(name: str, flags: int, dir_fd: int, shown: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except FileNotFoundError:
        raise not_found(shown) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise escape(shown, "is a symlink that changed while being resolved") from None
        if exc.errno == errno.ENOTDIR:
            raise SandboxError(
                f"{shown!r} is not a directory", code="not_a_directory", path=shown
            ) from None
        if exc.errno == errno.EISDIR:
            raise _is_dir(shown) from None
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO nobody reads
            raise _not_regular(shown, "a socket or a FIFO") from None
        raise _io_error(shown, exc) from None


def _open_regular(name: str, flags: int, dir_fd: int, shown: str) -> int:
    """Open a regular file and nothing else. A FIFO would block the open (and the read) for
    ever and a device is not the agent's to read: both are refused before and after opening
    (`O_NONBLOCK` so that opening a FIFO cannot block)."""
    try:
        info: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        info = None  # created below (when writing)
    except OSError as exc:
        raise _io_error(shown, exc) from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise _is_dir(shown)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise _not_regular(shown, _kind(info.st_mode))
    fd = _open(name, flags | os.O_NONBLOCK, dir_fd, shown)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _is_dir(shown)
        if not stat.S_ISREG(mode):
            raise _not_regular(shown, _kind(mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(shown: str, kind: str) -> SandboxError:
    return SandboxError(
        f"{shown!r} is {kind}, not a regular file: only regular files can be read or written",
        code="not_a_regular_file",
        path=shown,
    )


def _io_error(shown: str, exc: OSError) -> SandboxError:
    """An unexpected OS error, named by the caller's path (never the host's)."""
    return SandboxError(f"{shown!r}: {exc.strerror or exc}", code="io_error", path=shown)


def _is_dir(path: str) -> SandboxError:
    return SandboxError(f"{path!r} is a directory", code="is_a_directory", path=path)
