"""The launch-path API: plans and initiatives, launching from one, schedules, notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from .test_hooks import hook_env
from .webkit import READER, WAIT_S, served

pytestmark = pytest.mark.anyio

SCHEDULED = """id: nightly
name: Nightly
defaults: {sandbox_profile: quiet}
triggers:
  schedule: {cron: "0 3 * * *", timezone: Europe/Paris}
steps:
  - {name: Review, skill: review}
"""


async def test_records_launch_schedules_and_notifications(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    (Path(env["FLOWRUN_PATH"]) / "flows" / "nightly.yaml").write_text(SCHEDULED)
    async with served(env) as s, s.http() as http:
        created = await http.post("/api/records", json={"title": "CSV export", "body": "Add a CSV download."})
        assert created.status_code == 201, created.text
        plan: dict[str, Any] = created.json()
        assert plan["id"].startswith("plan_") and plan["status"] == "draft" and plan["created_by"] == "ana"
        bad = await http.post("/api/records", json={"title": ""})
        assert bad.status_code == 422
        async with s.http(READER) as reader:
            assert (await reader.post("/api/records", json={"title": "x"})).status_code == 403
            assert [r["id"] for r in (await reader.get("/api/records")).json()["records"]] == [plan["id"]]
        updated = await http.post(f"/api/records/{plan['id']}", json={"status": "active", "add_links": ["https://x.example"]})
        assert updated.json()["status"] == "active" and updated.json()["links"] == ["https://x.example"]
        assert (await http.get("/api/records/plan_nope")).status_code == 404
        replaced = await http.post(f"/api/records/{plan['id']}", json={"links": ["https://y.example"]})
        assert replaced.json()["links"] == ["https://y.example"]
        bad_link = await http.post(f"/api/records/{plan['id']}", json={"add_links": ["javascript:alert(1)"]})
        assert bad_link.status_code == 422 and "http(s) URL" in bad_link.json()["message"]

        run = (await http.post("/api/runs", json={"flow_id": "pr-review", "record_id": plan["id"],
                                                  "params": {"repository": "orcette/insights", "pr_number": 1}})).json()
        assert (run["launch"], run["launch_ref"], run["plan"]) == ("record", plan["id"], plan["id"])
        assert run["record_url"] == f"{s.base}/records/{plan['id']}" and run["url"].startswith(s.base)
        missing = await http.post("/api/runs", json={"flow_id": "pr-review", "record_id": "plan_gone",
                                                     "params": {"repository": "r", "pr_number": 1}})
        assert (missing.status_code, missing.json()["code"]) == (409, "preflight_failed")

        schedules = (await http.get("/api/schedules")).json()["schedules"]
        assert [x["flow_id"] for x in schedules] == ["nightly"] and len(schedules[0]["next_fires"]) == 3
        paused = await http.post("/api/schedules/nightly/pause")
        assert paused.json()["paused"] is True and paused.json()["next_fires"] == []
        resumed = await http.post("/api/schedules/nightly/resume")
        assert resumed.json()["paused"] is False
        assert (await http.post("/api/schedules/pr-review/pause")).status_code == 404

        with anyio.fail_after(WAIT_S):  # the run completes; `serve`'s notifier records it
            while True:
                notes = (await http.get("/api/notifications")).json()["notifications"]
                if any(n["run_id"] == run["id"] and n["status"] == "completed" for n in notes):
                    break
                await anyio.sleep(0.1)
        assert (await http.get(f"/api/runs/{run['id']}")).json()["status"] == "completed"


async def test_a_record_launch_takes_its_repositorys_profile_over_the_api(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    (Path(env["FLOWRUN_PATH"]) / "profiles" / "tools.yaml").write_text("name: tools\nbackend: noop\nrepository_id: acme/tools\n")
    params = {"repository": "acme/tools", "pr_number": 1}
    async with served(env) as s, s.http() as http:
        plan = (await http.post("/api/records", json={"title": "Tidy", "repository": "acme/tools"})).json()
        chosen = (await http.post("/api/runs", json={"flow_id": "pr-review", "record_id": plan["id"], "params": params})).json()
        assert chosen["sandbox_profile"] == "tools" and chosen["plan"] == plan["id"]  # the Flow's default is `quiet`
        explicit = (await http.post("/api/runs", json={"flow_id": "pr-review", "record_id": plan["id"], "params": params,
                                                       "sandbox_profile": "quiet"})).json()
        assert explicit["sandbox_profile"] == "quiet"  # an explicit profile wins
        nowhere = (await http.post("/api/records", json={"title": "Lost", "repository": "acme/nowhere"})).json()
        refused = await http.post("/api/runs", json={"flow_id": "pr-review", "record_id": nowhere["id"], "params": params})
        assert (refused.status_code, refused.json()["code"]) == (409, "preflight_failed")
        assert f"'acme/nowhere' of plan '{nowhere['id']}'" in refused.json()["message"]
