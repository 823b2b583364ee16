"""Redaction moved to the domain (`flowrun.flows.redact`) so the store can apply it on its write
path; this name stays for code that imported it from here."""

from __future__ import annotations

from ..flows.redact import PLACEHOLDER, Redactor, StreamRedactor

__all__ = ["PLACEHOLDER", "Redactor", "StreamRedactor"]
