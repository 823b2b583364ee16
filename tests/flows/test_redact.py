"""Redaction: configured values and common key formats never survive."""

from __future__ import annotations

import re
import time

import pytest

from flowrun.flows.enums import TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.redact import Redactor

R = "[REDACTED]"

PRIVATE_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBv0000000000000000000000000000000000000000000000000000000
-----END OPENSSH PRIVATE KEY-----"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key=sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_x", f"key={R}"),
        ("OPENAI_API_KEY=sk-proj-AbCdEfGhIjKlMnOpQrSt1234", f"OPENAI_API_KEY={R}"),
        ("old style sk-AbCdEfGhIjKlMnOpQrStUvWx1234 here", f"old style {R} here"),
        ("token ghp_0123456789abcdefghijABCDEFGHIJ012345", f"token {R}"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", R),
        ("aws AKIAIOSFODNN7EXAMPLE creds", f"aws {R} creds"),
        ("E2B_API_KEY=e2b_0123456789abcdef0123", f"E2B_API_KEY={R}"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            f"Authorization: Bearer {R}",
        ),
        (f"before\n{PRIVATE_KEY}\nafter", f"before\n{R}\nafter"),
        (
            "nothing secret: sk-short, AKIA123, the bearer instrument",
            "nothing secret: sk-short, AKIA123, the bearer instrument",
        ),
        (
            "a task-ant-0123456789abcdefghij is over-redacted, safely",
            f"a ta{R} is over-redacted, safely",
        ),
    ],
)
def test_key_formats(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_configured_values_longest_first_and_short_ones_ignored() -> None:
    redactor = Redactor(["hunter2-password", "hunter2-password-extended", "abc"])
    assert redactor.redact("pw hunter2-password-extended and hunter2-password") == f"pw {R} and {R}"
    assert redactor.redact("abc stays") == "abc stays"
    assert redactor.with_secrets(["my-db-secret"]).redact("x my-db-secret") == f"x {R}"
    assert redactor.redact("x my-db-secret") == "x my-db-secret"  # the original is unchanged


def test_values_with_regex_characters_are_literal() -> None:
    assert Redactor(["a+b*c(d)"]).redact("v=a+b*c(d)") == f"v={R}"


def test_unchanged_text_and_objects_are_returned_as_is() -> None:
    redactor = Redactor(["s3cr3t-value"])
    text = "a perfectly ordinary line " * 10
    assert redactor.redact(text) is text
    data = {"a": [1, "two", {"b": "three"}], "c": (4, "five")}
    assert redactor.redact_obj(data) is data


def test_redact_obj_recurses_and_copies_only_what_changed() -> None:
    redactor = Redactor(["s3cr3t-value"])
    inner = {"untouched": ["x"]}
    data = {
        "cmd": "echo s3cr3t-value",
        "nested": [{"v": "s3cr3t-value"}, inner],
        "n": 3,
        "t": ("s3cr3t-value",),
    }
    out = redactor.redact_obj(data)
    assert out == {"cmd": f"echo {R}", "nested": [{"v": R}, inner], "n": 3, "t": (R,)}
    assert out["nested"][1] is inner
    assert data["cmd"] == "echo s3cr3t-value"  # input not mutated


def test_sensitive_keys_are_redacted_whatever_the_value() -> None:
    out = Redactor().redact_obj(
        {
            "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "plain"},
            "db_password": "pw",
            "max_tokens": 5,
        }
    )
    assert out == {
        "headers": {"Authorization": R, "X-Api-Key": R},
        "db_password": R,
        "max_tokens": 5,
    }


def test_pydantic_models() -> None:
    entry = TranscriptEntry(
        kind=TranscriptKind.TOOL_END,
        text="got ghp_0123456789abcdefghijABCDEFGHIJ012345",
        data={"k": 1},
    )
    out = Redactor().redact_obj(entry)
    assert out.text == f"got {R}"
    assert out.data is entry.data
    clean = TranscriptEntry(kind=TranscriptKind.TEXT, text="hello")
    assert Redactor().redact_obj(clean) is clean


def test_no_patterns_and_no_secrets_is_a_no_op() -> None:
    redactor = Redactor(patterns=False)
    assert (
        redactor.redact("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz")
        == "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz"
    )


def test_from_environ() -> None:
    redactor = Redactor.from_environ(
        {"GITHUB_TOKEN": "tok-123456", "EMPTY": ""}, ["GITHUB_TOKEN", "EMPTY", "MISSING"]
    )
    assert redactor.redact("t=tok-123456") == f"t={R}"


def test_fast_enough_for_every_transcript_entry() -> None:
    redactor = Redactor([f"secret-value-{i:04d}" for i in range(200)])
    text = (
        "ordinary shell output line with paths /usr/lib/x86_64 and numbers 12345\n" * 50
    )  # ~3.6 kB
    started = time.perf_counter()
    for _ in range(200):
        redactor.redact(text)
    per_entry = (time.perf_counter() - started) / 200
    assert per_entry < 0.01  # generous bound; typically well under a millisecond


# -- streams ---------------------------------------------------------------------------------------

ANTHROPIC = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_x"
GITHUB = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
AWS = "AKIAIOSFODNN7EXAMPLE"
CONFIGURED = "correct horse battery staple"
STREAM_TEXT = (
    f"Here is the key {ANTHROPIC} and a token {GITHUB}, aws {AWS} creds.\n"
    f"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig\n"
    f"The phrase is {CONFIGURED}; then\n{PRIVATE_KEY}\nand that's all."
)


def _joined(redactor: Redactor, pieces: list[str]) -> str:
    stream = redactor.stream()
    out = [stream.feed(p) for p in pieces]
    return "".join(out) + stream.finish()


def test_a_secret_split_across_two_pieces_is_redacted_at_every_split_point() -> None:
    redactor = Redactor([CONFIGURED])
    whole = redactor.redact(STREAM_TEXT)
    for secret in (ANTHROPIC, GITHUB, AWS, CONFIGURED, "eyJhbGciOiJIUzI1NiJ9", "b3BlbnNzaC1rZXkt"):
        assert secret not in whole
    for cut in range(1, len(STREAM_TEXT)):
        joined = _joined(redactor, [STREAM_TEXT[:cut], STREAM_TEXT[cut:]])
        assert joined == whole, cut


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64])
def test_a_stream_of_small_deltas_is_redacted_like_the_whole_text(size: int) -> None:
    redactor = Redactor([CONFIGURED])
    pieces = [STREAM_TEXT[i : i + size] for i in range(0, len(STREAM_TEXT), size)]
    assert _joined(redactor, pieces) == redactor.redact(STREAM_TEXT)


def test_a_key_across_the_shell_chunk_boundary() -> None:
    text = "x" * 8180 + " " + GITHUB + "\n" + "y" * 100
    pieces = [text[:8192], text[8192:]]
    assert GITHUB[4:] in pieces[0] + pieces[1] and GITHUB not in pieces[0]
    assert _joined(Redactor(), pieces) == text.replace(GITHUB, R)


def test_a_stream_holds_back_only_what_could_still_be_a_secret() -> None:
    stream = Redactor().stream()
    assert stream.feed("Hello world, the answer is ") == "Hello world, the answer is "
    assert stream.feed("forty") == ""  # the word may go on (it could be a key)
    assert stream.feed("-two. Done") == "forty-two. "
    assert stream.pending
    assert stream.finish() == "Done"
    assert not stream.pending


def test_a_long_run_of_key_characters_is_held_only_up_to_the_bound() -> None:
    stream = Redactor().stream(max_hold=64)
    out = stream.feed("a" * 1000)
    assert out == "a" * (1000 - 64)
    assert stream.finish() == "a" * 64


def test_every_key_format_carries_one_of_the_literals_that_let_clean_text_skip_the_expression() -> None:
    from flowrun.flows.redact import KEY_LITERALS, KEY_PATTERNS

    samples = [PRIVATE_KEY, ANTHROPIC, "sk-AbCdEfGhIjKlMnOpQrStUvWx1234", GITHUB, "gho_" + "a" * 36,
               "github_pat_11ABCDEFG0123456789_abcdefghij", AWS, "ASIA" + "B" * 16, "e2b_0123456789abcdef0123",
               "xoxb-0123456789-abc", "AIza" + "x" * 35, "bearer abcdefghijklmnopqrstuvwxyz"]
    for pattern in KEY_PATTERNS:
        matched = [s for s in samples if re.search(pattern, s)]
        assert matched, pattern
        assert all(any(lit in s for lit in KEY_LITERALS) for s in matched), pattern
