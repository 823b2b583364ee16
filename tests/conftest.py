"""Shared test setup.

The HTTP fakes come first and must stay first. `anthropic` 2.x and `openai` 3.x speak httpx2,
while respx patches whatever module it imports as `httpx`. `httpx2.alias_httpx()` makes
`import httpx` (and `httpcore`) resolve to httpx2 (and httpcore2) process-wide, so it has to run
before anything imports httpx; that is why pyproject disables respx's auto-loaded plugin
(`-p no:respx`) and this file loads it itself, after the alias. Without this, respx intercepts
nothing and a test would silently try the real network.
"""

from __future__ import annotations

import httpx2

httpx2.alias_httpx()

import pytest  # noqa: E402

pytest_plugins = ["respx.plugin"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
