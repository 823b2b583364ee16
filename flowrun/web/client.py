"""A Python client of `/ws`, usable on its own (it needs only `websockets` and flowrun's models).

    async with Client.connect("http://127.0.0.1:8765", token=TOKEN) as client:
        ack = await client.decide(run_id, "approve", step="Create PR")

    async for event in follow("http://127.0.0.1:8765", run_id, token=TOKEN):
        ...  # every event after `after_seq`, in order, exactly once, across reconnects

`follow` reconnects after a dropped connection (or a server that closed it as a slow consumer)
and resubscribes from the last seq it handed out, so its caller sees no gap and no duplicate.
A refusal (bad token, foreign Origin, unknown run, missing scope) is not retried: it raises
`ClientError` with the server's code.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..flows.enums import DecisionKind
from ..flows.events import Event
from .protocol import (
    CLOSE_UNAUTHENTICATED,
    Ack,
    Auth,
    Batch,
    ClientMessage,
    Decide,
    Error,
    EventMessage,
    Ping,
    Pong,
    SingleMessage,
    Subscribe,
    Topic,
    Unsubscribe,
    server_message,
)

log = logging.getLogger("flowrun.web")

MAX_FRAME_BYTES = 16 * 1024 * 1024
OPEN_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


class ClientError(Exception):
    """The server refused (an `error` message, a refused handshake, a closed connection)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code in ("connection_lost", "slow_consumer", "unavailable")


def ws_url(server: str) -> str:
    """`http://host:port` (or `ws://host:port/ws`) to the `/ws` URL."""
    parts = urlsplit(server if "://" in server else f"http://{server}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not an http(s) or ws(s) URL: {server!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Client:
    """One connection to `/ws`. Answers (`ack`, `error`, `pong`) are matched by `ref`; other
    messages (events, session and task rows) queue for `receive`."""

    def __init__(self, connection: ClientConnection) -> None:
        self._ws = connection
        self._refs = itertools.count(1)
        self._pending: deque[SingleMessage] = deque()
        self._unpacked: deque[SingleMessage] = deque()

    @classmethod
    def connect(cls, server: str, *, token: str | None = None, origin: str | None = None,
                open_timeout: float = OPEN_TIMEOUT_S) -> _Connecting:
        """Use as `async with Client.connect(url, token=...) as client`. The token travels in
        the Authorization header of the handshake."""
        return _Connecting(server, token, origin, open_timeout)

    async def send(self, message: ClientMessage) -> None:
        await self._ws.send(message.model_dump_json(exclude_none=True))

    async def _next(self) -> SingleMessage:
        """The next message; a `batch` is unpacked and its messages come one by one."""
        if self._unpacked:
            return self._unpacked.popleft()
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        try:
            message = server_message.validate_json(raw)
        except ValidationError as exc:
            raise ClientError("invalid_message", f"the server sent a message this client does not know: {exc}") from exc
        if isinstance(message, Batch):
            self._unpacked.extend(message.messages[1:])
            return message.messages[0]
        return message

    async def receive(self) -> SingleMessage:
        """The next event, row or unsolicited error (the messages of a `batch` one by one)."""
        if self._pending:
            return self._pending.popleft()
        return await self._next()

    async def request(self, message: ClientMessage, within_s: float = REQUEST_TIMEOUT_S) -> Ack | Pong:
        """Send and wait for the answer with the same ref; an `error` answer raises ClientError."""
        ref = getattr(message, "ref", None)
        if ref is None:
            ref = f"r{next(self._refs)}"
            message = message.model_copy(update={"ref": ref})
        await self.send(message)
        with anyio.fail_after(within_s):
            while True:
                answer = await self._next()
                if isinstance(answer, Ack | Pong | Error) and answer.ref == ref:
                    if isinstance(answer, Error):
                        raise ClientError(answer.code, answer.message, **(answer.model_extra or {}))
                    return answer
                self._pending.append(answer)

    async def _ack(self, message: ClientMessage) -> Ack:
        answer = await self.request(message)
        assert isinstance(answer, Ack)
        return answer

    async def authenticate(self, token: str) -> Ack:
        return await self._ack(Auth(token=token))

    async def subscribe(self, run_id: str | None = None, *, after_seq: int = 0, topic: Topic | None = None,
                        chat_id: str | None = None) -> Ack:
        return await self._ack(Subscribe(run_id=run_id, chat_id=chat_id, topic=topic, after_seq=after_seq))

    async def unsubscribe(self, run_id: str | None = None, *, topic: Topic | None = None,
                          chat_id: str | None = None) -> Ack:
        return await self._ack(Unsubscribe(run_id=run_id, chat_id=chat_id, topic=topic))

    async def decide(self, run_id: str, decision: DecisionKind | str, *, comment: str = "",
                     step: int | str | None = None, decision_id: str | None = None,
                     expected_version: int | None = None) -> Ack:
        return await self._ack(Decide(run_id=run_id, decision=DecisionKind(decision), comment=comment, step=step,
                                      decision_id=decision_id, expected_version=expected_version))

    async def ping(self) -> Pong:
        answer = await self.request(Ping())
        assert isinstance(answer, Pong)
        return answer

    async def close(self) -> None:
        await self._ws.close()


class _Connecting:
    def __init__(self, server: str, token: str | None, origin: str | None, open_timeout: float) -> None:
        self.url = ws_url(server)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.origin = origin
        self.open_timeout = open_timeout
        self._client: Client | None = None

    async def __aenter__(self) -> Client:
        try:
            ws = await connect(self.url, additional_headers=self.headers, origin=self.origin,  # type: ignore[arg-type]
                               compression=None, proxy=None, open_timeout=self.open_timeout,
                               max_size=MAX_FRAME_BYTES)
        except InvalidStatus as exc:
            status = exc.response.status_code
            code = {401: "unauthenticated", 403: "forbidden"}.get(status, "handshake_refused")
            raise ClientError(code, f"the server refused the websocket ({status})", status=status) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ClientError("unavailable", f"cannot reach {self.url}: {exc}") from None
        self._client = Client(ws)
        return self._client

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()


def _closed_error(exc: ConnectionClosed) -> ClientError:
    code = exc.rcvd.code if exc.rcvd is not None else 1006
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if code == CLOSE_UNAUTHENTICATED:
        return ClientError("unauthenticated", reason or "the server closed the connection: not authenticated")
    if code == 4008:
        return ClientError("slow_consumer", reason or "the server closed the connection: reading too slowly")
    return ClientError("connection_lost", f"the connection closed ({code} {reason})".strip(), close_code=code)


async def follow(server: str, run_id: str, *, token: str | None = None, after_seq: int = 0,
                 max_attempts: int = 8, on_reconnect: Callable[[int, ClientError], None] | None = None,
                 origin: str | None = None) -> AsyncIterator[Event]:
    """Every event of `run_id` after `after_seq`, then live ones, for as long as the caller
    iterates; a dropped connection is reopened (with backoff, at most `max_attempts` times in a
    row without getting anything) and resubscribed from the last seq handed out.

    Raises:
        ClientError: a refusal, or `max_attempts` failed reconnects in a row.
    """
    last = after_seq
    failures = 0
    while True:
        try:
            async with Client.connect(server, token=token, origin=origin) as client:
                await client.subscribe(run_id, after_seq=last)
                failures = 0
                while True:
                    message = await client.receive()
                    if isinstance(message, EventMessage):
                        if message.seq <= last:
                            continue
                        event = Event.model_validate(message.event)
                        last = event.seq
                        yield event
                    elif isinstance(message, Error):
                        raise ClientError(message.code, message.message, **(message.model_extra or {}))
        except ClientError as exc:
            if not exc.retryable:
                raise
            failures += 1
            if failures > max_attempts:
                raise
            delay = BACKOFF_S[min(failures - 1, len(BACKOFF_S) - 1)]
            log.info("the connection to %s dropped (%s); reconnecting from seq %d in %.2fs",
                     server, exc.code, last, delay)
            if on_reconnect is not None:
                on_reconnect(last, exc)
            await anyio.sleep(delay)
