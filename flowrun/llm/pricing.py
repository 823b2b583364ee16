"""What a model turn costs, in US dollars.

Prices are list prices per million tokens, per model id. The defaults are Anthropic's published
Claude prices (checked November 2026); models served through an OpenAI-compatible endpoint
(Ollama, vLLM, llama.cpp, OpenAI itself) cost nothing unless a price file says otherwise, because
a local model has no list price and a wrong hosted one is worse than an honest zero.

A model id is matched exactly first, then by the longest table key it starts with, followed by a
`-`, `[` or `@` (so the dated `claude-haiku-4-5-20251001` and the `claude-sonnet-5-5[1m]` variant
find their family's row). A provider prefix (`anthropic:`) is ignored for Claude ids; every other
provider's ids are looked up with their prefix (`ollama:llama3.1`), so one file can price both.

Override file (YAML or JSON), either a top-level mapping or one under `models:`::

    models:
      claude-sonnet-4-6: {input: 3, output: 15, cache_write: 3.75, cache_read: 0.30}
      openai:gpt-5: {input: 1.25, output: 10}

`cache_write` defaults to 1.25 x input (the 5-minute write) and `cache_read` to 0.1 x input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..flows.errors import TemplateError
from ..flows.run import Usage

logger = logging.getLogger("flowrun.llm")

_PER_TOKEN = 1_000_000


class Price(BaseModel):
    """USD per million tokens. `long_prompt` rates replace these for a whole turn whose prompt
    (input + cache write + cache read tokens) exceeds `long_prompt_threshold`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    long_prompt: Price | None = None
    long_prompt_threshold: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _derive_cache_rates(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("input"), int | float):
            data = dict(data)
            data.setdefault("cache_write", round(data["input"] * 1.25, 6))
            data.setdefault("cache_read", round(data["input"] * 0.1, 6))
        return data

    @model_validator(mode="after")
    def _check_long_prompt(self) -> Price:
        if self.long_prompt is not None and self.long_prompt_threshold == 0:
            raise ValueError("long_prompt needs a long_prompt_threshold (prompt tokens)")
        return self

    def cost(self, usage: Usage) -> float:
        rates = self
        prompt = usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens
        if self.long_prompt is not None and prompt > self.long_prompt_threshold:
            rates = self.long_prompt
        total = (
            usage.input_tokens * rates.input
            + usage.output_tokens * rates.output
            + usage.cache_write_tokens * rates.cache_write
            + usage.cache_read_tokens * rates.cache_read
        )
        return round(total / _PER_TOKEN, 6)


def _p(inp: float, out: float, write: float, read: float) -> Price:
    return Price(input=inp, output=out, cache_write=write, cache_read=read)


_OPUS_45 = _p(5, 25, 6.25, 0.50)
_OPUS_4 = _p(15, 75, 18.75, 1.50)
_SONNET_4 = _p(3, 15, 3.75, 0.30)
_FABLE = _p(10, 50, 12.50, 1.00)
_FABLE_51 = _p(10, 50, 12.50, 0.25)

DEFAULT_PRICES: dict[str, Price] = {
    "claude-fable-5-2": _FABLE_51,
    "claude-fable-5-1": _FABLE_51,
    "claude-fable-5": _FABLE,
    "claude-mythos-5-2": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-mythos-5": _FABLE,
    "claude-opus-5-5": _p(4, 20, 5.00, 0.20),
    "claude-opus-5": _OPUS_45,
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-sonnet-5-5": _p(2, 10, 2.50, 0.10),
    "claude-sonnet-5": _p(2, 10, 2.50, 0.20),
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-haiku-5-5": Price(
        input=0.10,
        output=0.50,
        cache_write=0.125,
        cache_read=0.01,
        long_prompt=_p(0.50, 2.50, 0.625, 0.05),
        long_prompt_threshold=100_000,
    ),
    "claude-haiku-4-5": _p(1, 5, 1.25, 0.10),
    "claude-3-5-haiku": _p(0.80, 4, 1.00, 0.08),
}


# What each model accepts as `thinking`, by the same ids and matching rule as the prices:
# "adaptive" (`{"type": "adaptive"}`), "budgeted" (`{"type": "enabled", "budget_tokens": N}`).
# An empty set: the model has no extended thinking, so no `thinking` parameter is sent at all.
_ADAPTIVE = frozenset({"adaptive"})
_BUDGETED = frozenset({"budgeted"})
_BOTH = frozenset({"adaptive", "budgeted"})
THINKING_MODES: dict[str, frozenset[str]] = {
    **{model: _ADAPTIVE for model in DEFAULT_PRICES if model.startswith(("claude-fable", "claude-mythos"))},
    "claude-opus-5-5": _ADAPTIVE,
    "claude-opus-5": _ADAPTIVE,
    "claude-opus-4-8": _ADAPTIVE,
    "claude-opus-4-7": _ADAPTIVE,
    "claude-opus-4-6": _BOTH,
    "claude-opus-4-5": _BUDGETED,
    "claude-opus-4-1": _BUDGETED,
    "claude-opus-4": _BUDGETED,
    "claude-sonnet-5-5": _ADAPTIVE,
    "claude-sonnet-5": _ADAPTIVE,
    "claude-sonnet-4-6": _BOTH,
    "claude-sonnet-4-5": _BUDGETED,
    "claude-sonnet-4": _BUDGETED,
    "claude-haiku-5-5": _ADAPTIVE,
    "claude-haiku-4-5": _BUDGETED,
    "claude-3-5-haiku": frozenset(),
}


def _match(model: str, keys: Iterable[str]) -> str | None:
    """The catalogue key for `model`: itself, else the longest key it starts with followed by
    `-`, `[` or `@`."""
    key = model.removeprefix("anthropic:")
    best: str | None = None
    for candidate in keys:
        if candidate == key:
            return candidate
        if (
            key.startswith(candidate)
            and key[len(candidate)] in "-[@"
            and (best is None or len(candidate) > len(best))
        ):
            best = candidate
    return best


def thinking_modes(model: str) -> frozenset[str] | None:
    """The `thinking` modes `model` accepts, or `None` for a model the catalogue does not know
    (then the configured mode is sent as it is)."""
    key = _match(model, THINKING_MODES)
    return THINKING_MODES[key] if key is not None else None


class PriceTable:
    """Immutable model -> `Price` lookup. Unknown Claude models cost 0 and are logged once, so a
    run never fails over accounting but the gap is visible."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    @property
    def prices(self) -> Mapping[str, Price]:
        return dict(self._prices)

    def with_overrides(self, overrides: Mapping[str, Price | Mapping[str, Any]]) -> PriceTable:
        """A new table: these entries added to, or replacing, this table's."""
        merged = dict(self._prices)
        for model, price in overrides.items():
            merged[model] = price if isinstance(price, Price) else Price.model_validate(price)
        return PriceTable(merged)

    def lookup(self, model: str) -> Price | None:
        key = model.removeprefix("anthropic:")
        if key in self._prices:
            return self._prices[key]
        best = _match(key, self._prices)
        return self._prices[best] if best is not None else None

    def cost(self, model: str, usage: Usage) -> float:
        price = self.lookup(model)
        if price is None:
            if model.removeprefix("anthropic:").startswith("claude") and model not in self._warned:
                self._warned.add(model)
                logger.warning(
                    "no price for model %s: its cost is recorded as 0; add it to the price file",
                    model,
                )
            return 0.0
        return price.cost(usage)


def load_price_file(path: Path, *, base: PriceTable | None = None) -> PriceTable:
    """Read overrides from a YAML or JSON file on top of `base` (the defaults).

    Raises:
        TemplateError: the file is unreadable or an entry is malformed (names the file and model).
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: cannot read the price file: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("models"), dict):
        raw = raw["models"]
    if not isinstance(raw, dict):
        raise TemplateError(f"{path}: expected a mapping of model id to prices")
    overrides: dict[str, Price] = {}
    for model, entry in raw.items():
        try:
            overrides[str(model)] = Price.model_validate(entry)
        except ValidationError as exc:
            raise TemplateError(f"{path}: model {model!r}: {exc.errors()[0]['msg']}") from exc
    return (base or PriceTable()).with_overrides(overrides)


_default_table = PriceTable()


def default_table() -> PriceTable:
    return _default_table


def cost(model: str, usage: Usage, table: PriceTable | None = None) -> float:
    """Dollars for `usage` on `model`, from `table` (the built-in defaults when omitted)."""
    return (table or _default_table).cost(model, usage)
