"""Untrusted text, made safe for a terminal.

Everything a run records came from somewhere flowrun does not control: a person's comment, a
model's words, a shell command's output, a repository's file names. In a terminal such text must
be shown, never obeyed: rich markup in it (`[approve …]`, `[/x]`) is printed as written, and
control characters (an ESC sequence that recolours, moves the cursor, retitles the window or hides
what follows) are shown as visible escapes. Render untrusted text only through `text()` (a rich
`Text`, which rich never parses as markup) or `markup()` (inside a markup string).
"""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

# C0 controls except tab and newline, DEL, C1 controls, and the bidirectional overrides and
# isolates that make a terminal show text in another order than it is
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """`value` as text with every control character shown as an escape (`\\x1b`); newlines and
    tabs stay, and a carriage return ends a line (shell progress output)."""
    return _UNSAFE.sub(_visible, str(value).replace("\r\n", "\n").replace("\r", "\n"))


def text(value: object, style: str = "") -> Text:
    """Untrusted `value` as a rich `Text`: no markup is read from it, no control reaches the terminal."""
    return Text(clean(value), style=style)


def markup(value: object) -> str:
    """Untrusted `value` for a place that reads markup: escaped, and its controls shown."""
    return escape(clean(value))
