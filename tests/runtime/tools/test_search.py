"""`list_files` and `search_files` over a temp workspace, with ripgrep and without."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest

from flowrun.flows.errors import SandboxError
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.run import SandboxLink
from flowrun.runtime.tools.base import ToolContext, ToolOutput
from flowrun.runtime.tools.search import ListFiles, ListFilesInput, SearchFiles, SearchFilesInput
from flowrun.sandboxes.base import ExecResult, OutputCallback, Sandbox
from flowrun.sandboxes.noop import NoopSandbox

HAVE_RG = shutil.which("rg") is not None

FILES = {
    "README.md": "# Insights\nRun `make report` to build the report.\n",
    "src/reports.py": "def build_report(rows):\n    total = sum(rows)\n    return Report(total)\n",
    "src/util/strings.py": "def slug(text):\n    return text.lower()  # TODO: unicode\n",
    "tests/test_reports.py": "from src.reports import build_report\n\ndef test_total():\n    assert build_report([1])\n",
    "node_modules/pkg/index.js": "function build_report() {}\n",
    ".git/config": "[core]\n\tbuild_report = true\n",
    "assets/logo.bin": "build_report\0\x01\x02",
}


class DirSandbox:
    """A minimal real sandbox: a directory, and bash for `exec` (with a PATH we choose)."""

    def __init__(self, root: Path, *, path_env: str | None = None) -> None:
        self.root = root
        self.path_env = path_env or os.environ.get("PATH", "/usr/bin:/bin")
        self.commands: list[str] = []

    @property
    def link(self) -> SandboxLink:
        return SandboxLink(backend="test", id=str(self.root))

    @property
    def workspace(self) -> str:
        return str(self.root)

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        self.commands.append(command)
        workdir = self.root / cwd if cwd else self.root
        with anyio.fail_after(timeout or 60):
            result = await anyio.run_process(
                ["/bin/bash", "-c", command], cwd=workdir, env={"PATH": self.path_env}, check=False
            )
        return ExecResult(result.returncode, result.stdout.decode(), result.stderr.decode())

    def _resolve(self, path: str) -> Path:
        return self.root / path.lstrip("/").removeprefix(str(self.root).lstrip("/")).lstrip("/")

    async def read_file(self, path: str) -> bytes:
        target = self._resolve(path)
        if not target.is_file():
            raise SandboxError(f"{path!r} does not exist", code="not_found")
        return target.read_bytes()

    async def write_file(self, path: str, data: bytes) -> None:
        self._resolve(path).write_bytes(data)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[str]:
        base = self._resolve(path)
        if base.is_file():
            raise SandboxError(f"{path!r} is not a directory", code="not_a_directory")
        if not base.is_dir():
            raise SandboxError(f"{path!r} does not exist", code="not_found")
        found = base.rglob("*") if recursive else base.iterdir()
        return sorted(str(p.relative_to(self.root)) + ("/" if p.is_dir() else "") for p in found)


def make_workspace(root: Path) -> None:
    for name, text in FILES.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())


async def _emit(entry: TranscriptEntry) -> None:
    del entry


def ctx(sandbox: Sandbox, cwd: str | None = None) -> ToolContext:
    return ToolContext(run_id="run_1", step=0, call_id="c1", sandbox=sandbox, emit=_emit, cwd=cwd)


async def search(sandbox: Sandbox, cwd: str | None = None, **kw: object) -> ToolOutput:
    return await SearchFiles().run(ctx(sandbox, cwd), SearchFilesInput.model_validate(kw))


def sandboxes(tmp_path: Path) -> dict[str, Sandbox]:
    make_workspace(tmp_path)
    no_rg_path = tmp_path.parent / "empty-bin"
    no_rg_path.mkdir(exist_ok=True)
    out: dict[str, Sandbox] = {
        "python (no rg on PATH)": DirSandbox(tmp_path, path_env=str(no_rg_path)),
        "python (noop exec)": NoopSandbox("run_1", {k: v.encode() for k, v in FILES.items()}, []),
    }
    if HAVE_RG:
        out["rg"] = DirSandbox(tmp_path)
    return out


ENGINES = ["rg", "python (no rg on PATH)", "python (noop exec)"]


def pick(tmp_path: Path, engine: str) -> Sandbox:
    if engine == "rg" and not HAVE_RG:
        pytest.skip("ripgrep is not installed")
    return sandboxes(tmp_path)[engine]


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_search_finds_matches_and_skips_ignored_and_binary_files(
    tmp_path: Path, engine: str
) -> None:
    sandbox = pick(tmp_path, engine)
    out = await search(sandbox, pattern=r"build_report\(")
    assert not out.is_error
    assert out.content.splitlines() == [
        "src/reports.py:1: def build_report(rows):",
        "tests/test_reports.py:4:     assert build_report([1])",
    ]
    assert out.data["matches"] == 2 and out.data["truncated"] is False
    assert out.data["engine"] == ("rg" if engine == "rg" else "python")


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_search_options(tmp_path: Path, engine: str) -> None:
    sandbox = pick(tmp_path, engine)
    glob = await search(sandbox, pattern="build_report", glob="test_*.py")
    assert [line.split(":")[0] for line in glob.content.splitlines()] == [
        "tests/test_reports.py"
    ] * 2
    literal = await search(sandbox, pattern="sum(rows)", literal=True)
    assert literal.content == "src/reports.py:2:     total = sum(rows)"
    nocase = await search(sandbox, pattern="todo", ignore_case=True, path="src")
    assert nocase.content == "src/util/strings.py:2:     return text.lower()  # TODO: unicode"
    one_file = await search(sandbox, pattern="Report", path="src/reports.py")
    assert one_file.content.splitlines()[0].endswith("return Report(total)")
    none = await search(sandbox, pattern="nothing-like-this")
    assert not none.is_error and none.content.startswith("no matches")


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ENGINES)
async def test_results_are_capped_and_marked(tmp_path: Path, engine: str) -> None:
    sandbox = pick(tmp_path, engine)
    out = await search(sandbox, pattern="e", max_results=3)
    lines = out.content.splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("[results truncated at 3 matches")
    assert out.data["truncated"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ["rg", "python (no rg on PATH)"])
async def test_paths_are_relative_to_the_agents_cwd(tmp_path: Path, engine: str) -> None:
    sandbox = pick(tmp_path, engine)
    out = await search(sandbox, cwd="src", pattern="def ")
    assert [line.split(":")[0] for line in out.content.splitlines()] == [
        "reports.py",
        "util/strings.py",
    ]


@pytest.mark.anyio
async def test_invalid_regex_is_a_tool_error(tmp_path: Path) -> None:
    out = await search(DirSandbox(tmp_path), pattern="(unclosed")
    assert out.is_error and "invalid regular expression" in out.content


@pytest.mark.anyio
@pytest.mark.skipif(not HAVE_RG, reason="ripgrep is not installed")
async def test_rg_failure_is_reported(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    out = await search(DirSandbox(tmp_path), pattern="x", path="no/such/dir")
    assert out.is_error and out.content.startswith("rg failed:")


@pytest.mark.anyio
async def test_missing_path_without_rg(tmp_path: Path) -> None:
    out = await search(NoopSandbox("r", {"a.txt": b"x"}, []), pattern="x", path="nope")
    assert out.is_error


@pytest.mark.anyio
async def test_list_files(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    sandbox = DirSandbox(tmp_path)
    tool = ListFiles()
    top = await tool.run(ctx(sandbox), ListFilesInput())
    assert top.content.splitlines() == [
        ".git/",
        "README.md",
        "assets/",
        "node_modules/",
        "src/",
        "tests/",
    ]
    tree = await tool.run(ctx(sandbox), ListFilesInput(recursive=True))
    assert ".git/config" not in tree.content and "node_modules/pkg/index.js" not in tree.content
    assert "src/util/strings.py" in tree.content.splitlines()
    in_src = await tool.run(ctx(sandbox, cwd="src"), ListFilesInput(recursive=True))
    assert in_src.content.splitlines() == ["reports.py", "util/", "util/strings.py"]
    capped = await tool.run(ctx(sandbox), ListFilesInput(recursive=True, max_entries=2))
    assert capped.content.splitlines()[-1].startswith("[... ")
    assert capped.data["truncated"] is True
    missing = await tool.run(ctx(sandbox), ListFilesInput(path="nope"))
    assert missing.is_error
    assert await tool.preview(ctx(sandbox), ListFilesInput(path="src")) == {
        "path": "src",
        "recursive": False,
    }
