"""`flowrun mcp config CLIENT [--http]`: the exact snippet each MCP client needs.

stdio snippets name this installation's `flowrun` by absolute path and pin `FLOWRUN_HOME`, since
IDEs start servers without the user's shell (no venv on PATH, another working directory), and the
IDE's server must see the same runs as the CLI. HTTP snippets never contain a token: each refers
to one the client reads from the environment or asks for, the way that client supports it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Client = Literal["claude-code", "cursor", "vscode", "claude-desktop"]
CLIENTS: tuple[str, ...] = get_args(Client)
TOKEN_ENV = "FLOWRUN_TOKEN"
PASSED_ENV = ("FLOWRUN_PATH", "FLOWRUN_MODEL", "FLOWRUN_SCRIPTS", "FLOWRUN_PLAN", "FLOWRUN_PUBLIC_URL")


@dataclass(frozen=True)
class Snippet:
    text: str  # what to paste (stdout)
    where: str  # where it goes (stderr)


def flowrun_command() -> str:
    """The absolute path of the `flowrun` being run, else the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "flowrun" and argv0.exists():
        return str(argv0.absolute())
    return shutil.which("flowrun") or "flowrun"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)


def snippet(client: Client, *, http: bool, command: str, home: Path, url: str,
            env: Mapping[str, str] | None = None, name: str = "flowrun") -> Snippet:
    """The snippet for `client`; `url` is the MCP endpoint (e.g. http://127.0.0.1:8765/mcp)."""
    server_env = {"FLOWRUN_HOME": str(home.expanduser().absolute())}
    server_env.update({k: v for k, v in (env or {}).items() if k in PASSED_ENV and v})
    stdio = {"command": command, "args": ["mcp"], "env": server_env}
    source = f"a token from FLOWRUN_TOKENS or {home}/tokens (`flowrun serve` writes one there on first start)"
    token_note = f"Set {TOKEN_ENV} to {source}."
    if client == "claude-code":
        if http:
            text = (f"claude mcp add --transport http {shlex.quote(name)} {shlex.quote(url)} "
                    f"--header \"Authorization: Bearer ${TOKEN_ENV}\"")
            return Snippet(text, f"Run this in your project; your shell fills in the token. {token_note}")
        env_args = " ".join(f"--env {shlex.quote(f'{k}={v}')}" for k, v in server_env.items())
        # the name goes first: `--env` takes every value up to the next option, so a name after
        # it is read as another variable ("Invalid environment variable format")
        text = f"claude mcp add {shlex.quote(name)} --transport stdio {env_args} -- {shlex.quote(command)} mcp"
        return Snippet(text, "Run this in your project (add --scope user for every project).")
    if client == "cursor":
        if http:
            entry: dict[str, Any] = {"url": url, "headers": {"Authorization": f"Bearer ${{env:{TOKEN_ENV}}}"}}
            return Snippet(_json({"mcpServers": {name: entry}}),
                           f"Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project). {token_note}")
        return Snippet(_json({"mcpServers": {name: stdio}}),
                       "Add to ~/.cursor/mcp.json (or .cursor/mcp.json in a project).")
    if client == "vscode":
        if http:
            value = {
                "inputs": [{"type": "promptString", "id": "flowrun-token", "description": "flowrun bearer token",
                            "password": True}],
                "servers": {name: {"type": "http", "url": url,
                                   "headers": {"Authorization": "Bearer ${input:flowrun-token}"}}},
            }
            return Snippet(_json(value), "Add to .vscode/mcp.json; VS Code asks for the token once and stores it.")
        return Snippet(_json({"servers": {name: {"type": "stdio", **stdio}}}), "Add to .vscode/mcp.json.")
    if http:  # claude-desktop: its config file speaks stdio only; mcp-remote bridges to HTTP
        bridge = {"command": "npx", "args": ["-y", "mcp-remote", url, "--header", "Authorization:${FLOWRUN_AUTH}"],
                  "env": {"FLOWRUN_AUTH": "Bearer YOUR_FLOWRUN_TOKEN"}}
        return Snippet(_json({"mcpServers": {name: bridge}}),
                       "Add to claude_desktop_config.json (Settings > Developer > Edit Config) and replace "
                       f"YOUR_FLOWRUN_TOKEN with {source}; needs Node's npx.")
    return Snippet(_json({"mcpServers": {name: stdio}}),
                   "Add to claude_desktop_config.json (Settings > Developer > Edit Config), then restart Claude.")
