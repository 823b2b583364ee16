"""Layer 3: the web face: the JSON API (`/api`, `/openapi.json`), the websocket `/ws`, login,
`/hooks/github`, and (in their own modules) the pages. `flowrun.web.client` is a standalone
client of `/ws`."""

from __future__ import annotations

from .auth import SESSION_COOKIE, WebAuth, authenticate
from .face import WebFace, build_web

__all__ = ["SESSION_COOKIE", "WebAuth", "WebFace", "authenticate", "build_web"]
