"""What every tool handler shares: the engine (once it is up), who is asking, and the page URL.

The HTTP app is built before its lifespan opens the engine, so handlers reach the engine through
an `EngineSlot` that the lifespan fills and empties; a call that arrives in between is refused
as `warming_up` (the document's start refusal), never answered with a half-built engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..flows.errors import StartRefused
from ..flows.run import Run
from ..runtime.access import Actor
from ..runtime.engine import Engine
from .models import RunView, TranscriptLine
from .views import run_view

WARMUP_RETRY_S = 2.0


@dataclass
class EngineSlot:
    engine: Engine | None = None

    def get(self) -> Engine:
        """Raises StartRefused(`warming_up`, retryable) while the engine is not (or no longer) up."""
        if self.engine is None or not self.engine.ready:
            raise StartRefused(
                f"The orchestrator is still coming up; retry in {WARMUP_RETRY_S:.0f} seconds.",
                code="warming_up", retryable=True, retry_after=WARMUP_RETRY_S,
            )
        return self.engine


@dataclass
class Face:
    """The MCP face's view of the world. `actor_for` is the transport's answer to "who is
    asking": the local operator on stdio, the bearer token's actor on HTTP, the person of the
    chat for a chat's in-memory session."""

    slot: EngineSlot
    actor_for: Callable[[], Actor]
    public_url: str | None  # where the run pages are served; None: no page link to hand out
    chat_id: str | None = None  # set when the server is a chat's own: its runs launch as that chat

    def engine(self) -> Engine:
        return self.slot.get()

    def actor(self) -> Actor:
        return self.actor_for()

    def view(self, run: Run, transcript: list[TranscriptLine] | None = None) -> RunView:
        return run_view(run, self.public_url, transcript, self.actor())
