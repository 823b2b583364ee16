"""The Schedules and Integrations pages, and the blocked banner's connect action: what each shows,
who may act, escaping, and GitHub's token check faked with respx at the HTTP layer."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import httpx2
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from flowrun.config import Settings, open_engine
from flowrun.flows.enums import RunStatus
from flowrun.flows.run import now
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine
from flowrun.runtime.triggers import Triggers
from flowrun.tools.face import EngineSlot
from flowrun.web.pages import page_routes

from ..runtime.test_github import SHIP, TOKEN, hosted_repository
from .test_hooks import hook_env
from .test_pages import ANA, READER, no_active_markup
from .webkit import ANA as ANA_TOKEN
from .webkit import OPS, WAIT_S, served

pytestmark = pytest.mark.anyio

API = "https://api.github.com"
NIGHTLY = """id: nightly
name: Nightly <b>Review</b>
defaults: {sandbox_profile: quiet}
triggers:
  schedule: {cron: "* * * * *", timezone: Europe/Paris}
steps:
  - {name: Review, skill: review}
"""
TICKETED = """id: ticketed
name: Ticketed
defaults: {sandbox_profile: quiet}
parameters:
  - {name: ticket, type: integer, required: true}
triggers:
  schedule: {cron: "*/5 * * * *"}
steps:
  - {name: Review, skill: review}
"""


def schedule_env(tmp_path: Path) -> dict[str, str]:
    env = hook_env(tmp_path)
    flows = Path(env["FLOWRUN_PATH"]) / "flows"
    (flows / "nightly.yaml").write_text(NIGHTLY)
    (flows / "ticketed.yaml").write_text(TICKETED)
    return env


@asynccontextmanager
async def pages(env: dict[str, str], actor: Actor | None = ANA) -> AsyncIterator[tuple[Engine, httpx2.AsyncClient]]:
    """The pages in-process (as tests/web/test_pages.py has them) over a given environment."""
    async def authenticate(conn: HTTPConnection) -> Actor | None:
        return actor

    slot = EngineSlot()
    app = Starlette(routes=page_routes(slot, authenticate))
    async with open_engine(Settings.from_env(env)) as engine:
        slot.engine = engine
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as client:
            yield engine, client


async def test_schedules_page_shows_next_fires_fired_slots_and_refusals(tmp_path: Path) -> None:
    env = schedule_env(tmp_path)
    async with pages(env) as (engine, client):
        start = now()
        clock = [start]
        triggers = Triggers(engine, clock=lambda: clock[0])
        await triggers.statuses(ANA)  # the schedules start counting now
        clock[0] = start + timedelta(minutes=6)  # past a slot of both
        fired = await triggers.tick()
        assert sorted(c.status for c in fired) == ["done", "refused"]
        run_id = next(c.data["run_id"] for c in fired if c.status == "done")

        page = await client.get("/schedules")
        assert page.status_code == 200
        html = page.text
        no_active_markup(html)
        assert 'aria-current="page">Schedules<' in html
        assert "Nightly &lt;b&gt;Review&lt;/b&gt;" in html and "<b>Review</b>" not in html  # escaped
        assert '<code class="cron">* * * * *</code> in <strong>Europe/Paris</strong>' in html
        assert "CET" in html or "CEST" in html  # next fires in the schedule's zone, and in UTC
        assert html.count("<li><time datetime=") == 6  # three next fire times per schedule
        assert f'href="/runs/{run_id}"' in html and ">Started<" in html
        assert ">Refused<" in html and "missing_parameters" in html and "ticket" in html
        assert 'data-schedule="nightly" data-op="pause"' in html

        await triggers.pause(ANA, "nightly")
        part = (await client.get("/schedules", params={"part": "list"})).json()["regions"][0]
        assert part["id"] == "schedules"
        nightly = part["html"].split('id="schedule-nightly"')[1].split("</article>")[0]
        assert ">Paused<" in nightly and 'data-op="resume"' in nightly and "None while paused." in nightly

    async with pages(env, actor=READER) as (_engine, client):
        html = (await client.get("/schedules")).text
        assert "data-schedule=" not in html and "Nightly" in html
    async with pages(env, actor=None) as (_engine, client):
        assert (await client.get("/schedules")).status_code == 401


@pytest.fixture
def github_api() -> Iterator[respx.MockRouter]:
    """api.github.com faked; the app under test (on loopback) is reached for real."""
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{API}/user").mock(side_effect=lambda request: httpx.Response(
            200, json={"login": "octocat"}) if request.headers["authorization"] == f"Bearer {TOKEN}"
            else httpx.Response(401, json={"message": "Bad credentials"}))
        yield router


def blocked_env(tmp_path: Path) -> dict[str, str]:
    """A Flow whose step opens a PR on a repository hosted on "GitHub" (a local bare one)."""
    env = hook_env(tmp_path)
    root, scripts = Path(env["FLOWRUN_PATH"]), Path(env["FLOWRUN_SCRIPTS"])
    hosted = tmp_path / "gh"
    bare = hosted_repository(hosted)
    (root / "profiles" / "insights.yaml").write_text(
        f"name: insights\nbackend: local\nrepository_id: orcette/insights\n"
        f"repositories: [{{url: 'file://{bare}', path: insights}}]\n")
    (root / "skills" / "ship.yaml").write_text(
        "slug: ship\ninstructions: Ship it.\nallowed_tools: [shell, open_pull_request]\noutput_schema: {type: object}\n")
    (root / "flows" / "ship.yaml").write_text(
        "id: ship\nname: Ship\ndefaults: {sandbox_profile: insights}\nsteps:\n  - {name: Create PR, skill: ship}\n")
    (scripts / "ship.yaml").write_text(json.dumps({"skill": "ship", "turns": SHIP}))
    return {**env, "FLOWRUN_GITHUB_URL": f"file://{hosted}"}


async def test_connecting_github_from_the_web_unblocks_the_run(
        tmp_path: Path, github_api: respx.MockRouter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = github_api.get(f"{API}/repos/orcette/insights").respond(200, json={"default_branch": "main"})
    create = github_api.post(f"{API}/repos/orcette/insights/pulls").respond(
        201, json={"number": 7, "html_url": "https://github.com/orcette/insights/pull/7"})
    async with served(blocked_env(tmp_path)) as app, app.http(ANA_TOKEN) as ana, app.http(OPS) as ops:
        started = await ana.post("/api/runs", json={"flow_id": "ship"})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        engine = app.app.state.web.slot.get()
        ana_actor = Actor("ana")
        run = await engine.wait_until(ana_actor, run_id, statuses=[RunStatus.BLOCKED], timeout_s=WAIT_S)
        assert run.blocked is not None and run.blocked.cause.value == "credential_needed"

        # the banner says the fix and links to the Integrations page
        html = (await ana.get(f"/runs/{run_id}")).text
        no_active_markup(html)
        assert f'href="/integrations?run={run_id}">Connect GitHub</a>' in html
        assert 'id="banner-integration"' in html and "is connected now" not in html

        # ana may look, not connect (integrations.manage is an admin's scope)
        page = (await ana.get(f"/integrations?run={run_id}")).text
        no_active_markup(page)
        assert 'id="github-connect"' not in page and "integrations.manage" in page
        assert f'href="/runs/{run_id}"' in page  # the way back to the blocked run
        refused = await ana.post("/api/integrations/github", json={"token": TOKEN})
        assert refused.status_code == 403 and TOKEN not in refused.text

        # a foreign Origin is refused before anything is read
        foreign = await ops.post("/api/integrations/github", json={"token": TOKEN},
                                 headers={"Origin": "https://evil.example"})
        assert (foreign.status_code, foreign.json()["code"]) == (403, "forbidden_origin")
        # GitHub refuses a wrong token: nothing stored, the token not echoed
        wrong = await ops.post("/api/integrations/github", json={"token": "ghp_wrong_wrong_wrong", "connect_for": "server"})
        assert wrong.status_code == 400 and "refused that token" in wrong.text and "ghp_wrong" not in wrong.text
        bad = await ops.post("/api/integrations/github", json={"token": "two words", "connect_for": "server"})
        assert bad.status_code == 400 and "two words" not in bad.text
        github_file = app.settings.home / "integrations" / "github.json"
        assert not github_file.exists()

        ops_page = (await ops.get("/integrations")).text
        assert 'id="github-connect"' in ops_page and 'type="password"' in ops_page
        connected = await ops.post("/api/integrations/github", json={"token": f"  {TOKEN}\n", "connect_for": "server"})
        assert connected.status_code == 200, connected.text
        view = connected.json()
        assert (view["server_login"], view["connected"], view["usable"]) == ("octocat", False, True)
        assert TOKEN not in connected.text
        assert stat.S_IMODE(github_file.stat().st_mode) == 0o600
        for where in ("/integrations", "/api/integrations"):
            text = (await ops.get(where)).text
            assert TOKEN not in text and "octocat" in text

        # the banner now offers Resume; resuming opens the PR with the server's token
        html = (await ana.get(f"/runs/{run_id}")).text
        assert "GitHub is connected now." in html and 'data-action="resume">Resume</button>' in html
        resumed = await ana.post(f"/api/runs/{run_id}/resume")
        assert resumed.status_code == 200, resumed.text
        run = await engine.wait_until(ana_actor, run_id, statuses=[RunStatus.COMPLETED], timeout_s=WAIT_S)
        assert run.links.pull_request == "https://github.com/orcette/insights/pull/7"
        assert repo.called and create.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
        assert engine.deps.store.redactor.redact_obj(f"x {TOKEN}") == "x [REDACTED]"

        gone = await ops.post("/api/integrations/github/disconnect", json={"connect_for": "server"})
        assert gone.status_code == 200 and gone.json()["server_login"] is None
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert TOKEN.encode() not in (app.settings.home / "flowrun.db").read_bytes()
