"""Log lines go through the same redactor as everything stored (see `flows/redact.py`).

A log line can carry a secret as easily as a transcript entry: an exception naming a URL with a
token in it, a provider's error body echoing a key. Handlers and formatters differ per logger
(uvicorn brings its own), so redaction happens where every record is made: a log record factory
that rewrites the record's text arguments, message and exception text. Arguments keep their
shape (uvicorn's access formatter unpacks them) and are replaced only when they held a secret.
Records are made only for enabled levels, so a quiet logger costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from .flows.redact import Redactor

_formatter = logging.Formatter()
_redactor: Redactor | None = None


def redact_logs(redactor: Redactor) -> None:
    """From now on every log record of this process is redacted with `redactor` (the latest
    engine's, which knows the configured secrets and connected integration tokens)."""
    global _redactor
    if _redactor is None:
        _install(logging.getLogRecordFactory())
    _redactor = redactor


def _install(make_record: Any) -> None:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make_record(*args, **kwargs)
        if _redactor is not None:
            with contextlib.suppress(Exception):  # an argument whose str() fails: the handler reports it
                _clean(record, _redactor)
        return record

    logging.setLogRecordFactory(factory)


def _clean(record: logging.LogRecord, redactor: Redactor) -> None:
    if isinstance(record.msg, str):
        record.msg = redactor.redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_arg(a, redactor) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _arg(v, redactor) for k, v in record.args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor.redact(_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)


def _arg(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    clean = redactor.redact(text)
    return value if clean is text else clean
