"""The published protocol schema matches the models; refusals map to their HTTP statuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from flowrun.flows.errors import (
    ConcurrentUpdate,
    DecisionConflict,
    FlowrunError,
    InvalidTransition,
    NotFound,
    ParameterError,
    PermissionDenied,
    StartRefused,
    UsageError,
)
from flowrun.web.errors import RequestError, error_body, error_response, http_status
from flowrun.web.protocol import (
    Batch,
    EventMessage,
    Pong,
    batch_frames,
    client_message,
    json_schema,
    schema_text,
    server_message,
)

SCHEMA = Path(__file__).parents[2] / "docs" / "ws-protocol.schema.json"


def test_the_published_schema_is_in_sync() -> None:
    assert SCHEMA.read_text() == schema_text(), (
        "docs/ws-protocol.schema.json is stale: run `python scripts/ws_schema.py`")


def test_the_schema_accepts_what_the_models_produce() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    client = {**schema["properties"]["client"], "$defs": schema["$defs"]}
    server = {**schema["properties"]["server"], "$defs": schema["$defs"]}
    for raw in ({"type": "subscribe", "run_id": "run_1", "after_seq": 4, "ref": 1},
                {"type": "subscribe", "topic": "sessions"}, {"type": "unsubscribe", "run_id": "run_1"},
                {"type": "decide", "run_id": "run_1", "decision": "skip", "step": "Create PR"},
                {"type": "ping"}, {"type": "auth", "token": "t"}):
        client_message.validate_python(raw)
        jsonschema.validate(raw, client)
    for out in ({"type": "event", "run_id": "r", "seq": 1, "event": {"run_id": "r", "seq": 1, "data": {}}},
                {"type": "ack", "ref": "x", "op": "decide", "status": "running"},
                {"type": "error", "ref": None, "code": "already_decided", "message": "m", "retryable": False},
                {"type": "pong", "ref": 3}):
        server_message.validate_python(out)
        jsonschema.validate(out, server)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "subscribe", "run_id": "r", "after_seq": -1}, client)


@pytest.mark.parametrize(("error", "status"), [
    (NotFound("no run"), 404),
    (PermissionDenied("no scope"), 403),
    (StartRefused("fill it", code="missing_parameters", missing=["x"]), 422),
    (StartRefused("wait", code="warming_up", retryable=True, retry_after=2.0), 503),
    (StartRefused("no repo", code="preflight_failed"), 409),
    (StartRefused("cap", code="daily_cap_reached"), 429),
    (DecisionConflict("first stands", code="already_decided"), 409),
    (DecisionConflict("moved on", code="stale_checkpoint"), 409),
    (InvalidTransition("run r", "completed", "cancel"), 409),
    (ConcurrentUpdate("changed"), 409),
    (ParameterError("bad type"), 422),
    (RequestError("bad body"), 422),
    (RequestError("huge", code="body_too_large"), 413),
    (UsageError("no"), 400),
    (FlowrunError("?"), 500),
])
def test_refusal_statuses(error: FlowrunError, status: int) -> None:
    assert http_status(error) == status
    body = json.loads(bytes(error_response(error).body))
    assert body["code"] == error.code and body["message"] == error.message


def test_retry_after_headers() -> None:
    warming = error_response(StartRefused("wait", code="warming_up", retryable=True, retry_after=1.2))
    assert warming.headers["retry-after"] == "2"
    resets = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    capped = error_response(StartRefused("cap", code="daily_cap_reached", resets_at=resets))
    assert 3590 <= int(capped.headers["retry-after"]) <= 3600
    assert error_body(StartRefused("fill", code="missing_parameters", missing=["a"]))["missing"] == ["a"]


def test_frames_that_queued_up_go_as_batches_in_order() -> None:
    frames = [EventMessage(run_id="r", seq=n, event={"run_id": "r", "seq": n, "data": {}}).model_dump_json()
              for n in range(1, 6)] + [Pong(ref=9).model_dump_json()]
    assert batch_frames(frames[:1]) == frames[:1]  # alone: unchanged
    (one,) = batch_frames(frames)
    batch = server_message.validate_json(one)
    assert isinstance(batch, Batch)
    assert [m.model_dump_json() for m in batch.messages] == frames
    jsonschema.validate(json.loads(one), {**json_schema()["properties"]["server"], "$defs": json_schema()["$defs"]})

    split = batch_frames(frames, limit=len(frames[0]) * 2 + 2)  # two events fit in a batch
    unpacked = []
    for frame in split:
        message = server_message.validate_json(frame)
        unpacked += message.messages if isinstance(message, Batch) else [message]
        assert len(frame) <= len(frames[0]) * 2 + 2 + 40  # the batch envelope
    assert [m.model_dump_json() for m in unpacked] == frames and len(split) == 3

    huge = "x" * 100
    assert batch_frames([frames[0], Pong(ref=huge).model_dump_json(), frames[1]], limit=50) == [
        frames[0], Pong(ref=huge).model_dump_json(), frames[1]]  # too big to join: each goes alone
