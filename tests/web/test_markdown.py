"""Transcript Markdown is rendered on the server and comes out inert: one row per hostile input."""

from __future__ import annotations

import re

import pytest

from flowrun.web.markdown import render_markdown, safe_link

HOSTILE = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    ("[x](JavaScript:alert(1))", "[x](JavaScript:alert(1))"),
    ("[x](&#106;avascript:alert(1))", "[x](javascript:alert(1))"),
    ("[x](data:text/html,<b>hi</b>)", "[x](data:text/html,&lt;b&gt;hi&lt;/b&gt;)"),
    ("[x](vbscript:msgbox)", "[x](vbscript:msgbox)"),
    ("[x](/runs/elsewhere)", "[x](/runs/elsewhere)"),
    ("<javascript:alert(1)>", "&lt;javascript:alert(1)&gt;"),
    ('<a href="https://ok.example" onclick="alert(1)">x</a>', "&lt;a href=&quot;https://ok.example&quot;"),
    ("![t](http://evil.example/t.png)", '<a class="md-image" href="http://evil.example/t.png"'),
    ("![t](javascript:alert(1))", "![t](javascript:alert(1))"),
]


@pytest.mark.parametrize(("source", "expected"), HOSTILE)
def test_hostile_markdown_is_inert(source: str, expected: str) -> None:
    html = str(render_markdown(source))
    assert expected in html
    assert "<script" not in html and "<img" not in html and "javascript:" not in html.split(">", 1)[0]
    assert 'href="javascript' not in html.lower()
    assert not re.search(r"<[a-z][^>]*\son[a-z]+=", html), "an event handler attribute on a real tag"


def test_markdown_still_reads_as_markdown() -> None:
    html = str(render_markdown("**bold** `code` [docs](https://example.com) <mailto:a@b.example>\n\n| a |\n|---|\n| 1 |"))
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "<table>" in html
    assert '<a href="https://example.com" rel="nofollow noopener noreferrer" target="_blank">docs</a>' in html
    assert 'href="mailto:a@b.example"' in html


@pytest.mark.parametrize(("url", "ok"), [
    ("https://example.com", True), ("http://example.com/x?y", True), ("mailto:a@b.c", True),
    ("javascript:x", False), ("JAVASCRIPT:x", False), (" javascript:x", False), ("java\tscript:x", False),
    ("data:text/html,x", False), ("/relative", False), ("//example.com", False), ("file:///etc/passwd", False),
])
def test_only_http_https_and_mailto_links(url: str, ok: bool) -> None:
    assert safe_link(url) is ok
