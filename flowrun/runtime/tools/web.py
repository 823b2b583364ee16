"""`web_fetch`: read a web page as text.

The fetch runs in the engine process (not in the sandbox), so it is fenced: http(s) only; an
overall deadline on top of httpx's per-operation timeouts (a server dripping one byte a second
never trips a read timeout); a byte cap read from the stream, never the whole body first;
redirects followed by hand, at most `max_redirects`, each hop checked like the first; and no
loopback, private, link-local, shared, multicast or metadata address unless `allow_private`.
That is checked twice: on the URL (every numeric spelling of an address, such as `2130706433`,
`0x7f000001`, `127.1` or `017700000001`, is read the way the C library would read it), and
on the address actually connected to: the connection's host name is resolved by us, every
address it resolves to is checked, and the socket is opened to exactly the address we checked
(so DNS cannot answer differently between the check and the connect). TLS still verifies the
certificate against the host name. Environment proxies are not used (a proxy would resolve the
name itself, out of our sight).

HTML becomes readable text with the stdlib `html.parser` (headings, lists and links kept as
light markdown; scripts, styles and page chrome dropped): good enough for docs and READMEs,
without a heavy dependency.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin, urlsplit

import anyio
from pydantic import BaseModel, Field

from .base import MAX_TOOL_OUTPUT_CHARS, ToolContext, ToolOutput, cap_output

if TYPE_CHECKING:
    import httpx2

USER_AGENT = "flowrun-web-fetch/0.1 (+https://github.com/flowrun)"
PREVIEW_CHARS = 500
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-yaml",
)
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class WebFetchInput(BaseModel):
    url: str = Field(description="The http(s) URL to fetch.")
    max_chars: int = Field(
        default=20_000, ge=500, le=MAX_TOOL_OUTPUT_CHARS, description="Cap on the text returned."
    )
    raw: bool = Field(
        default=False, description="Return the body as-is instead of converting HTML to text."
    )


class FetchRefused(Exception):
    """The URL may not be fetched; the message says why (shown to the agent)."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """`host` read as `inet_aton` reads it (1 to 4 parts, each decimal, octal with a leading 0,
    or hex with 0x), which is how the resolver treats `127.1` or `2130706433`; else None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    if any(n < 0 for n in numbers):
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_address(host: str) -> Address | None:
    """The address a host name literally is (in any spelling), or None for a real name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return _legacy_ipv4(host)


def is_public(address: Address) -> bool:
    """True only for globally routable unicast addresses (an IPv6 address that embeds an IPv4
    one, mapped, NAT64 or 6to4, is judged by the IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address in _6TO4:
            embedded = address.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def check_url(url: str, *, allow_private: bool = False) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchRefused(f"{url!r} has no host")
    if not allow_private:
        name = host.rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            raise FetchRefused(f"{host} is this machine; fetching it is not allowed")
        address = parse_address(host)
        if address is not None and not is_public(address):
            raise FetchRefused(_private(host, address))
    return url.strip()


def _private(host: str, address: Address) -> str:
    shown = host if str(address) == host else f"{host} ({address})"
    return f"{shown} is a private, loopback, link-local or metadata address; fetching it is not allowed"


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver, off the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend:
    """httpcore's network backend, connecting only to an address that passed the check."""

    def __init__(self, inner: Any, resolver: Resolver) -> None:
        self._inner = inner
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's own signature
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        literal = parse_address(host)
        try:
            addresses = [str(literal)] if literal is not None else await self._resolve(host, port)
        except OSError as exc:
            raise FetchRefused(f"could not resolve {host}: {exc.strerror or exc}") from None
        if not addresses:
            raise FetchRefused(f"{host} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not is_public(address):
                raise FetchRefused(_private(host, address))
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise FetchRefused("unix sockets cannot be fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(resolver: Resolver = resolve) -> httpx2.AsyncBaseTransport:
    """An httpx transport whose every connection goes to a checked, public address."""
    import httpcore2
    import httpx2

    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    ssl_context = httpx2.create_ssl_context(trust_env=False)
    # httpx builds its pool privately; this one is the same but for the network backend
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=ssl_context,
        network_backend=_GuardedBackend(httpcore2.AnyIOBackend(), resolver),  # type: ignore[arg-type]
    )
    return transport


class WebFetch:
    name: ClassVar[str] = "web_fetch"
    description: ClassVar[str] = (
        "Fetch a web page or text file over http(s) and return it as readable text "
        "(HTML converted to text with links kept). Large pages are cut."
    )
    input_model: ClassVar[type[BaseModel]] = WebFetchInput

    def __init__(
        self,
        *,
        timeout_s: float = 20.0,
        max_bytes: int = 2_000_000,
        max_redirects: int = 5,
        allow_private: bool = False,
        transport: httpx2.AsyncBaseTransport | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self._transport = transport
        self._resolver = resolver

    async def preview(self, ctx: ToolContext, args: WebFetchInput) -> dict[str, Any]:
        return {"url": args.url}

    async def run(self, ctx: ToolContext, args: WebFetchInput) -> ToolOutput:
        import httpx2  # deferred: only steps that browse pay for it

        data: dict[str, Any] = {"url": args.url}
        try:
            url = check_url(args.url, allow_private=self.allow_private)
            with anyio.fail_after(self.timeout_s):
                fetched = await self._fetch(httpx2, url)
        except FetchRefused as exc:
            return ToolOutput(content=str(exc), is_error=True, data=data)
        except (TimeoutError, httpx2.TimeoutException):
            return ToolOutput(
                content=f"timed out after {self.timeout_s:g} s fetching {args.url}",
                is_error=True,
                data=data,
            )
        except httpx2.HTTPError as exc:
            return ToolOutput(
                content=f"could not fetch {args.url}: {exc}", is_error=True, data=data
            )

        final_url, status, content_type, body, cut = fetched
        data.update(
            final_url=final_url,
            status=status,
            content_type=content_type,
            bytes=len(body),
            truncated=cut,
        )
        mime = content_type.split(";", 1)[0].strip().lower()
        if not _is_text(mime, body):
            return ToolOutput(
                content=f"{final_url} returned {mime or 'binary content'} ({len(body)} bytes), which cannot be shown as text",
                is_error=True,
                data=data,
            )
        text = _decode(body, content_type)
        title = ""
        if mime in _HTML_TYPES and not args.raw:
            title, text = html_to_text(text, base_url=final_url)
        data["preview"] = text[:PREVIEW_CHARS]
        if title:
            data["title"] = title
        header = [f"URL: {final_url}", f"Status: {status}", f"Content-Type: {mime or 'unknown'}"]
        if title:
            header.append(f"Title: {title}")
        if cut:
            header.append(f"[body cut at {self.max_bytes} bytes]")
        content = "\n".join(header) + "\n\n" + cap_output(text, args.max_chars)
        return ToolOutput(content=content, is_error=status >= 400, data=data)

    async def _fetch(self, httpx2: Any, url: str) -> tuple[str, int, str, bytes, bool]:
        timeout = httpx2.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
        headers = {
            "user-agent": USER_AGENT,
            "accept": "text/html,text/plain,application/json;q=0.9,*/*;q=0.5",
        }
        transport = self._transport
        if transport is None and not self.allow_private:
            transport = guarded_transport(self._resolver)
        async with httpx2.AsyncClient(
            timeout=timeout, headers=headers, follow_redirects=False, transport=transport,
            trust_env=self.allow_private,
        ) as client:
            for _ in range(self.max_redirects + 1):
                async with client.stream("GET", url) as response:
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        url = check_url(
                            urljoin(str(response.url), location), allow_private=self.allow_private
                        )
                        continue
                    body, cut = await _read_capped(response, self.max_bytes)
                    return (
                        str(response.url),
                        response.status_code,
                        response.headers.get("content-type", ""),
                        body,
                        cut,
                    )
        raise FetchRefused(f"more than {self.max_redirects} redirects fetching {url}")


async def _read_capped(response: Any, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _is_text(mime: str, body: bytes) -> bool:
    if mime.startswith(_TEXT_TYPES) or mime.endswith(("+json", "+xml")) or mime in _HTML_TYPES:
        return True
    return not mime and b"\0" not in body[:4096]


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


def _decode(body: bytes, content_type: str) -> str:
    match = re.search(r"charset=([\w\-]+)", content_type, re.IGNORECASE)
    charset = match.group(1) if match else None
    if charset is None and (meta := _META_CHARSET.search(body[:4096])):
        charset = meta.group(1).decode("ascii")
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


class _TextExtractor(HTMLParser):
    # content that is never prose: code, styling, page chrome
    SKIP: ClassVar[frozenset[str]] = frozenset(
        {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas",
         "nav", "footer", "form"}
    )  # fmt: skip
    # a blank line before and after
    BLOCK: ClassVar[frozenset[str]] = frozenset(
        {"p", "div", "section", "article", "header", "main", "aside", "ul", "ol", "table", "pre",
         "blockquote", "dl", "figure", "figcaption", "hr", "h1", "h2", "h3", "h4", "h5", "h6"}
    )  # fmt: skip
    # a line of their own
    LINE: ClassVar[frozenset[str]] = frozenset({"li", "tr", "dt", "dd", "br"})

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.out: list[str] = []
        self.title: list[str] = []
        self.skip: dict[str, int] = {}
        self.pre = 0
        self.in_title = False
        self.links: list[str | None] = []

    def _skipping(self) -> bool:
        return any(self.skip.values())

    def _at_line_start(self) -> bool:
        return not self.out or self.out[-1].endswith("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.skip.pop("head", None)  # a page that never closed its <head>
        if tag == "title":
            self.in_title = True
        if tag in self.SKIP:
            self.skip[tag] = self.skip.get(tag, 0) + 1
        if self._skipping():
            return
        if tag in self.BLOCK:
            self.out.append("\n\n")
        elif tag in self.LINE:
            self.out.append("\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.out.append("#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("- ")
        elif tag == "pre":
            self.pre += 1
        elif tag in ("td", "th") and not self._at_line_start():
            self.out.append(" | ")
        elif tag == "a":
            href = dict(attrs).get("href")
            usable = bool(href) and not (href or "").startswith(("#", "javascript:", "mailto:"))
            self.links.append(urljoin(self.base_url, href) if usable and href else None)
            if usable:
                self.out.append("[")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in self.SKIP:
            if self.skip.get(tag):
                self.skip[tag] -= 1
            return
        if self._skipping():
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag == "a" and self.links:
            href = self.links.pop()
            if href:
                self.out.append(f"]({href})")
        if tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self._skipping():
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if self._at_line_start():
                data = data.lstrip()
        if data:
            self.out.append(data)


def html_to_text(html: str, *, base_url: str = "") -> tuple[str, str]:
    """`(title, text)` of an HTML document."""
    parser = _TextExtractor(base_url)
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return " ".join("".join(parser.title).split()), text
