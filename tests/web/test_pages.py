"""The pages rendered in-process: what each shows, the run page's live regions, the overlay's
data, the header action per status (the product document's table), security headers, and
hostile transcript content coming out inert."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from flowrun.config import Settings, ensure_demo_remote, open_engine
from flowrun.flows.chat import Chat
from flowrun.flows.enums import RunStatus, Scope
from flowrun.flows.run import Run
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine
from flowrun.tools.face import EngineSlot
from flowrun.web.chats import ChatSlot, ChatSource
from flowrun.web.pages import page_routes
from flowrun.web.runpage import header_actions

from .pagekit import environment

pytestmark = pytest.mark.anyio

ANA = Actor("ana")
READER = Actor("rita", scopes=frozenset({Scope.READ}))


@asynccontextmanager
async def pages(tmp_path: Path, actor: Actor | None = ANA,
                chats: ChatSlot | None = None) -> AsyncIterator[tuple[Engine, httpx2.AsyncClient]]:
    async def authenticate(conn: HTTPConnection) -> Actor | None:
        return actor

    slot = EngineSlot()
    app = Starlette(routes=page_routes(slot, authenticate, chats))
    settings = Settings.from_env(environment(tmp_path))
    ensure_demo_remote(settings.home)
    async with open_engine(settings) as engine:
        slot.engine = engine
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
            yield engine, client


async def finished(engine: Engine, flow: str, **choices: Any) -> Run:
    run = await engine.start_run(ANA, flow, {}, **choices)
    await engine.idle(60)
    return await engine.get_run(ANA, run.id)


def no_active_markup(html: str) -> None:
    """Nothing in a page may run script but the page's own module from /static."""
    for tag in re.findall(r"<script\b[^>]*>", html, re.I):
        assert re.search(r'type="module" src="/static/[a-z]+\.js"', tag), tag
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", html, re.I), "an inline event handler"
    assert not re.search(r"""href\s*=\s*["']?\s*javascript:""", html, re.I), "a javascript: link"
    assert not re.search(r"<img\b", html, re.I), "an image"


async def test_run_page_shows_the_document_layout_and_nothing_active(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        run = await finished(engine, "kinds")
        assert run.status == RunStatus.FAILED
        page = await client.get(f"/runs/{run.id}")
        assert page.status_code == 200
        html = page.text
        for header, value in (("content-security-policy", "script-src 'self'"), ("x-frame-options", "DENY"),
                              ("x-content-type-options", "nosniff")):
            assert value in page.headers[header]
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        no_active_markup(html)
        # header: status badge and the action that fits a failed run
        assert 'class="badge status-failed">Failed<' in html
        assert 'data-action="retry">Retry</button>' in html
        assert 'data-action="cancel"' not in html
        # summary card, tabs, a card per step with number, name, badge, turns and /skill
        for text in ("Started by", "Duration", run.id, "Retry chain" if run.retry_of else "Turns · cost",
                     ">Timeline<", ">Parameters<", ">Transcript<", "/kinds", "/broken", "Inspect Output",
                     "7 turns", 'id="step-0"', 'id="step-1"'):
            assert text in html, text
        # every transcript kind, rendered as its card
        for marker in ('class="entry setup"', 'class="entry info"', 'class="entry thinking"', 'class="entry text md"',
                       'class="todos"', 'class="newfile"', 'class="diff-add"', 'class="diff-del"', 'class="stream"',
                       'class="fetch"', 'class="entry error"', 'class="subagent"', "Sub-agent <code>alpha</code>",
                       "Sub-agent <code>beta</code>", 'class="cmd"'):
            assert marker in html, marker
        # markdown rendered on the server; hostile bits are text
        assert "<strong>markdown</strong>" in html
        assert '<a href="https://example.com/docs" rel="nofollow noopener noreferrer" target="_blank">safe link</a>' in html
        assert "&lt;script&gt;window.__pwned = 'script'&lt;/script&gt;" in html
        assert "[image: tracker]" in html and 'src="http://evil.example' not in html
        assert "evil.example/pixel.png" not in html.split('href="')[0]


async def test_live_regions_follow_the_log_without_a_gap(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        run = await engine.start_run(ANA, "full-sdlc", {}, checkpoint_mode="every")
        paused = await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        first = (await client.get(f"/runs/{run.id}/live", params={"after_seq": 0})).json()
        assert first["seq"] == paused.last_seq and first["status"] == "paused"
        ids = [r["id"] for r in first["regions"]]
        assert ids[:4] == ["run-head", "banners", "summary", "timeline"] and "ts-setup" in ids
        timeline = next(r["html"] for r in first["regions"] if r["id"] == "timeline")
        assert 'class="checkpoint-card"' in timeline and 'data-decide="approve"' in timeline
        await engine.decide(ANA, run.id, "approve", comment="go", step=0)
        await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        later = (await client.get(f"/runs/{run.id}/live", params={"after_seq": first["seq"]})).json()
        assert later["seq"] > first["seq"]
        sections = [r["id"] for r in later["regions"][4:]]
        # only what changed is sent again (the sandbox is provisioned once step 1 is approved)
        assert sections == ["ts-setup", "ts-0"]
        whole = (await client.get(f"/runs/{run.id}")).text
        ts0 = next(r["html"] for r in later["regions"] if r["id"] == "ts-0")
        assert ts0.strip() in whole, "the live region equals what a reload renders"
        assert "Approved by <strong>ana</strong>: “go”" in whole
        bad = await client.get(f"/runs/{run.id}/live", params={"after_seq": "x"})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_request"


async def test_a_refresh_reads_only_the_events_it_has_not_folded(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        reads: list[tuple[int, int | None]] = []
        events = engine.events

        async def counted(actor: Actor, run_id: str, after_seq: int = 0, limit: int | None = None) -> Any:
            reads.append((after_seq, limit))
            return await events(actor, run_id, after_seq, limit)

        engine.events = counted  # type: ignore[method-assign]
        run = await engine.start_run(ANA, "full-sdlc", {}, checkpoint_mode="every")
        paused = await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        first = (await client.get(f"/runs/{run.id}")).text
        assert reads == [(0, paused.last_seq)]
        again = (await client.get(f"/runs/{run.id}/live", params={"after_seq": paused.last_seq})).json()
        assert reads == [(0, paused.last_seq)], "nothing new: nothing read"
        assert [r["id"] for r in again["regions"]] == ["run-head", "banners", "summary", "timeline"]
        await engine.decide(ANA, run.id, "approve", step=0)
        later = await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        await client.get(f"/runs/{run.id}/live", params={"after_seq": paused.last_seq})
        assert reads[1:] == [(paused.last_seq, later.last_seq - paused.last_seq)]
        kept = (await client.get(f"/runs/{run.id}/live", params={"after_seq": 0})).json()["regions"][4:]
        assert len(reads) == 2

        async def authenticate(conn: HTTPConnection) -> Actor | None:
            return ANA

        slot = EngineSlot()
        slot.engine = engine
        fresh = Starlette(routes=page_routes(slot, authenticate))  # as after a restart: folds from scratch
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fresh), base_url="http://127.0.0.1:8765") as c:
            scratch = (await c.get(f"/runs/{run.id}/live", params={"after_seq": 0})).json()["regions"][4:]
        assert reads[2] == (0, later.last_seq)
        assert kept == scratch and {r["id"] for r in kept} >= {"ts-setup", "ts-0", "ts-1"} and first


async def test_progress_feeds_the_overlay(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        run = await engine.start_run(ANA, "full-sdlc", {})
        await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        body = (await client.get(f"/runs/{run.id}/progress")).json()
        assert body["status"] == "paused" and body["can_decide"] is True
        assert [s["status"] for s in body["steps"]] == ["completed", "completed", "completed", "pending"]
        cp = body["checkpoint"]
        assert (cp["step"], cp["step_name"], cp["message"]) == (3, "Create PR", "Sign off before the PR opens.")
        assert cp["previous_summary"].startswith("Ready for a PR")
        await engine.decide(Actor("bob"), run.id, "approve", comment="ship it", step=3)
        body = (await client.get(f"/runs/{run.id}/progress")).json()
        assert body["checkpoint"] is None
        assert body["decision"] | {"at": ""} == {"step": 3, "step_name": "Create PR", "kind": "approve", "actor": "bob",
                                                 "comment": "ship it", "auto": False, "at": ""}


async def test_lists_and_flows(tmp_path: Path) -> None:
    async with pages(tmp_path) as (engine, client):
        run = await finished(engine, "full-sdlc", execution_mode="background", checkpoint_mode="none")
        sessions = await client.get("/sessions")
        assert sessions.status_code == 200 and run.id in sessions.text and "Full SDLC" in sessions.text
        no_active_markup(sessions.text)
        rows = (await client.get("/sessions", params={"part": "rows"})).json()["regions"][0]
        assert rows["id"] == "session-rows" and run.id in rows["html"]
        center = await client.get("/command-center")
        assert f'id="task-{run.id}"' in center.text and f"{run.usage.turns}</strong> turns" in center.text
        flows = await client.get("/flows")
        html = flows.text
        no_active_markup(html)
        assert 'data-run-flow="full-sdlc"' in html and 'data-run-flow="kinds"' in html
        for choice in ("Template defaults", "Pause before every step", "No checkpoints", 'value="interactive"',
                       'value="background"', 'name="sandbox_profile"', 'name="param:goal"', "data-start disabled"):
            assert choice in html, choice
        assert (await client.get("/")).headers["location"] == "/sessions"
        static = await client.head("/static/overlay.js")  # (the browser tests read them whole)
        assert static.status_code == 200 and static.headers["x-frame-options"] == "DENY"


class OneChat:
    """Just what Sessions asks of the chat service."""

    async def list_chats(self, actor: Actor, *, limit: int = 50) -> list[Chat]:
        return [Chat(owner=actor.id, title="CSV export <b>chat</b>", runs=["run_a", "run_b"])]


async def test_sessions_lists_runs_and_chats(tmp_path: Path) -> None:
    async with pages(tmp_path, chats=ChatSlot(cast(ChatSource, OneChat()))) as (engine, client):
        run = await finished(engine, "full-sdlc", checkpoint_mode="none")
        html = (await client.get("/sessions")).text
        no_active_markup(html)
        chat_row = html.index("CSV export &lt;b&gt;chat&lt;/b&gt;")
        assert 'href="/chats/chat_' in html and "chat · 2 runs" in html
        assert chat_row < html.index(f'href="/runs/{run.id}"'), "newest first: the chat spoke last"


async def test_signed_out_and_unknown(tmp_path: Path) -> None:
    async with pages(tmp_path, actor=None) as (_engine, client):
        page = await client.get("/sessions")
        assert page.status_code == 401 and "login link" in page.text
        assert (await client.get("/runs/run_x/live")).status_code == 401
    async with pages(tmp_path / "2") as (_engine, client):
        missing = await client.get("/runs/run_nope")
        assert missing.status_code == 404 and "run_nope" in missing.text


async def test_readers_see_no_actions(tmp_path: Path) -> None:
    async with pages(tmp_path, actor=READER) as (engine, client):
        run = await engine.start_run(ANA, "full-sdlc", {})
        await engine.wait_until(ANA, run.id, statuses=[RunStatus.PAUSED], timeout_s=30)
        html = (await client.get(f"/runs/{run.id}")).text
        assert "data-action=" not in html and "data-decide=" not in html
        assert "Deciding needs the flows.run scope" in html
        assert "data-run-flow" not in (await client.get("/flows")).text
        await engine.cancel(ANA, run.id)


# The header offers the action that fits the status (the document's "Retry, resume, and cancel").
HEADER_ACTIONS = [
    (RunStatus.PENDING, ["Cancel"]),
    (RunStatus.RUNNING, ["Cancel"]),
    (RunStatus.PAUSED, ["Cancel"]),  # decided on the inline checkpoint card
    (RunStatus.BLOCKED, ["Resume"]),
    (RunStatus.CANCELLED, ["Resume"]),
    (RunStatus.FAILED, ["Retry", "Retry as a new run"]),
    (RunStatus.INTERRUPTED, ["Retry Flow", "Retry as a new run"]),
    (RunStatus.COMPLETED, []),
    (RunStatus.REJECTED, []),
]


@pytest.mark.parametrize(("status", "labels"), HEADER_ACTIONS)
def test_header_action_fits_the_status(status: RunStatus, labels: list[str]) -> None:
    from flowrun.flows.template import FlowTemplate

    flow = FlowTemplate.model_validate({"id": "f", "name": "F", "steps": [{"name": "s", "skill": "k"}]})
    run = Run(flow=flow, started_by="ana", sandbox_profile="p", execution_mode="interactive",
              checkpoint_mode="template", status=status)
    assert [a.label for a in header_actions(run, ANA)] == labels
    assert header_actions(run, READER) == []
    bob = Actor("bob", scopes=frozenset({Scope.READ, Scope.RUN}))  # not his run: no Cancel
    assert "Cancel" not in [a.label for a in header_actions(run, bob)]


def test_a_block_is_rendered_again_only_when_it_grew() -> None:
    from collections.abc import Callable

    from flowrun.flows.enums import TranscriptKind
    from flowrun.web.render import make_env
    from flowrun.web.transcript_view import Block

    block_html = cast(Callable[[Block], str], make_env().globals["block_html"])
    block = Block(id="tb-4", kind=TranscriptKind.TEXT, step=0, subagent=None, first_seq=4, last_seq=4, text="**one**")
    first = block_html(block)
    assert "<strong>one</strong>" in first and 'id="tb-4"' in first
    block.text = "**changed behind its back**"  # same seq: the kept HTML stands (a stored event never changes)
    assert block_html(block) == first
    block.text, block.last_seq = "**one** and two", 5  # a later event grew it
    assert "and two" in block_html(block)
