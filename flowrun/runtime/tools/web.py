"""`web_fetch`: read a web page as text.

The fetch runs in the engine process (not in the sandbox), so it is fenced: http(s) only; an
overall deadline on top of httpx's per-operation timeouts (a server dripping one byte a second
never trips a read timeout); a byte cap read from the stream, never the whole body first;
redirects followed by hand, at most `max_redirects`, each hop checked like the first; and no
loopback, private or link-local *literal* addresses (the cloud metadata endpoint is the classic
target) unless `allow_private`. Host names are not resolved to check them, which would need
DNS on every call; point the engine at an egress proxy if that matters.

HTML becomes readable text with the stdlib `html.parser` (headings, lists and links kept as
light markdown; scripts, styles and page chrome dropped): good enough for docs and READMEs,
without a heavy dependency.
"""

from __future__ import annotations

import ipaddress
import re
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


def check_url(url: str, *, allow_private: bool = False) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched, not {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchRefused(f"{url!r} has no host")
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise FetchRefused(f"{host} is this machine; fetching it is not allowed")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and not address.is_global:
            raise FetchRefused(
                f"{host} is a private, loopback or link-local address; fetching it is not allowed"
            )
    return url.strip()


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
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_private = allow_private
        self._transport = transport

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
        async with httpx2.AsyncClient(
            timeout=timeout, headers=headers, follow_redirects=False, transport=self._transport
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
