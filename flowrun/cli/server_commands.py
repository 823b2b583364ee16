"""`flowrun serve`, `flowrun mcp` and `flowrun mcp config`.

Everything heavy (mcp, uvicorn, the app) is imported inside the handlers, so adding these
commands costs `flowrun --help` nothing. `flowrun mcp` speaks JSON-RPC on stdout: nothing else
may be printed there, so its messages go to stderr through logging.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

WS_MAX_FRAME_BYTES = 1024 * 1024
"""uvicorn closes a websocket (1009) past this; /ws refuses messages past 64 KiB itself, politely."""


def _settings() -> Any:
    from ..config import Settings

    return Settings.from_env()


async def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import create_app
    from ..tools.auth import TokenTable, create_operator_token

    settings = dataclasses.replace(_settings(), drive="never" if args.no_drive else "always", engine_kind="serve")
    if "FLOWRUN_PUBLIC_URL" not in settings.env:  # page links point at where we actually listen
        host = f"[{args.host}]" if ":" in args.host else args.host
        settings = dataclasses.replace(settings, public_url=f"http://{host}:{args.port}")
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print("Set FLOWRUN_PUBLIC_URL to the address clients use: Host and Origin checks admit only it "
                  "and loopback.", file=sys.stderr)
    tokens = TokenTable.from_config(settings.env, settings.home)
    if not len(tokens):
        create_operator_token(settings.home)
        tokens = TokenTable.from_config(settings.env, settings.home)
        print(f"No bearer tokens were configured: wrote one for the local operator to {settings.home / 'tokens'}",
              file=sys.stderr)
    app = create_app(settings, tokens, host=args.host, grace_s=args.grace)
    from ..runtime.access import LOCAL_OPERATOR

    print(f"flowrun serving on {settings.public_url} (MCP: {settings.public_url}/mcp, API: "
          f"{settings.public_url}/openapi.json)", file=sys.stderr)
    print(f"Open this link to log in (it works once): {app.state.web_auth.login_url(LOCAL_OPERATOR)}",
          file=sys.stderr)
    # SIGTERM, as for `flowrun worker`: the engine claims nothing more at once; open streams (a
    # websocket, an MCP wait) get a bounded grace to close, then the steps in flight get `--grace`
    # to finish, and leaving the engine releases the leases (a live worker takes the runs over;
    # with none, runs still in flight are marked interrupted). A second signal cuts it short.
    draining = app.state.draining

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            draining.begin()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, lifespan="on", ws="websockets-sansio",
                            ws_max_size=WS_MAX_FRAME_BYTES, ws_per_message_deflate=False,  # CPU per frame
                            log_level="info" if args.debug else "warning",
                            timeout_graceful_shutdown=5)
    await Server(config).serve()
    return 0


async def mcp_stdio(args: argparse.Namespace) -> int:
    from ..server import run_stdio

    await run_stdio(dataclasses.replace(_settings(), engine_kind="mcp"))
    return 0


async def mcp_config(args: argparse.Namespace) -> int:
    from ..flows.errors import UsageError
    from ..tools.config_snippets import flowrun_command, snippet

    settings = _settings()
    if args.client is None:
        raise UsageError("name the client: flowrun mcp config {claude-code|cursor|vscode|claude-desktop} [--http]")
    result = snippet(args.client, http=args.http, command=flowrun_command(), home=settings.home,
                     url=(args.url or settings.public_url).rstrip("/") + "/mcp", env=settings.env, name=args.name)
    print(result.where, file=sys.stderr)
    print(result.text)
    return 0


def add_server_commands(sub: Any) -> None:
    """Called from `build_parser` with its subparsers; handlers are named, imported when run."""
    from ..tools.config_snippets import CLIENTS

    p = sub.add_parser("serve", help="serve the HTTP app: MCP at /mcp, the JSON API, /ws and the pages; prints a login link")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--no-drive", action="store_true",
                   help="only serve: leave driving runs to `flowrun worker` processes")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds in-flight steps get to finish after SIGTERM, as for a worker (default 30)")
    p.set_defaults(handler="server_commands:serve")

    p = sub.add_parser("mcp", help="serve MCP on stdio as the local operator (for IDE configs)")
    p.set_defaults(handler="server_commands:mcp_stdio")
    msub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    c = msub.add_parser("config", help="print the MCP config snippet for a client")
    c.add_argument("client", nargs="?", choices=CLIENTS)
    c.add_argument("--http", action="store_true", help="connect to `flowrun serve` over HTTP instead of stdio")
    c.add_argument("--url", help="the server's base URL for --http (default: FLOWRUN_PUBLIC_URL)")
    c.add_argument("--name", default="flowrun", help="the server's name in the client (default flowrun)")
    c.set_defaults(handler="server_commands:mcp_config")
