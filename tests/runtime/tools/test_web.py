"""`web_fetch` against respx-mocked URLs: nothing here reaches the network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import respx

from flowrun.flows.events import TranscriptEntry
from flowrun.runtime.tools.base import ToolContext, ToolOutput
from flowrun.runtime.tools.web import WebFetch, WebFetchInput, html_to_text
from flowrun.sandboxes.noop import NoopSandbox

PAGE = """<!doctype html>
<html><head><title>Flowrun  docs</title><style>body { color: red }</style>
<script>window.track = true;</script></head>
<body>
<nav><a href="/">Home</a> <a href="/blog">Blog</a></nav>
<h1>Getting   started</h1>
<p>Install with <code>pip install flowrun</code>, then read the <a href="/guide">guide</a>.</p>
<ul><li>scripted model</li><li>real models &amp; tools</li></ul>
<pre>def hello():
    return "world"
</pre>
<footer>(c) nobody</footer>
</body></html>"""


async def _emit(entry: TranscriptEntry) -> None:
    del entry


def context() -> ToolContext:
    return ToolContext(
        run_id="run_1", step=0, call_id="toolu_1", sandbox=NoopSandbox("run_1", {}, []), emit=_emit
    )


async def fetch(url: str, tool: WebFetch | None = None, **kw: object) -> ToolOutput:
    tool = tool or WebFetch()
    args = WebFetchInput.model_validate({"url": url, **kw})
    return await tool.run(context(), args)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True) as router:
        yield router


@pytest.mark.anyio
async def test_html_becomes_readable_text(mock: respx.MockRouter) -> None:
    mock.get("https://docs.example.com/start").mock(
        return_value=httpx.Response(
            200, text=PAGE, headers={"content-type": "text/html; charset=utf-8"}
        )
    )
    tool = WebFetch()
    args = WebFetchInput(url="https://docs.example.com/start")
    assert await tool.preview(context(), args) == {"url": "https://docs.example.com/start"}
    out = await tool.run(context(), args)

    assert not out.is_error
    assert out.content.startswith(
        "URL: https://docs.example.com/start\nStatus: 200\nContent-Type: text/html\nTitle: Flowrun docs\n\n"
    )
    body = out.content.split("\n\n", 1)[1]
    assert body == (
        "# Getting started\n\n"
        "Install with pip install flowrun, then read the [guide](https://docs.example.com/guide).\n\n"
        "- scripted model\n- real models & tools\n\n"
        'def hello():\n    return "world"'
    )
    assert "window.track" not in out.content and "Home" not in out.content
    assert out.data["status"] == 200
    assert out.data["title"] == "Flowrun docs"
    assert out.data["preview"].startswith("# Getting started")
    assert out.data["truncated"] is False


@pytest.mark.anyio
async def test_text_and_json_pass_through(mock: respx.MockRouter) -> None:
    mock.get("https://example.com/data.json").mock(
        return_value=httpx.Response(200, json={"ok": True})
    )
    mock.get("https://example.com/page.html").mock(
        return_value=httpx.Response(200, text="<b>kept</b>", headers={"content-type": "text/html"})
    )
    out = await fetch("https://example.com/data.json")
    assert out.content.endswith('{"ok":true}') or out.content.endswith('{"ok": true}')
    raw = await fetch("https://example.com/page.html", raw=True)
    assert raw.content.endswith("<b>kept</b>")


@pytest.mark.anyio
async def test_declared_charset_is_honoured(mock: respx.MockRouter) -> None:
    mock.get("https://example.com/latin").mock(
        return_value=httpx.Response(
            200,
            content="café crème".encode("latin-1"),
            headers={"content-type": "text/plain; charset=ISO-8859-1"},
        )
    )
    assert (await fetch("https://example.com/latin")).content.endswith("café crème")


@pytest.mark.anyio
async def test_size_cap_reads_no_more_than_the_cap(mock: respx.MockRouter) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 1000

    mock.get("https://example.com/huge.txt").mock(
        return_value=httpx.Response(200, content=endless(), headers={"content-type": "text/plain"})
    )
    out = await fetch(
        "https://example.com/huge.txt", tool=WebFetch(max_bytes=10_000), max_chars=2000
    )
    assert "[body cut at 10000 bytes]" in out.content
    assert out.data["bytes"] == 10_000 and out.data["truncated"] is True
    assert len(sent) < 20  # stopped reading, did not download the megabyte
    assert "characters truncated" in out.content  # then capped to max_chars for the model


@pytest.mark.anyio
async def test_timeouts_are_tool_errors(mock: respx.MockRouter) -> None:
    mock.get("https://slow.example.com/a").mock(side_effect=httpx.ReadTimeout("read timed out"))
    out = await fetch("https://slow.example.com/a")
    assert out.is_error and "timed out" in out.content

    never = anyio.Event()

    async def drip() -> AsyncIterator[bytes]:
        yield b"first byte, then nothing"
        await never.wait()
        yield b"unreachable"

    mock.get("https://slow.example.com/drip").mock(
        return_value=httpx.Response(200, content=drip(), headers={"content-type": "text/plain"})
    )
    with anyio.fail_after(5):
        out = await fetch("https://slow.example.com/drip", tool=WebFetch(timeout_s=0.2))
    assert out.is_error
    assert out.content == "timed out after 0.2 s fetching https://slow.example.com/drip"
    assert out.data == {"url": "https://slow.example.com/drip"}


@pytest.mark.anyio
async def test_redirects_are_followed_and_bounded(mock: respx.MockRouter) -> None:
    mock.get("https://example.com/old").mock(
        return_value=httpx.Response(301, headers={"location": "/new"})
    )
    mock.get("https://example.com/new").mock(return_value=httpx.Response(200, text="moved here"))
    out = await fetch("https://example.com/old")
    assert out.data["final_url"] == "https://example.com/new"
    assert out.content.endswith("moved here")

    mock.get("https://example.com/loop").mock(
        return_value=httpx.Response(302, headers={"location": "/loop"})
    )
    looped = await fetch("https://example.com/loop", tool=WebFetch(max_redirects=3))
    assert looped.is_error and "more than 3 redirects" in looped.content

    mock.get("https://example.com/sneaky").mock(
        return_value=httpx.Response(
            302, headers={"location": "http://169.254.169.254/latest/meta-data/"}
        )
    )
    sneaky = await fetch("https://example.com/sneaky")
    assert sneaky.is_error and "169.254.169.254" in sneaky.content


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/f",
        "http://localhost:8765/api",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://10.1.2.3/",
    ],
)
async def test_refused_urls(mock: respx.MockRouter, url: str) -> None:
    out = await fetch(url)
    assert out.is_error
    assert not mock.calls


@pytest.mark.anyio
async def test_private_addresses_allowed_when_configured(mock: respx.MockRouter) -> None:
    mock.get("http://127.0.0.1:9000/health").mock(return_value=httpx.Response(200, text="ok"))
    out = await fetch("http://127.0.0.1:9000/health", tool=WebFetch(allow_private=True))
    assert not out.is_error and out.content.endswith("ok")


@pytest.mark.anyio
async def test_http_errors_binary_bodies_and_dead_hosts(mock: respx.MockRouter) -> None:
    mock.get("https://example.com/missing").mock(
        return_value=httpx.Response(404, text="no such page")
    )
    missing = await fetch("https://example.com/missing")
    assert (
        missing.is_error
        and "Status: 404" in missing.content
        and missing.content.endswith("no such page")
    )

    mock.get("https://example.com/logo.png").mock(
        return_value=httpx.Response(
            200, content=b"\x89PNG\r\n\x1a\n\0\0", headers={"content-type": "image/png"}
        )
    )
    image = await fetch("https://example.com/logo.png")
    assert image.is_error and "image/png" in image.content

    mock.get("https://down.example.com/").mock(
        side_effect=httpx.ConnectError("Name or service not known")
    )
    down = await fetch("https://down.example.com/")
    assert down.is_error and down.content.startswith("could not fetch https://down.example.com/")


def test_html_to_text_edge_cases() -> None:
    title, text = html_to_text(
        "<head><title>T</title><body><p>unclosed head <a href='#top'>top</a> <a>bare</a>"
    )
    assert title == "T"
    assert text == "unclosed head top bare"
    _, table = html_to_text(
        "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
    )
    assert table == "a | b\n1 | 2"
