"""Regenerate docs/ws-protocol.schema.json from the `/ws` message models (a test keeps it in sync)."""

from __future__ import annotations

from pathlib import Path

from flowrun.web.protocol import schema_text

TARGET = Path(__file__).parents[1] / "docs" / "ws-protocol.schema.json"

if __name__ == "__main__":
    TARGET.write_text(schema_text())
    print(f"wrote {TARGET}")
