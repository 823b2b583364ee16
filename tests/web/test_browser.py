"""The pages in a real browser (Debian's chromium driven by Playwright), against the real app
under uvicorn: start the demo from the Run Flow dialog, watch it live on the run page, decide in
the Flow progress overlay (Approve & Continue, Skip Step, a decision made elsewhere, Reject with
a comment), reload in the middle and see no gap; every transcript entry kind renders; a hostile
transcript does nothing. Screenshots of the run page and the overlay are kept in docs/."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from flowrun.config import ensure_demo_remote
from flowrun.flows.enums import RunStatus
from flowrun.runtime.access import Actor

from .pagekit import environment
from .webkit import ANA, BOB, Served, served

if not os.environ.get("CI"):  # CI installs both (.ci/run) and must never skip these
    pytest.importorskip("playwright.async_api", reason="pip install playwright (and apt-get install chromium)")
from playwright.async_api import Browser, Page, async_playwright, expect

pytestmark = [pytest.mark.anyio]
CHROMIUM = os.environ.get("FLOWRUN_CHROMIUM", "/usr/bin/chromium")
# the README's screenshots: FLOWRUN_SCREENSHOTS=docs pytest tests/web/test_browser.py writes them
SHOTS = os.environ.get("FLOWRUN_SCREENSHOTS")
WAIT_MS = 20_000

if not Path(CHROMIUM).exists():  # CI installs it (.ci/run); elsewhere say why nothing ran
    pytestmark.append(pytest.mark.skipif(not os.environ.get("CI"), reason=f"no chromium at {CHROMIUM}"))


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def signed_in(b: Browser, app: Served, who: str = ANA) -> Page:
    """A fresh browser context signed in through the one-time login link, as `who`'s actor."""
    actor: Actor | None = app.app.state.web_auth.tokens.lookup(who)
    assert actor is not None
    context = await b.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(app.app.state.web_auth.login_url(actor))
    await expect(page).to_have_url(f"{app.base}/sessions")
    return page


def watch_for_trouble(page: Page, outside: list[str]) -> None:
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    page.on("pageerror", lambda e: outside.append(f"pageerror: {e}"))


async def text_of(page: Page, selector: str) -> str:
    return " ".join((await page.locator(selector).text_content() or "").split())


async def block_ids(page: Page) -> list[str]:
    return list(await page.locator("#transcript [id^='tb-']").evaluate_all("els => els.map(e => e.id)"))


async def test_demo_from_the_dialog_decided_in_the_overlay(tmp_path: Path) -> None:
    env = environment(tmp_path)
    shots = Path(SHOTS) if SHOTS else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    async with served(env) as app, browser() as b:
        ensure_demo_remote(app.settings.home)
        flows = await signed_in(b, app)
        trouble: list[str] = []
        watch_for_trouble(flows, trouble)
        await flows.goto(f"{app.base}/flows")
        await flows.click('[data-run-flow="full-sdlc"]')
        dialog = flows.locator("#dialog-full-sdlc")
        start = dialog.locator("[data-start]")
        goal = dialog.locator('[name="param:goal"]')
        await goal.fill("")
        await expect(start).to_be_disabled()  # a required parameter is empty
        await goal.fill("x" * 70_000)  # the server refuses it: the refusal is shown in the dialog
        await start.click()
        await expect(dialog.locator(".refusal")).to_be_visible(timeout=WAIT_MS)
        await expect(dialog.locator(".refusal")).to_contain_text("goal")
        await expect(flows.locator(".fro")).to_have_count(0)  # nothing started
        await goal.fill("Add a CSV download of the weekly report")
        await expect(start).to_be_enabled()
        await dialog.locator('select[name="checkpoint_mode"]').select_option("every")
        await start.click()

        overlay = flows.locator(".fro")
        cp = flows.locator(".fro-dialog")
        await expect(cp).to_be_visible(timeout=WAIT_MS)
        await expect(cp.locator("h2")).to_have_text("Checkpoint before step 1: Plan")
        await expect(cp.get_by_role("button", name="Approve & Continue")).to_be_focused()  # focus moved in
        run_id = flows.url.split("run=")[1]

        # the run page, open beside the overlay, follows the run live (never reloaded)
        page = await flows.context.new_page()
        watch_for_trouble(page, trouble)
        await page.goto(f"{app.base}/runs/{run_id}")
        await expect(page.locator("#run-head .badge")).to_have_text("Paused")
        await expect(page.locator("#step-0 .checkpoint-card")).to_be_visible()

        # Esc closes the dialog without deciding; Review checkpoint opens it again
        await flows.keyboard.press("Escape")
        await expect(cp).to_be_hidden()
        await expect(overlay.locator(".fro-step").nth(0)).to_have_attribute("data-status", "pending")
        await overlay.get_by_role("button", name="Review checkpoint").click()
        await expect(cp).to_be_visible()

        await cp.locator("textarea").fill("go ahead")
        await cp.get_by_role("button", name="Approve & Continue").click()
        await expect(page.locator("#step-0 .badge").first).to_have_text("completed", timeout=WAIT_MS)
        await expect(page.locator("#step-0-decision")).to_contain_text("Approved by ana: “go ahead”")
        await expect(page.locator("#step-1 .checkpoint-card")).to_be_visible(timeout=WAIT_MS)
        await expect(cp.locator("h2")).to_have_text("Checkpoint before step 2: Implement", timeout=WAIT_MS)
        await expect(cp.locator(".fro-artifacts")).to_contain_text("View Plan")  # the completed step's artifact
        await expect(overlay.locator(".fro-step").nth(0)).to_have_attribute("data-status", "completed")
        await flows.screenshot(path=str(shots / "overlay.png"))

        # a decision made elsewhere closes the dialog and says who decided
        async with app.http(BOB) as http:
            answer = await http.post(f"/api/runs/{run_id}/decide", json={"decision": "approve", "step": 1})
            assert answer.status_code == 200, answer.text
        await expect(overlay.locator(".fro-note")).to_contain_text("Approved by bob at step 2", timeout=WAIT_MS)
        await expect(cp.locator("h2")).to_have_text("Checkpoint before step 3: Verify", timeout=WAIT_MS)

        # reload in the middle: the page shows what the log holds, then keeps following it
        await page.reload()
        await expect(page.locator("#step-2 .checkpoint-card")).to_be_visible()
        await page.locator("#step-0 [data-drawer]").click()
        await expect(page.locator("#step-0-drawer")).to_contain_text("Raw output")
        await page.locator("#step-2 .checkpoint-card textarea").fill("Looks good, ship it")
        await page.screenshot(path=str(shots / "run-page.png"), full_page=True)
        await page.locator("#step-2 .checkpoint-card textarea").fill("")

        await cp.get_by_role("button", name="Skip Step").click()
        await expect(page.locator("#step-2 .badge").first).to_have_text("skipped", timeout=WAIT_MS)
        await expect(cp.locator("h2")).to_have_text("Checkpoint before step 4: Create PR", timeout=WAIT_MS)

        await cp.locator("textarea").fill("Not this week: the export needs a review first.")
        await cp.get_by_role("button", name="Reject").click()
        await expect(cp).to_be_hidden()
        await expect(overlay.locator(".badge").first).to_have_text("Rejected", timeout=WAIT_MS)
        await expect(page.locator("#run-head .badge")).to_have_text("Rejected", timeout=WAIT_MS)
        await expect(page.locator("#step-3-decision")).to_contain_text("Rejected by ana: “Not this week")
        await expect(page.locator("#banners")).to_contain_text("Not this week")

        # no gap: the live page holds exactly what a fresh load renders
        fresh = await flows.context.new_page()
        await fresh.goto(f"{app.base}/runs/{run_id}#transcript")
        live_ids, fresh_ids = await block_ids(page), await block_ids(fresh)
        assert live_ids == fresh_ids and len(fresh_ids) > 20
        for region in ("#transcript", "#timeline", "#summary", "#run-head"):
            assert await text_of(page, region) == await text_of(fresh, region), region
        await fresh.locator("#ts-1").screenshot(path=str(shots / "run-transcript.png"))
        assert trouble == []


async def test_every_entry_kind_renders_and_a_hostile_transcript_does_nothing(tmp_path: Path) -> None:
    env = environment(tmp_path)
    async with served(env) as app, browser() as b:
        engine = app.app.state.web.slot.get()
        ana = app.app.state.web_auth.tokens.lookup(ANA)
        run = await engine.start_run(ana, "kinds", {}, checkpoint_mode="every")
        await engine.wait_until(ana, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        page = await signed_in(b, app)
        trouble: list[str] = []
        watch_for_trouble(page, trouble)
        await page.goto(f"{app.base}/runs/{run.id}#transcript")
        await expect(page.locator("#run-head .badge")).to_have_text("Paused")
        # decided on the inline card; the whole transcript then arrives live
        await page.get_by_role("tab", name="Timeline").click()
        await page.locator("#step-0 .checkpoint-card textarea").fill("<img src=x onerror=window.__pwned='comment'>")
        await page.locator("#step-0 [data-decide='approve']").click()
        await expect(page.locator("#step-1 .checkpoint-card")).to_be_visible(timeout=WAIT_MS)
        await page.locator("#step-1 [data-decide='approve']").click()
        await expect(page.locator("#run-head .badge")).to_have_text("Failed", timeout=WAIT_MS)
        await expect(page.locator("#run-head [data-action='retry']").first).to_have_text("Retry")
        await page.get_by_role("tab", name="Transcript").click()

        transcript = page.locator("#transcript")
        for selector in (".setup-card .entry.setup", ".entry.info", ".entry.thinking", ".entry.text strong",
                         ".entry.tool .todos", ".entry.tool .newfile", ".diff .diff-add", ".diff .diff-del",
                         ".entry.tool pre.stream", ".entry.tool .fetch", ".entry.tool.is-error", ".entry.error",
                         ".cmd", "details.subagent"):
            await expect(transcript.locator(selector).first).to_be_attached()
        await expect(transcript.locator("details.subagent")).to_have_count(2)
        await expect(transcript.locator("details.subagent").first).to_contain_text("Sub-agent reporting in.")
        await expect(transcript.locator(".entry.tool pre.stream").first).to_contain_text("streamed-done")
        await expect(transcript.locator(".entry.text a[href='https://example.com/docs']")).to_have_count(1)

        for where in (page, await page.context.new_page()):  # the live page, and a fresh load of it
            if where is not page:
                watch_for_trouble(where, trouble)
                await where.goto(f"{app.base}/runs/{run.id}#transcript")
            assert await where.evaluate("typeof window.__pwned") == "undefined"
            assert await where.locator("img").count() == 0
            assert await where.locator("a[href^='javascript' i]").count() == 0
            assert await where.locator("[onerror], [onclick]").count() == 0
            assert await where.locator("script").evaluate_all("s => s.map(x => x.getAttribute('src'))") == [
                "/static/run.js", "/static/notify.js"]
            await expect(where.locator("#transcript")).to_contain_text("<script>window.__pwned = 'script'</script>")
        # a clone retry: the page follows you to the new run
        await page.locator("#run-head [data-clone='1']").click()
        await expect(page).not_to_have_url(f"{app.base}/runs/{run.id}", timeout=WAIT_MS)
        await expect(page.locator("#summary")).to_contain_text(run.id)  # the retry chain
        assert trouble == [], trouble


def test_chromium_is_there_in_ci() -> None:
    if os.environ.get("CI"):
        assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
