"""A plan in a real browser (Debian chromium through Playwright, against `flowrun serve`'s app):
written with the form (a refusal keeps what was typed), a Flow run from it through the Run Flow
dialog, and the plan linked by its title in the overlay, on the run page and back on the plan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # as tests/web/test_browser.py: CI installs playwright and never skips
    pytest.importorskip("playwright.async_api", reason="pip install playwright (and apt-get install chromium)")
from playwright.async_api import expect

from flowrun.config import ensure_demo_remote

from .pagekit import environment
from .test_browser import WAIT_MS, browser, signed_in, watch_for_trouble
from .test_browser import pytestmark as browser_marks
from .webkit import served

pytestmark = list(browser_marks)  # anyio, and the reason nothing runs where chromium is missing

TITLE = "CSV export <script>window.__pwned = 1</script>"


async def test_a_plan_written_in_the_form_runs_a_flow_and_is_linked_from_its_run(tmp_path: Path) -> None:
    async with served(environment(tmp_path)) as app, browser() as b:
        ensure_demo_remote(app.settings.home)
        page = await signed_in(b, app)
        trouble: list[str] = []
        watch_for_trouble(page, trouble)
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Plans").click()
        await expect(page.locator("#row-none")).to_contain_text("No plans or initiatives yet")
        await page.get_by_role("link", name="New plan").click()

        # a refused form says why and keeps what was typed
        await page.fill('[name="title"]', TITLE)
        await page.fill('[name="body"]', "Add a **CSV** download of the weekly report.")
        await page.fill('[name="repository"]', "orcette/insights")
        await page.fill('[name="links"]', "ftp://example.org/spec")
        await page.get_by_role("button", name="Create plan").click()
        await expect(page.locator("#form-errors")).to_contain_text("http(s) URL")
        await expect(page.locator('[name="body"]')).to_have_value("Add a **CSV** download of the weekly report.")
        await page.fill('[name="links"]', "https://example.org/spec")
        await page.get_by_role("button", name="Create plan").click()

        await expect(page.locator("h1")).to_have_text(TITLE)  # text, not markup
        await expect(page.locator(".record-body strong")).to_have_text("CSV")
        plan_url = page.url
        await page.get_by_role("link", name="Run a Flow from this plan").click()
        await expect(page.locator("#record-scope")).to_contain_text(TITLE)
        await page.wait_for_load_state("load")  # flows.js has run: the Run Flow buttons answer
        await page.click('[data-run-flow="full-sdlc"]')
        dialog = page.locator("#dialog-full-sdlc")
        await expect(dialog).to_be_visible(timeout=WAIT_MS)
        await expect(dialog.locator('select[name="sandbox_profile"]')).to_have_value("")  # the plan's repository picks
        await dialog.locator('select[name="checkpoint_mode"]').select_option("none")
        await dialog.locator("[data-start]").click()

        overlay = page.locator(".fro")
        await expect(overlay.locator(".fro-record a")).to_have_text(TITLE, timeout=WAIT_MS)
        await overlay.get_by_role("link", name="Open run page").click()
        summary = page.locator("#summary")
        await expect(summary.get_by_role("link", name=TITLE).first).to_be_visible(timeout=WAIT_MS)
        await expect(summary).to_contain_text("demo")  # the sandbox profile its repository chose
        await expect(page.locator("#run-head .badge")).to_have_text("Completed", timeout=WAIT_MS)
        run_id = page.url.rsplit("/", 1)[1]
        await summary.get_by_role("link", name=TITLE).first.click()
        assert page.url == plan_url
        await expect(page.locator(f"#row-{run_id} .badge")).to_have_text("Completed")
        assert await page.evaluate("window.__pwned") is None
        assert trouble == []
