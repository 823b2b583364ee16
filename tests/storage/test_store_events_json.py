"""`events_json` (both stores): the stored events as the JSON `Event.model_dump_json()` gives,
without decoding (the websocket's replay forwards it as it is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowrun.flows.errors import NotFound
from tests.storekinds import StoreKind

from .storekit import created, entries, make_run

pytestmark = pytest.mark.anyio


async def test_events_json_is_the_events_dumped(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "flowrun.db") as store:
        run, _ = await store.create_run(make_run(), created(make_run()))
        await store.append_transcript(run.id, entries(30))
        stored = await store.events(run.id)
        raw = await store.events_json(run.id, 0, 1000)
        assert [seq for seq, _ in raw] == [e.seq for e in stored]
        assert [json.loads(text) for _, text in raw] == [json.loads(e.model_dump_json()) for e in stored]
        page = await store.events_json(run.id, 5, 10)
        assert [seq for seq, _ in page] == list(range(6, 16))
        assert await store.events_json(run.id, stored[-1].seq, 10) == []
        with pytest.raises(NotFound):
            await store.events_json("run_nope", 0, 10)
