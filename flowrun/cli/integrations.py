"""`flowrun integrations`: connect GitHub (the token is checked, stored 0600, never shown again)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..flows.errors import UsageError
from ..runtime.access import LOCAL_OPERATOR
from ..runtime.integrations import GitHub, connect_github
from .commands import _settings, console
from .safe import markup as escape  # markup escaped, control characters shown


def _read_token(args: argparse.Namespace) -> str:
    if args.token_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass("GitHub token (fine-grained: contents and pull requests, read and write): ").strip()
    if not token:
        raise UsageError("no token given: nothing was stored")
    return token


async def integrations(args: argparse.Namespace) -> int:
    settings = _settings()
    github = GitHub.from_env(settings.env, settings.home)
    actor = args.actor or LOCAL_OPERATOR.id
    if args.action == "connect":
        connection = await connect_github(github, actor, _read_token(args))
        login = connection.login
        console.print(f"GitHub connected for {escape(actor)} as {escape(login)}; the token is stored in "
                      f"{github.path} (0600) and will not be shown again")
    elif args.action == "disconnect":
        if github.disconnect(actor):
            console.print(f"GitHub disconnected for {escape(actor)}")
        else:
            console.print(f"GitHub was not connected for {escape(actor)}")
    else:
        connections = github.connections()
        if not connections:
            state = "GITHUB_TOKEN is set" if github.env_token else "not connected"
            console.print(f"github  {state}  (connect: flowrun integrations connect github)")
        for who, connection in connections.items():
            console.print(f"github  {escape(who)} as {escape(connection.login)}  since {connection.connected_at[:16]}")
    return 0
