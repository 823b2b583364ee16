"""The pages of plans and initiatives, in-process: the list with its filters, a record with its
Markdown body and its runs, the create and edit forms (the API's checks, a refusal that keeps
what was typed, the Origin rule, scopes), hostile record text coming out inert, and the record
linked by its title wherever a run shows it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from flowrun.config import Settings, ensure_demo_remote, open_engine
from flowrun.flows.enums import LaunchKind, RunStatus
from flowrun.flows.run import Launch
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine
from flowrun.runtime.records import RecordData, create_record, get_record, list_records
from flowrun.tools.auth import TokenTable
from flowrun.tools.face import EngineSlot
from flowrun.web.auth import WebAuth
from flowrun.web.pages import page_routes

from .pagekit import HOSTILE_MARKDOWN, environment
from .test_pages import ANA, READER, no_active_markup

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765"
SAME_SITE = {"origin": BASE}
HOSTILE_TITLE = "CSV <script>window.__pwned='title'</script> export"


@asynccontextmanager
async def pages(tmp_path: Path, actor: Actor | None = ANA) -> AsyncIterator[tuple[Engine, httpx2.AsyncClient]]:
    async def authenticate(conn: HTTPConnection) -> Actor | None:
        return actor

    web_auth = WebAuth(TokenTable(), BASE)  # the real Origin rule: a cookie request must name an allowed Origin

    def may_change(conn: HTTPConnection) -> bool:
        return web_auth.state_change_allowed(conn, conn.scope["method"])

    slot = EngineSlot()
    app = Starlette(routes=page_routes(slot, authenticate, may_change=may_change))
    settings = Settings.from_env(environment(tmp_path))
    ensure_demo_remote(settings.home)
    async with open_engine(settings) as engine:
        slot.engine = engine
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as client:
            yield engine, client


def form(**fields: str) -> dict[str, str]:
    return {"kind": "plan", "title": "", "body": "", "repository": "", "status": "draft", "links": "", **fields}


async def test_the_list_filters_and_a_record_shows_its_body_links_and_runs(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        store = engine.deps.store
        plan = await create_record(store, ANA, "plan", HOSTILE_TITLE, HOSTILE_MARKDOWN, repository="orcette/insights",
                                   status="active", links=["https://example.org/spec"])
        # a link stored before links were checked is shown, never followed
        plan = plan.model_copy(update={"data": {**plan.data, "links": [*plan.data["links"], "javascript:alert(1)"]}})
        await store.put_record(plan)
        initiative = await create_record(store, ANA, "initiative", "Reporting", "Quarterly *reports*.")
        listed = await client.get("/records")
        html = listed.text
        assert listed.status_code == 200 and "unsafe-inline" not in listed.headers["content-security-policy"]
        no_active_markup(html)
        assert "CSV &lt;script&gt;window.__pwned=&#39;title&#39;&lt;/script&gt; export" in html
        assert html.index(initiative.id) < html.index(plan.id), "newest first"
        assert 'aria-current="page"' in html and 'href="/records"' in html  # the nav entry
        only_plans = (await client.get("/records", params={"kind": "plan"})).text
        assert plan.id in only_plans and initiative.id not in only_plans
        drafts = (await client.get("/records", params={"status": "draft"})).text
        assert initiative.id in drafts and plan.id not in drafts
        assert (await client.get("/records", params={"kind": "epic"})).status_code == 400

        run = await engine.start_run(ANA, "full-sdlc", {}, checkpoint_mode="none",
                                     launch=Launch(kind=LaunchKind.RECORD, ref=plan.id))
        other = await engine.start_run(ANA, "full-sdlc", {}, checkpoint_mode="none")
        await engine.idle(60)
        page = await client.get(f"/records/{plan.id}")
        html = page.text
        assert page.status_code == 200
        no_active_markup(html)
        assert "<strong>markdown</strong>" in html  # the body, as Markdown, on the server
        assert "&lt;script&gt;window.__pwned = 'script'&lt;/script&gt;" in html
        assert '<a href="https://example.org/spec"' in html and "<code>javascript:alert(1)</code>" in html
        assert f'href="/runs/{run.id}"' in html and other.id not in html
        assert 'class="badge status-completed"' in html and "orcette/insights" in html
        assert "runs use sandbox profile <code>demo</code>" in html  # the demo profile's repository_id
        assert f'href="/flows?record={plan.id}"' in html and f'href="/records/{plan.id}/edit"' in html
        assert (await client.get("/records/plan_nope")).status_code == 404


async def test_a_plan_is_created_and_edited_through_the_forms(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        new = await client.get("/records/new", params={"kind": "initiative"})
        assert new.status_code == 200 and 'value="initiative" checked' in new.text
        no_active_markup(new.text)
        made = await client.post("/records", data=form(title="CSV export", body="1. Add a *download*.",
                                                      repository="orcette/insights", status="active",
                                                      links="https://example.org/a\r\n\r\nhttps://example.org/b"),
                                 headers=SAME_SITE)
        assert made.status_code == 303
        record_id = made.headers["location"].removeprefix("/records/")
        record = await get_record(engine.deps.store, ANA, record_id)
        data = RecordData.model_validate(record.data)
        assert (record.kind, record.title, record.body) == ("plan", "CSV export", "1. Add a *download*.")
        assert (data.repository, data.status, data.links) == ("orcette/insights", "active",
                                                             ["https://example.org/a", "https://example.org/b"])
        edit = (await client.get(f"/records/{record_id}/edit")).text
        assert 'value="CSV export"' in edit and "1. Add a *download*." in edit and "https://example.org/b" in edit
        saved = await client.post(f"/records/{record_id}", headers=SAME_SITE, data=form(
            title="CSV and JSON export", body="Both.", repository="", status="done", links="https://example.org/c"))
        assert saved.status_code == 303 and saved.headers["location"] == f"/records/{record_id}"
        record = await get_record(engine.deps.store, ANA, record_id)
        data = RecordData.model_validate(record.data)
        assert (record.title, record.body, data.repository, data.status, data.links) == (
            "CSV and JSON export", "Both.", None, "done", ["https://example.org/c"])


BAD_FORMS = [
    ("an empty title", {"title": "  "}, "needs a title"),
    ("a title too long", {"title": "x" * 201}, "Title: String should have at most 200 characters"),
    ("an unknown status", {"status": "shipped"}, "Status: Input should be"),
    ("a link that is not http(s)", {"links": "javascript:alert(1)"}, "http(s) URL"),
    ("a repository that is not owner/name", {"repository": "not a repo"}, "owner/name"),
]


@pytest.mark.parametrize(("case", "fields", "says"), BAD_FORMS, ids=[c[0] for c in BAD_FORMS])
async def test_a_refused_form_says_why_and_keeps_what_was_typed(tmp_path: Path, case: str, fields: dict[str, str],
                                                                says: str) -> None:
    typed: dict[str, Any] = {"title": "Kept <b>title</b>", "body": "A body worth keeping\n<script>x()</script>",
                             **fields}
    async with pages(tmp_path) as (engine, client):
        refused = await client.post("/records", data=form(**typed), headers=SAME_SITE)
        assert refused.status_code == 422, case
        assert says in refused.text and "Nothing was saved" in refused.text
        no_active_markup(refused.text)
        assert "A body worth keeping\n&lt;script&gt;x()&lt;/script&gt;</textarea>" in refused.text
        assert await list_records(engine.deps.store, ANA) == []
        plan = await create_record(engine.deps.store, ANA, "plan", "Stays", "As it was.")
        again = await client.post(f"/records/{plan.id}", data=form(**typed), headers=SAME_SITE)
        assert again.status_code == 422 and says in again.text and "the plan is as it was" in again.text
        assert (await get_record(engine.deps.store, ANA, plan.id)).model_dump() == plan.model_dump()


async def test_signed_out_readers_and_foreign_origins_change_nothing(tmp_path: Path) -> None:
    async with pages(tmp_path, actor=None) as (_engine, client):
        for path in ("/records", "/records/new", "/records/plan_x"):
            page = await client.get(path)
            assert page.status_code == 401 and "login link" in page.text
        for path in ("/records", "/records/plan_x"):  # both forms: signed out is asked to sign in first
            posted = await client.post(path, data=form(title="Mine"), headers=SAME_SITE)
            assert posted.status_code == 401 and "login link" in posted.text
    async with pages(tmp_path / "reader", actor=READER) as (engine, client):
        plan = await create_record(engine.deps.store, ANA, "plan", "Theirs")
        listed = (await client.get("/records")).text
        assert plan.id in listed and "New plan" not in listed
        shown = (await client.get(f"/records/{plan.id}")).text
        assert "Run a Flow from this plan" not in shown and "/edit" not in shown
        for refused in (await client.get("/records/new"), await client.get(f"/records/{plan.id}/edit"),
                        await client.post("/records", data=form(title="Mine"), headers=SAME_SITE),
                        await client.post(f"/records/{plan.id}", data=form(title="Mine"), headers=SAME_SITE)):
            assert refused.status_code == 403 and "flows.run scope" in refused.text
        # the Origin rule comes before the scope: a forged post is refused as forged, whoever sends it
        forged = await client.post(f"/records/{plan.id}", data=form(title="Mine"), headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and "nothing was changed" in forged.text
        assert [r.id for r in await list_records(engine.deps.store, ANA)] == [plan.id]
        assert (await get_record(engine.deps.store, ANA, plan.id)).title == "Theirs"
    async with pages(tmp_path / "csrf") as (engine, client):
        plan = await create_record(engine.deps.store, ANA, "plan", "Ours")
        for headers in ({"origin": "https://evil.example"}, {}):  # a foreign Origin, or none with a cookie
            for path in ("/records", f"/records/{plan.id}"):
                forged = await client.post(path, data=form(title="Forged"), headers=headers)
                assert forged.status_code == 403 and "nothing was changed" in forged.text
        assert [(r.id, r.title) for r in await list_records(engine.deps.store, ANA)] == [(plan.id, "Ours")]


async def test_a_run_from_a_plan_links_it_by_title(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        plan = await create_record(engine.deps.store, ANA, "plan", HOSTILE_TITLE, repository="orcette/insights")
        flows = (await client.get("/flows", params={"record": plan.id})).text
        no_active_markup(flows)
        assert f'name="record_id" value="{plan.id}"' in flows and f'href="/records/{plan.id}"' in flows
        assert re.search(r'<option value="" selected>From the plan.s repository: demo</option>', flows)
        assert (await client.get("/flows", params={"record": "plan_gone"})).status_code == 404
        run = await engine.start_run(ANA, "full-sdlc", {}, launch=Launch(kind=LaunchKind.RECORD, ref=plan.id))
        await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        assert run.sandbox_profile == "demo"
        page = (await client.get(f"/runs/{run.id}")).text
        no_active_markup(page)
        link = f'<a href="/records/{plan.id}">CSV &lt;script&gt;window.__pwned=&#39;title&#39;&lt;/script&gt; export</a>'
        assert page.count(link) == 2  # "started from" and the Plan row of the summary card
        live = (await client.get(f"/runs/{run.id}/live", params={"after_seq": 0})).json()
        summary = next(r["html"] for r in live["regions"] if r["id"] == "summary")
        assert link in summary
        progress = (await client.get(f"/runs/{run.id}/progress")).json()
        assert progress["record"] == {"id": plan.id, "kind": "plan", "title": HOSTILE_TITLE,
                                      "url": f"/records/{plan.id}"}
        await engine.cancel(ANA, run.id)
