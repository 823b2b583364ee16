"""`flowrun mcp config`: one snippet per client and transport, valid and pasteable."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from flowrun.cli import main
from flowrun.tools.config_snippets import CLIENTS, Client, snippet

HOME = Path("/srv/flowrun-home")
URL = "http://127.0.0.1:8765/mcp"
COMMAND = "/opt/venv/bin/flowrun"


def _make(client: Client, http: bool) -> Any:
    return snippet(client, http=http, command=COMMAND, home=HOME, url=URL,
                   env={"FLOWRUN_MODEL": "scripted", "ANTHROPIC_API_KEY": "sk-secret"})


@pytest.mark.parametrize("client", ["cursor", "claude-desktop"])
def test_mcp_servers_json_stdio(client: Client) -> None:
    server = json.loads(_make(client, http=False).text)["mcpServers"]["flowrun"]
    assert server == {"command": COMMAND, "args": ["mcp"],
                      "env": {"FLOWRUN_HOME": str(HOME), "FLOWRUN_MODEL": "scripted"}}  # no secrets copied


def test_vscode() -> None:
    stdio = json.loads(_make("vscode", http=False).text)["servers"]["flowrun"]
    assert stdio["type"] == "stdio" and stdio["command"] == COMMAND and stdio["args"] == ["mcp"]
    http = json.loads(_make("vscode", http=True).text)
    assert http["servers"]["flowrun"] == {"type": "http", "url": URL,
                                          "headers": {"Authorization": "Bearer ${input:flowrun-token}"}}
    assert http["inputs"][0]["id"] == "flowrun-token" and http["inputs"][0]["password"] is True


def test_cursor_http_reads_the_token_from_the_environment() -> None:
    server = json.loads(_make("cursor", http=True).text)["mcpServers"]["flowrun"]
    assert server == {"url": URL, "headers": {"Authorization": "Bearer ${env:FLOWRUN_TOKEN}"}}


def test_claude_desktop_http_goes_through_mcp_remote() -> None:
    server = json.loads(_make("claude-desktop", http=True).text)["mcpServers"]["flowrun"]
    assert server["command"] == "npx" and server["args"][:3] == ["-y", "mcp-remote", URL]
    assert server["args"][3:] == ["--header", "Authorization:${FLOWRUN_AUTH}"]


def test_claude_code_commands() -> None:
    stdio = shlex.split(_make("claude-code", http=False).text)
    # Claude Code's form: `claude mcp add NAME --transport stdio --env K=V -- CMD ARGS` (a name
    # after --env is read as another variable: "Invalid environment variable format: flowrun")
    assert stdio[:6] == ["claude", "mcp", "add", "flowrun", "--transport", "stdio"]
    options = stdio[6:stdio.index("--")]
    assert options[::2] == ["--env"] * (len(options) // 2) and all("=" in v for v in options[1::2])
    assert stdio[stdio.index("--") + 1:] == [COMMAND, "mcp"]
    assert f"FLOWRUN_HOME={HOME}" in stdio
    http = shlex.split(_make("claude-code", http=True).text, posix=False)
    assert http[:6] == ["claude", "mcp", "add", "--transport", "http", "flowrun"]
    assert http[6] == URL and http[-1] == '"Authorization: Bearer $FLOWRUN_TOKEN"'


@pytest.mark.parametrize("client", CLIENTS)
def test_the_cli_prints_the_snippet_on_stdout_and_the_advice_on_stderr(
        client: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWRUN_HOME", str(tmp_path))
    monkeypatch.setenv("FLOWRUN_PUBLIC_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("FLOWRUN_TOKEN", "secret-0123456789abcdef")
    assert main(["mcp", "config", client, "--http"]) == 0
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:9999/mcp" in out
    assert "secret-0123456789abcdef" not in out  # snippets refer to the token, never contain it
    assert err.strip()
    assert main(["mcp", "config", client]) == 0
    out, _ = capsys.readouterr()
    assert str(tmp_path) in out


def test_the_cli_asks_for_a_client(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "config"]) == 2
    assert "name the client" in capsys.readouterr().err
