"""Markdown for untrusted transcript text, rendered on the server.

Transcript content comes from a model that read the world (web pages, files, tool output), so it
is treated as hostile: raw HTML is off (tags come out as text), a link survives only with an
http, https or mailto target, and an image is never loaded: it becomes a plain link to where it
points, so a transcript cannot make the browser fetch from an outside host by being viewed.
The client never turns transcript content into markup; it only places what this returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markupsafe import Markup

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})


def safe_link(url: str) -> bool:
    """True for an absolute http(s) or mailto URL; anything else (javascript:, data:, relative
    paths, control characters hidden in the scheme) is refused."""
    if any(ord(c) < 0x21 or c in "\\" for c in url.split(":", 1)[0]):
        return False
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return False
    return scheme in ALLOWED_SCHEMES


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = safe_link  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        token.attrSet("rel", "nofollow noopener noreferrer")
        token.attrSet("target", "_blank")
        return str(renderer.renderToken(tokens, idx, options, env))

    def image(renderer: Any, tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        # never an <img>: a link the person may choose to follow, labelled as an image
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        alt = str(renderer.renderInlineAsText(token.children or [], options, env))
        label = escape(f"image: {alt}" if alt else "image")
        if not safe_link(src):
            return f'<span class="md-image">[{label}]</span>'
        return (f'<a class="md-image" href="{escape(src)}" rel="nofollow noopener noreferrer" '
                f'target="_blank">[{label}]</a>')

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


def escape(text: str) -> str:
    return str(Markup.escape(text))


_MD = _build()


def render_markdown(text: str) -> Markup:
    """`text` as sanitized HTML (safe to place in a page as it is)."""
    return Markup(_MD.render(text))


def render_inline(text: str) -> Markup:
    """One line of untrusted text (a step summary) with inline Markdown only: no blocks."""
    return Markup(_MD.renderInline(text))
