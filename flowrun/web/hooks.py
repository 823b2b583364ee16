"""`POST /hooks/github`: GitHub's webhook, verified before anything is parsed.

The signature (`X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the raw body with the
webhook secret) is compared in constant time; a missing or wrong one is 401 and the body is never
read as JSON. `ping` is answered; `pull_request` events start the Flows that ask for them
(`flowrun.runtime.pull_requests`); any other event is acknowledged and ignored.

The secret comes from `FLOWRUN_GITHUB_WEBHOOK_SECRET` or `$FLOWRUN_HOME/github-webhook-secret`;
without one the endpoint refuses every delivery (503), so an unconfigured server is never open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..runtime.engine import Engine
from ..runtime.pull_requests import PullRequestEvent, on_pull_request

log = logging.getLogger("flowrun.web")

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SECRET_FILE = "github-webhook-secret"


def webhook_secret(env: Mapping[str, str], home: Path) -> bytes | None:
    value = env.get("FLOWRUN_GITHUB_WEBHOOK_SECRET", "")
    if not value and (home / SECRET_FILE).is_file():
        value = (home / SECRET_FILE).read_text(encoding="utf-8").strip()
    return value.encode() if value else None


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """GitHub's scheme: `sha256=` + hex HMAC-SHA256 of the raw body; constant-time compare."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def github_hook_route(engine: Callable[[], Engine | None], secret: Callable[[], bytes | None]) -> Route:
    async def receive(request: Request) -> JSONResponse:
        key = secret()
        if key is None:
            return _error(503, "webhook_not_configured",
                          "No webhook secret is configured: set FLOWRUN_GITHUB_WEBHOOK_SECRET "
                          f"(or write it to $FLOWRUN_HOME/{SECRET_FILE}) and use the same one on GitHub.")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return _error(413, "payload_too_large", f"webhook payloads are limited to {MAX_BODY} bytes")
        body = await request.body()
        if not signature_ok(key, body, request.headers.get("x-hub-signature-256")):
            return _error(401, "bad_signature",
                          "X-Hub-Signature-256 is missing or does not match this server's webhook secret.")
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        if event == "ping":
            return JSONResponse({"ok": True, "event": "ping"})
        if event != "pull_request":
            return JSONResponse({"ok": True, "event": event, "ignored": True})
        if not delivery:
            return _error(400, "missing_delivery_id", "X-GitHub-Delivery is missing.")
        try:
            payload = PullRequestEvent.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            return _error(400, "bad_payload", f"not a pull_request payload: {str(exc).splitlines()[0]}")
        current = engine()
        if current is None or not current.ready:
            return JSONResponse({"code": "warming_up", "message": "The server is starting; GitHub will redeliver."},
                                status_code=503, headers={"Retry-After": "5"})
        outcomes = await on_pull_request(current, delivery, payload)
        log.info("github delivery %s (%s %s): %s", delivery, event, payload.action,
                 ", ".join(f"{o.flow_id}={o.result}" for o in outcomes) or "no matching flow")
        status = 500 if any(o.result == "failed" for o in outcomes) else 200
        return JSONResponse({"ok": status == 200, "delivery": delivery,
                             "flows": [o.model_dump() for o in outcomes]}, status_code=status)

    return Route("/hooks/github", receive, methods=["POST"])
