"""`web_fetch` never reaches a private, loopback, link-local or metadata address, however it
is spelled, wherever a name resolves to, and on whatever hop of a redirect chain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import respx
from anyio.abc import SocketStream

from flowrun.flows.events import TranscriptEntry
from flowrun.runtime.tools.base import ToolContext, ToolOutput
from flowrun.runtime.tools.web import WebFetch, WebFetchInput, check_url, is_public, parse_address
from flowrun.sandboxes.noop import NoopSandbox

pytestmark = pytest.mark.anyio

SPELLINGS_OF_LOOPBACK = ["2130706433", "0x7f000001", "127.1", "0", "017700000001", "0177.0.0.1", "127.0.0.1."]
OTHER_PRIVATE = [
    "169.254.169.254",  # cloud metadata
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "[fd00:ec2::254]",  # AWS metadata over IPv6
    "[::ffff:127.0.0.1]",
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[fe80::1]",
    "192.168.1.1",
    "0xa.1",  # 10.0.0.1
    "224.0.0.1",
]


async def _emit(entry: TranscriptEntry) -> None:
    del entry


async def fetch(url: str, tool: WebFetch) -> ToolOutput:
    ctx = ToolContext(run_id="run_1", step=0, call_id="t", sandbox=NoopSandbox("run_1", {}, []), emit=_emit)
    return await tool.run(ctx, WebFetchInput(url=url))


@pytest.mark.parametrize("host", SPELLINGS_OF_LOOPBACK + OTHER_PRIVATE)
def test_every_spelling_of_a_private_address_is_refused(host: str) -> None:
    with pytest.raises(Exception, match="not allowed"):
        check_url(f"http://{host}/latest/meta-data/")


@pytest.mark.parametrize("host", ["93.184.216.34", "example.com", "[2606:2800:220:1::]", "1.1"])
def test_public_addresses_and_names_pass(host: str) -> None:
    assert check_url(f"https://{host}/") == f"https://{host}/"


def test_numeric_forms_are_read_like_the_c_library() -> None:
    assert str(parse_address("2130706433")) == "127.0.0.1"
    assert str(parse_address("0x7f000001")) == "127.0.0.1"
    assert str(parse_address("017700000001")) == "127.0.0.1"
    assert str(parse_address("127.1")) == "127.0.0.1"
    assert parse_address("example.com") is None and parse_address("1.2.3.4.5") is None
    assert not is_public(parse_address("0") or pytest.fail("0 is an address"))


@pytest.fixture
async def loopback_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A plain HTTP server on 127.0.0.1 that records what it is sent."""
    seen: list[bytes] = []

    async def serve(stream: SocketStream) -> None:
        async with stream:
            seen.append(await stream.receive())
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield port, seen
        tg.cancel_scope.cancel()


async def test_a_name_that_resolves_to_loopback_is_refused_at_connect(
    loopback_server: tuple[int, list[bytes]],
) -> None:
    port, seen = loopback_server

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]  # what a rebinding DNS server would answer

    with anyio.fail_after(10):
        out = await fetch(f"http://innocent.example:{port}/", WebFetch(resolver=resolver))
    assert out.is_error and "not allowed" in out.content and "127.0.0.1" in out.content
    assert seen == []


async def test_a_mixed_answer_is_refused_too(loopback_server: tuple[int, list[bytes]]) -> None:
    port, seen = loopback_server

    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    with anyio.fail_after(10):
        out = await fetch(f"http://innocent.example:{port}/", WebFetch(resolver=resolver))
    assert out.is_error and "not allowed" in out.content
    assert seen == []


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


@pytest.mark.parametrize("target", ["http://0x7f000001/secret", "http://2130706433:8765/api", "http://127.1/"])
async def test_a_redirect_to_a_private_address_is_refused(mock: respx.MockRouter, target: str) -> None:
    mock.get("https://docs.example.com/r").mock(return_value=httpx.Response(302, headers={"location": target}))
    out = await fetch("https://docs.example.com/r", WebFetch())
    assert out.is_error and "not allowed" in out.content
    assert len(mock.calls) == 1
