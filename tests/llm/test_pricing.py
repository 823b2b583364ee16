"""Pricing: list prices per model, lookup rules, overrides, and the arithmetic."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flowrun.flows.errors import TemplateError
from flowrun.flows.run import Usage
from flowrun.llm.pricing import DEFAULT_PRICES, Price, PriceTable, cost, load_price_file

MILLION = Usage(
    turns=1,
    input_tokens=1_000_000,
    output_tokens=1_000_000,
    cache_write_tokens=1_000_000,
    cache_read_tokens=1_000_000,
)


@pytest.mark.parametrize(
    ("model", "dollars"),
    [
        # input + output + cache write + cache read, one million tokens each
        ("claude-opus-4-8", 5 + 25 + 6.25 + 0.50),
        ("claude-opus-4-1", 15 + 75 + 18.75 + 1.50),
        ("claude-sonnet-4-6", 3 + 15 + 3.75 + 0.30),
        ("claude-sonnet-4-5-20250929", 3 + 15 + 3.75 + 0.30),
        ("claude-haiku-4-5-20251001", 1 + 5 + 1.25 + 0.10),
        ("anthropic:claude-opus-5", 5 + 25 + 6.25 + 0.50),
        ("claude-sonnet-5-5[1m]", 2 + 10 + 2.50 + 0.10),
        ("claude-opus-5-5", 4 + 20 + 5 + 0.20),
    ],
)
def test_list_prices(model: str, dollars: float) -> None:
    assert cost(model, MILLION) == pytest.approx(dollars)


def test_a_typical_turn() -> None:
    usage = Usage(
        turns=1,
        input_tokens=1200,
        output_tokens=250,
        cache_write_tokens=3000,
        cache_read_tokens=9000,
    )
    expected = (1200 * 3 + 250 * 15 + 3000 * 3.75 + 9000 * 0.30) / 1_000_000
    assert cost("claude-sonnet-4-6", usage) == round(expected, 6)


def test_longest_prefix_wins_and_needs_a_boundary() -> None:
    table = PriceTable()
    assert table.lookup("claude-opus-4-5-20251101") is DEFAULT_PRICES["claude-opus-4-5"]
    assert table.lookup("claude-opus-4-20250514") is DEFAULT_PRICES["claude-opus-4"]
    assert table.lookup("claude-opus-45") is None  # not a dated variant of claude-opus-4


def test_long_prompt_tier_prices_the_whole_turn() -> None:
    short = Usage(turns=1, input_tokens=100_000, output_tokens=1_000)
    long = Usage(turns=1, input_tokens=60_000, cache_read_tokens=50_000, output_tokens=1_000)
    assert cost("claude-haiku-5-5", short) == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 1e6)
    assert cost("claude-haiku-5-5", long) == pytest.approx(
        (60_000 * 0.50 + 50_000 * 0.05 + 1_000 * 2.50) / 1e6
    )


def test_local_models_are_free_and_unknown_claude_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="flowrun.llm"):
        assert table.cost("ollama:llama3.1", MILLION) == 0.0
        assert table.cost("claude-unreleased-9", MILLION) == 0.0
        assert table.cost("claude-unreleased-9", MILLION) == 0.0
    assert [r.getMessage() for r in caplog.records].count(
        "no price for model claude-unreleased-9: its cost is recorded as 0; add it to the price file"
    ) == 1


def test_cache_rates_default_from_input() -> None:
    price = Price.model_validate({"input": 2, "output": 8})
    assert (price.cache_write, price.cache_read) == (2.5, 0.2)


def test_overrides_from_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text(
        "models:\n  ollama:llama3.1: {input: 0.1, output: 0.2}\n  claude-sonnet-4-6: {input: 1, output: 2}\n"
    )
    table = load_price_file(yaml_file)
    assert table.cost(
        "ollama:llama3.1", Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    ) == pytest.approx(0.3)
    assert table.cost("claude-sonnet-4-6", Usage(input_tokens=1_000_000)) == pytest.approx(1.0)
    assert table.cost("claude-opus-4-8", Usage(input_tokens=1_000_000)) == pytest.approx(
        5.0
    )  # defaults kept

    json_file = tmp_path / "prices.json"
    json_file.write_text(json.dumps({"openai:gpt-5": {"input": 1.25, "output": 10}}))
    assert load_price_file(json_file).cost(
        "openai:gpt-5", Usage(output_tokens=1_000_000)
    ) == pytest.approx(10)


def test_malformed_price_file_names_file_and_model(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text("claude-x: {input: -1, output: 2}\n")
    with pytest.raises(TemplateError, match=r"prices.yaml: model 'claude-x'"):
        load_price_file(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(TemplateError, match="expected a mapping"):
        load_price_file(bad)
