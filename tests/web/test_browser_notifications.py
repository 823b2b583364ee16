"""Notifications in a real browser (Debian's chromium, Playwright): a background run reaching a
checkpoint raises the nav's unread badge and shows a desktop notification (the notifications
permission granted through the browser context) whose click opens the run page; Enable desktop
notifications asks the browser for permission; Mark all read clears the badge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # as tests/web/test_browser.py: CI installs playwright and never skips
    pytest.importorskip("playwright.async_api", reason="pip install playwright (and apt-get install chromium)")
from playwright.async_api import expect

from flowrun.config import ensure_demo_remote

from .pagekit import environment
from .test_browser import WAIT_MS, browser, pytestmark, signed_in, watch_for_trouble
from .webkit import ANA, served

__all__ = ["pytestmark"]

# Records what the page asks of the Notification API (the real one still runs underneath).
SPY = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__shown = [];
  window.__asked = 0;
  class Spy extends Real {
    constructor(title, options) {
      super(title, options);
      window.__shown.push({ title, body: options && options.body, tag: options && options.tag });
      window.__last = this;
    }
  }
  Object.defineProperty(Spy, "permission", { get: () => Real.permission });
  Spy.requestPermission = (...args) => { window.__asked += 1; return Real.requestPermission(...args); };
  window.Notification = Spy;
})();
"""


async def test_a_background_run_at_a_checkpoint_raises_the_badge_and_a_desktop_notification(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as app, browser() as b:
        ensure_demo_remote(app.settings.home)
        page = await signed_in(b, app)
        trouble: list[str] = []
        watch_for_trouble(page, trouble)
        await page.context.add_init_script(SPY)
        await page.goto(f"{app.base}/notifications")
        enable = page.get_by_role("button", name="Enable desktop notifications")
        await expect(enable).to_be_visible()  # the browser has not been asked yet
        await page.context.grant_permissions(["notifications"], origin=app.base)
        await enable.click()
        await expect(page.locator("#desktop-state")).to_have_text("Desktop notifications are on.")
        assert await page.evaluate("window.__asked") == 1
        await expect(enable).to_be_hidden()

        await page.goto(f"{app.base}/sessions")  # the badge lives on every page
        badge = page.locator("#unread-badge")
        await expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        await expect(badge).to_be_hidden()
        async with app.http(ANA) as http:  # a background run, started elsewhere, waits for review
            started = await http.post("/api/runs", json={
                "flow_id": "full-sdlc", "execution_mode": "background", "checkpoint_mode": "every",
                "params": {"goal": "Add a CSV export"}})
            assert started.status_code == 201, started.text
            run_id = started.json()["id"]
        await expect(badge).to_have_text("1", timeout=WAIT_MS)
        await expect(page.locator("#nav-notes")).to_have_attribute("aria-label", "Notifications, 1 unread")
        await page.wait_for_function("window.__shown && window.__shown.length === 1", timeout=WAIT_MS)
        shown = await page.evaluate("window.__shown[0]")
        assert "waiting for you" in shown["title"] and shown["tag"].startswith("note_")
        await page.evaluate("window.__last.dispatchEvent(new Event('click'))")  # the person clicks it
        await expect(page).to_have_url(f"{app.base}/runs/{run_id}", timeout=WAIT_MS)
        await expect(page.locator("#run-head .badge")).to_have_text("Paused")

        await page.goto(f"{app.base}/notifications")
        await expect(page.locator(".note.unread")).to_have_count(1)
        await expect(page.locator(".note.unread a.note-title")).to_have_attribute("href", f"/runs/{run_id}")
        await page.get_by_role("button", name="Mark all read").click()
        await expect(page.locator(".note.unread")).to_have_count(0, timeout=WAIT_MS)
        await expect(badge).to_be_hidden()
        async with app.http(ANA) as http:
            await http.post(f"/api/runs/{run_id}/cancel")
        assert trouble == [], trouble
