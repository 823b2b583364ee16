"""The app under uvicorn (with its `websockets` implementation) on an ephemeral loopback port,
and small helpers for the JSON API and `/ws` tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import uvicorn
from starlette.applications import Starlette

from flowrun.config import Settings
from flowrun.server import create_app
from flowrun.tools.auth import TokenTable
from flowrun.web.client import Client, ClientError
from flowrun.web.protocol import Ack, EventMessage, ServerMessage

from ..tools.mcpkit import ANA, BOB, NOBODY, OPS, READER, STRANGER, TOKENS, environment

__all__ = ["ANA", "BOB", "NOBODY", "OPS", "READER", "STRANGER", "Served", "environment", "events_until", "served"]

WAIT_S = 30


@dataclass
class Served:
    base: str
    app: Starlette
    settings: Settings

    def http(self, token: str | None = ANA, **kwargs: Any) -> httpx2.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.AsyncClient(base_url=self.base, headers=headers, timeout=WAIT_S, **kwargs)

    def ws(self, token: str | None = ANA, **kwargs: Any) -> Any:
        return Client.connect(self.base, token=token, **kwargs)


@asynccontextmanager
async def served(env: Mapping[str, str], tokens: Mapping[str, str] = TOKENS) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env({**env, "FLOWRUN_PUBLIC_URL": base})
    table = TokenTable.parse((f"{token}={who}", "test") for token, who in tokens.items())
    app = create_app(settings, table)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="websockets-sansio",
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:  # connections wait in the backlog until the lifespan has opened the engine
                yield Served(base, app, settings)
            finally:
                server.should_exit = True


async def events_until(client: Client, last_seq: int, *, run_id: str | None = None) -> list[EventMessage]:
    """Event messages until one with seq >= last_seq arrives (bounded)."""
    got: list[EventMessage] = []
    with anyio.fail_after(WAIT_S):
        while not got or got[-1].seq < last_seq:
            message: ServerMessage = await client.receive()
            if isinstance(message, EventMessage) and (run_id is None or message.run_id == run_id):
                got.append(message)
    return got


async def refusal(client: Client, coro: Any) -> ClientError:
    try:
        await coro
    except ClientError as exc:
        return exc
    raise AssertionError("expected a refusal")


def ack_ok(ack: Ack) -> Ack:
    assert ack.type == "ack"
    return ack
