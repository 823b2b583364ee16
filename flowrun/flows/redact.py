"""Keep secrets out of transcripts, logs and the store.

The engine runs every transcript entry, log line and stored payload through a `Redactor` before it
leaves memory, so this is on the hot path. Measured on a 4.6 kB shell-output entry: the key
formats are one compiled regular expression (~0.1 ms; every alternative starts with a literal so
the regex engine can skip ahead, which is why they carry no leading `\\b`: over-redacting a
`task-ant-...` is the safe way to be wrong); configured values are searched with `str.__contains__`
(C fast search, ~1 us per value) rather than folded into that regex, where a few dozen literals
made it 3-10x slower. Text without a match is returned as the same object, and `redact_obj`
copies only the containers that actually changed.

Two sources of secrets:
- the *values* of configured secrets (integration tokens, the model key, profile env values the
  operator marked secret), matched literally, longest first;
- *formats* of common credentials, so a key the agent found in a file or printed from the
  environment is caught even though nobody configured it.

Values shorter than `min_secret_len` are ignored: redacting every `yes` or `1234` would shred the
transcript and protect nothing.

This module is domain logic (no I/O) so that the store can redact on its one write path, whatever
the caller. Streamed pieces (model text deltas, shell output chunks) need more than a redactor per
piece: a key split across two pieces is two harmless halves to it, and whole again when a viewer
joins the pieces. `StreamRedactor` holds back the tail of a stream that could still be the start
of a secret until the next piece (or the end of the stream) shows what it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

PLACEHOLDER = "[REDACTED]"

# Common credential formats. Each alternative matches the secret itself; the bearer alternative
# keeps its `Bearer ` prefix (the `keep` group) so a redacted header still reads as one.
KEY_PATTERNS: tuple[str, ...] = (
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----",
    r"sk-ant-[A-Za-z0-9_\-]{16,}",  # Anthropic
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI
    r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{22,}",  # GitHub fine-grained tokens
    r"(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"e2b_[A-Za-z0-9]{16,}",  # e2b
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"(?P<keep>[Bb]earer\s+)[A-Za-z0-9\-._~+/]{16,}=*",  # Authorization: Bearer ...
)

_FORMATS = re.compile("|".join(KEY_PATTERNS))
# Every alternative above contains one of these literals (case and all). Python's `re` costs about
# 0.1 us per character even on text with no match; `str.__contains__` is far cheaper, so text that
# holds none of them skips the expression.
KEY_LITERALS: tuple[str, ...] = (
    "-----BEGIN", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "ASIA", "e2b_",
    "xox", "AIza", "earer",
)
_PEM_BEGIN = "-----BEGIN"
_PEM = re.compile(KEY_PATTERNS[0])
# characters a key of the formats above can continue with, read backwards from a stream's end
_KEY_RUN_REVERSED = re.compile(r"[A-Za-z0-9_\-.~+/=]*")
_BEARER_BEFORE = re.compile(r"[Bb]earer\s*\Z")
# Mapping keys whose string values are secret whatever they look like (headers, config dicts).
_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:.*[_\-.])?(?:password|passwd|secret|token|api[_\-]?key|apikey|authorization|"
    r"private[_\-]?key|access[_\-]?key|client[_\-]?secret|credentials?)$"
)


class Redactor:
    """Replaces secrets with `[REDACTED]`.

    Build one per scope (process, run) with the secret values known there; `with_secrets` adds
    more without mutating the original, so a shared redactor is safe across tasks.
    """

    __slots__ = ("_min_len", "_pattern", "_placeholder", "_secrets", "_use_patterns", "_values")

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        patterns: bool = True,
        placeholder: str = PLACEHOLDER,
        min_secret_len: int = 6,
    ) -> None:
        self._secrets = frozenset(s for s in secrets if len(s) >= min_secret_len)
        # longest first, so a secret containing another is replaced whole
        self._values = tuple(sorted(self._secrets, key=len, reverse=True))
        self._use_patterns = patterns
        self._placeholder = placeholder
        self._min_len = min_secret_len
        self._pattern = _FORMATS if patterns else None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], names: Iterable[str], **kwargs: Any
    ) -> Redactor:
        """A redactor for the values of the named environment variables that are set."""
        return cls((environ[n] for n in names if environ.get(n)), **kwargs)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor(
            self._secrets | frozenset(secrets),
            patterns=self._use_patterns,
            placeholder=self._placeholder,
            min_secret_len=self._min_len,
        )

    @property
    def values(self) -> tuple[str, ...]:
        """The configured secret values, longest first."""
        return self._values

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern

    def stream(self, **kwargs: int) -> StreamRedactor:
        """A redactor for one stream of pieces (see `StreamRedactor`)."""
        return StreamRedactor(self, **kwargs)

    def _replace(self, match: re.Match[str]) -> str:
        return (match.group("keep") or "") + self._placeholder

    def redact(self, text: str) -> str:
        if not text:
            return text
        result = text
        for value in self._values:
            if value in result:
                result = result.replace(value, self._placeholder)
        if self._pattern is not None and any(literal in result for literal in KEY_LITERALS):
            result = self._pattern.sub(self._replace, result)
        return text if result == text else result  # callers test `is` to skip copies

    def redact_obj(self, obj: Any) -> Any:
        """Redact every string inside dicts, lists, tuples and pydantic models.

        Returns `obj` itself when nothing changed. String values under sensitive keys
        (`authorization`, `api_key`, `*_token`, `password`, ...) are replaced whole.
        """
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            changed = False
            out: dict[Any, Any] = {}
            for key, value in obj.items():
                if (
                    isinstance(key, str)
                    and isinstance(value, str)
                    and value
                    and _SENSITIVE_KEY.match(key)
                ):
                    new: Any = self._placeholder
                else:
                    new = self.redact_obj(value)
                changed = changed or new is not value
                out[key] = new
            return out if changed else obj
        if isinstance(obj, list | tuple):
            items = [self.redact_obj(v) for v in obj]
            if all(a is b for a, b in zip(items, obj, strict=True)):
                return obj
            return items if isinstance(obj, list) else tuple(items)
        if isinstance(obj, BaseModel):
            update = {}
            for name in type(obj).model_fields:
                value = getattr(obj, name)
                new_value = self.redact_obj(value)
                if new_value is not value:
                    update[name] = new_value
            return obj.model_copy(update=update) if update else obj
        return obj


class StreamRedactor:
    """Redacts one stream of text pieces so that a secret split across pieces is still caught.

    `feed(piece)` returns the redacted text that is safe to show now; the raw tail that could
    still be the beginning of a secret (a run of key characters, a `Bearer ` waiting for its
    token, an unfinished private-key block, the start of a configured value) is held back and
    comes out with the next piece, or from `finish()` at the end of the stream. Holding is
    bounded (`max_hold` key characters, `max_pem` for a private-key block), so a live viewer lags
    a stream by at most a word or so of text.
    """

    __slots__ = ("_held", "_max_hold", "_max_pem", "_redactor")

    def __init__(self, redactor: Redactor, *, max_hold: int = 512, max_pem: int = 16384) -> None:
        self._redactor = redactor
        self._held = ""
        self._max_hold = max_hold
        self._max_pem = max_pem

    @property
    def pending(self) -> bool:
        return bool(self._held)

    def feed(self, piece: str) -> str:
        text = self._held + piece if self._held else piece
        cut = self._safe_cut(text)
        self._held = text[cut:]
        return self._redactor.redact(text[:cut]) if cut else ""

    def finish(self) -> str:
        """The held tail, redacted; the stream is ready to start again."""
        text, self._held = self._held, ""
        return self._redactor.redact(text) if text else ""

    def _safe_cut(self, text: str) -> int:
        end = len(text)
        lo = max(0, end - self._max_hold)
        run = _KEY_RUN_REVERSED.match(text[lo:][::-1])
        cut = end - (run.end() if run else 0)
        bearer = _BEARER_BEFORE.search(text, max(0, cut - 32), cut)
        if bearer is not None:
            cut = bearer.start()
        begin = text.rfind(_PEM_BEGIN, max(0, end - self._max_pem))
        if begin != -1 and begin < cut and _PEM.match(text, begin) is None:
            cut = begin  # an unfinished private-key block
        cut = min(cut, self._value_prefix_start(text))
        # never cut through a whole secret: it is redacted whole, with what may still extend it
        for _ in range(4):
            moved = self._straddled(text, cut)
            if moved == cut:
                break
            cut = moved
        return cut

    def _value_prefix_start(self, text: str) -> int:
        """Where the longest tail of `text` that starts a configured value begins."""
        start = len(text)
        last = text[-1:]
        for value in self._redactor.values:
            if not last or last not in value:
                continue
            for size in range(min(len(value) - 1, len(text)), 0, -1):
                if len(text) - size >= start:
                    break
                if text.endswith(value[:size]):
                    start = len(text) - size
                    break
        return start

    def _straddled(self, text: str, cut: int) -> int:
        pattern = self._redactor.pattern
        if pattern is not None:
            for match in pattern.finditer(text, max(0, cut - self._max_pem)):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    return match.start()
        for value in self._redactor.values:
            at = text.find(value, max(0, cut - len(value) + 1), cut + len(value) - 1)
            if at != -1 and at < cut:
                return at
        return cut
