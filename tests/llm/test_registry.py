"""Model strings to providers: parsing, defaults, settings and caching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowrun.flows.errors import UsageError
from flowrun.llm.anthropic import AnthropicProvider
from flowrun.llm.openai_compat import OpenAICompatProvider
from flowrun.llm.registry import (
    OLLAMA_BASE_URL,
    ModelRef,
    clear_provider_cache,
    default_model,
    parse_model,
    provider_for,
)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    clear_provider_cache()
    yield
    clear_provider_cache()


@pytest.mark.parametrize(
    ("spec", "ref"),
    [
        ("scripted", ModelRef("scripted", "scripted")),
        ("claude-sonnet-4-6", ModelRef("anthropic", "claude-sonnet-4-6")),
        ("anthropic:claude-opus-4-8", ModelRef("anthropic", "claude-opus-4-8")),
        ("openai:gpt-5", ModelRef("openai", "gpt-5")),
        ("ollama:llama3.1:8b", ModelRef("ollama", "llama3.1:8b")),
        (
            "openai-compat:qwen3@http://10.0.0.2:8000/v1/",
            ModelRef("openai-compat", "qwen3", "http://10.0.0.2:8000/v1"),
        ),
    ],
)
def test_parse_model(spec: str, ref: ModelRef) -> None:
    assert parse_model(spec) == ref


@pytest.mark.parametrize(
    "spec",
    ["gpt-5", "mistral:large", "openai-compat:qwen3", "openai-compat:@http://x/v1", "ollama:"],
)
def test_parse_model_refuses_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_model(spec)
    assert caught.value.code == "unknown_model"


def test_default_model() -> None:
    assert default_model({}) == "scripted"
    assert default_model({"FLOWRUN_MODEL": " claude-sonnet-4-6 "}) == "claude-sonnet-4-6"


def test_anthropic_from_settings_and_cached_per_key() -> None:
    settings = {"ANTHROPIC_API_KEY": "sk-ant-one", "FLOWRUN_THINKING": "budget:2048"}
    first = provider_for("claude-sonnet-4-6", settings=settings)
    assert isinstance(first, AnthropicProvider)
    assert first.thinking.mode == "budgeted" and first.thinking.budget_tokens == 2048
    assert provider_for("anthropic:claude-opus-4-8", settings=settings) is first  # one per key
    other = provider_for("claude-sonnet-4-6", settings={"ANTHROPIC_API_KEY": "sk-ant-two"})
    assert other is not first


def test_empty_model_uses_flowrun_model() -> None:
    provider = provider_for("", settings={"FLOWRUN_MODEL": "ollama:llama3.1"})
    assert isinstance(provider, OpenAICompatProvider)
    assert provider.base_url == OLLAMA_BASE_URL and provider.kind == "ollama"


def test_openai_compat_servers_are_cached_per_base_url() -> None:
    a = provider_for("openai-compat:qwen3@http://10.0.0.2:8000/v1", settings={})
    b = provider_for("openai-compat:llama@http://10.0.0.2:8000/v1", settings={})
    c = provider_for("openai-compat:qwen3@http://10.0.0.3:8000/v1", settings={})
    assert a is b and a is not c
    assert isinstance(c, OpenAICompatProvider) and c.base_url == "http://10.0.0.3:8000/v1"


def test_openai_base_url_and_price_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("openai:gpt-5: {input: 1.25, output: 10}\n")
    provider = provider_for(
        "openai:gpt-5",
        settings={
            "OPENAI_API_KEY": "sk-x",
            "OPENAI_BASE_URL": "http://proxy/v1",
            "FLOWRUN_PRICES": str(prices),
        },
    )
    assert isinstance(provider, OpenAICompatProvider)
    assert provider.base_url == "http://proxy/v1"
    assert provider.prices.lookup("openai:gpt-5") is not None


def test_scripted_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("skill: plan\nturns:\n  - text: done\n")
    provider = provider_for("scripted", settings={"FLOWRUN_SCRIPTS": str(tmp_path)})
    assert provider.name == "scripted"


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="FLOWRUN_THINKING"):
        provider_for("claude-sonnet-4-6", settings={"FLOWRUN_THINKING": "lots"})
    with pytest.raises(UsageError, match="FLOWRUN_MODEL_MAX_RETRIES"):
        provider_for("ollama:x", settings={"FLOWRUN_MODEL_MAX_RETRIES": "many"})
