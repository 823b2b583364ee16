"""Log lines are redacted like stored entries, whatever logger or formatter writes them."""

from __future__ import annotations

import logging

import pytest

from flowrun.flows.redact import Redactor
from flowrun.logredact import redact_logs

SECRET = "hunter2-configured-secret"
GITHUB = "ghp_" + "A" * 36


@pytest.fixture
def redacting() -> Redactor:
    redactor = Redactor([SECRET])
    redact_logs(redactor)
    return redactor


def test_messages_arguments_and_exceptions_lose_their_secrets(redacting: Redactor,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("flowrun.test")
    with caplog.at_level(logging.INFO, logger="flowrun.test"):
        log.info("cloning with %s and token %s (%d tries)", f"https://x:{SECRET}@example.com/r.git", GITHUB, 3)
        log.warning(f"provider said: bad key {GITHUB}")
        log.info("as mapping: %(url)s", {"url": f"u={SECRET}"})
        try:
            raise RuntimeError(f"push failed for {SECRET}")
        except RuntimeError:
            log.exception("push failed")
    text = caplog.text
    assert SECRET not in text and GITHUB not in text
    assert text.count("[REDACTED]") == 5
    assert "(3 tries)" in text and "RuntimeError: push failed for [REDACTED]" in text


def test_argument_shapes_stay_for_formatters_that_unpack_them(redacting: Redactor) -> None:
    # uvicorn's access formatter unpacks record.args as (client, method, path, version, status)
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/x?key={SECRET}", "1.1", 200), None)
    client, method, path, version, status = record.args  # type: ignore[misc]
    assert (client, method, version, status) == ("127.0.0.1:5000", "GET", "1.1", 200)
    assert path == "/x?key=[REDACTED]"


def test_a_broken_format_still_reaches_the_handler(redacting: Redactor) -> None:
    record = logging.getLogger("flowrun.test").makeRecord("flowrun.test", logging.INFO, __file__, 1,
                                                          "%d items", ("many",), None)
    assert record.args == ("many",)  # the handler reports the bad format; the caller never sees it
