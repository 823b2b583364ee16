"""The chat page in a real browser (Debian chromium through Playwright): send a message, see the
run's progress overlay appear, decide in the overlay and see the conversation note it; decide in
words and see the overlay follow. Hostile text stays text."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..web.webkit import ANA, Served, served
from .chatkit import environment

pytestmark = pytest.mark.anyio
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000

playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright (no browser download)")
if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs it (.ci/run)
    pytest.skip("Debian chromium is not installed at /usr/bin/chromium", allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def _open_chat(s: Served, browser: Any) -> tuple[Any, str]:
    async with s.http(ANA) as http:
        chat = (await http.post("/api/chats", json={})).json()
    auth = s.app.state.web_auth
    actor = auth.tokens.lookup(ANA)
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(auth.login_url(actor, next_path=f"/chats/{chat['id']}"))
    await page.wait_for_selector("#chat-form")
    page.errors = errors
    return page, chat["id"]


async def _say(page: Any, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")


async def test_the_chat_page_starts_a_run_and_decides_in_the_overlay_and_in_words(tmp_path: Path,
                                                                                 browser: Any) -> None:
    async with served(environment(tmp_path)) as s:
        page, chat_id = await _open_chat(s, browser)
        messages = page.locator("#chat-messages")

        await _say(page, "run the tiny flow for a CSV export")
        await messages.get_by_text("Started Tiny as run").first.wait_for()
        overlay = page.locator(".chat-overlay .fro").first
        await overlay.wait_for()
        dialog = page.locator("dialog.fro-dialog[open]")
        await dialog.wait_for()  # the checkpoint asks in the overlay
        await dialog.locator("textarea").fill("decided in the overlay")
        await dialog.get_by_role("button", name="Approve & Continue").click()
        await messages.get_by_text("was approved by ana: “decided in the overlay”").first.wait_for()
        await messages.get_by_text("completed (2 of 2 steps done)").first.wait_for()

        await _say(page, "/run tiny")
        await page.locator(".chat-overlay .fro").nth(1).wait_for()
        await dialog.wait_for()
        await page.keyboard.press("Escape")  # close without deciding, then answer in words
        await _say(page, "looks good, ship it")
        await messages.get_by_text("was approved by ana: “looks good, ship it”").first.wait_for()
        newest = page.locator(".chat-overlay .fro").first
        await newest.locator(".badge.status-completed").wait_for()

        await _say(page, "<img src=x onerror=\"window.__pwned=1\"> **bold?**")
        await messages.get_by_text("<img src=x").first.wait_for()
        assert await page.evaluate("window.__pwned") is None
        assert page.errors == []

        # the run page's summary card names the chat it was launched from, with a link back
        href = await newest.get_by_role("link", name="Open run page").get_attribute("href")
        await page.goto(s.base + href)
        await page.locator(f'a[href="/chats/{chat_id}"]').first.wait_for()
