"""Model strings to providers.

A step, a skill or a sandbox profile names its model as a string; this module decides which
provider serves it. Accepted forms:

| string | provider |
| --- | --- |
| `scripted` | the offline `ScriptedProvider` (scripts from `FLOWRUN_SCRIPTS`, a directory) |
| `claude-sonnet-4-6`, `anthropic:claude-...` | Anthropic (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`) |
| `openai:gpt-5` | OpenAI (`OPENAI_API_KEY`, `OPENAI_BASE_URL`) |
| `ollama:llama3.1` | Ollama's OpenAI-compatible API (`OLLAMA_BASE_URL`, default `http://127.0.0.1:11434/v1`) |
| `openai-compat:NAME@http://host:port/v1` | any OpenAI-compatible server (`OPENAI_COMPAT_API_KEY`) |

An empty string means the default, `FLOWRUN_MODEL` (itself defaulting to `scripted`, so nothing
needs a key out of the box). Other settings: `FLOWRUN_THINKING` (`adaptive`, `off`, or
`budget:N`), `FLOWRUN_PRICES` (a price file, see `pricing`), `FLOWRUN_MODEL_MAX_RETRIES`.

Providers are cached per (kind, base URL, key): they hold connection pools, and one provider
serves every model of its kind (the request names the model), so a run with many steps and
sub-agents shares one pool.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..flows.errors import UsageError
from .base import ModelProvider
from .pricing import PriceTable, load_price_file

ProviderKind = Literal["scripted", "anthropic", "openai", "ollama", "openai-compat"]

DEFAULT_MODEL = "scripted"
OLLAMA_BASE_URL = "http://127.0.0.1:11434/v1"
OPENAI_BASE_URL = "https://api.openai.com/v1"

_FORMS = (
    "scripted, claude-<model>, anthropic:<model>, openai:<model>, ollama:<model>, "
    "openai-compat:<model>@<base url>"
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed model string: which provider, the model name it sends, and where."""

    kind: ProviderKind
    name: str
    base_url: str | None = None


def parse_model(model: str) -> ModelRef:
    """Parse a model string (see the module docstring).

    Raises:
        UsageError: the string has no recognised form; the message lists the forms.
    """
    spec = model.strip()
    if spec == "scripted":
        return ModelRef("scripted", "scripted")
    kind, sep, rest = spec.partition(":")
    if not sep:
        if spec.startswith("claude"):
            return ModelRef("anthropic", spec)
        raise UsageError(
            f"unknown model {model!r}: write it as one of {_FORMS}", code="unknown_model"
        )
    if not rest:
        raise UsageError(f"model {model!r} names no model after {kind!r}:", code="unknown_model")
    if kind == "anthropic":
        return ModelRef("anthropic", rest)
    if kind == "openai":
        return ModelRef("openai", rest)
    if kind == "ollama":
        return ModelRef("ollama", rest)
    if kind == "openai-compat":
        name, at, url = rest.partition("@")
        if not at or not name or not url.startswith(("http://", "https://")):
            raise UsageError(
                f"model {model!r}: write openai-compat:<model>@http://host:port/v1",
                code="unknown_model",
            )
        return ModelRef("openai-compat", name, url.rstrip("/"))
    raise UsageError(
        f"unknown model provider {kind!r} in {model!r}: write one of {_FORMS}", code="unknown_model"
    )


def default_model(settings: Mapping[str, str] | None = None) -> str:
    env = os.environ if settings is None else settings
    return env.get("FLOWRUN_MODEL", "").strip() or DEFAULT_MODEL


_cache: dict[tuple[str, str, str], ModelProvider] = {}


def clear_provider_cache() -> None:
    """Forget cached providers (tests; after the operator changes a key)."""
    _cache.clear()


def _key_id(key: str | None) -> str:
    # the cache key must tell keys apart without keeping another copy of the secret around
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else ""


def _prices(env: Mapping[str, str]) -> PriceTable | None:
    path = env.get("FLOWRUN_PRICES", "").strip()
    return load_price_file(Path(path)) if path else None


def _max_retries(env: Mapping[str, str]) -> int:
    raw = env.get("FLOWRUN_MODEL_MAX_RETRIES", "").strip()
    if not raw:
        return 3
    if not raw.isdigit():
        raise UsageError(f"FLOWRUN_MODEL_MAX_RETRIES must be a whole number, not {raw!r}")
    return int(raw)


def provider_for(model: str, *, settings: Mapping[str, str] | None = None) -> ModelProvider:
    """The provider that serves `model` (empty: the default model), built once and cached.

    `settings` defaults to the process environment. Provider modules are imported here, on
    first use, because importing the SDKs costs one to two seconds.

    Raises:
        UsageError: an unknown model string or a malformed setting.
        TemplateError: the price file named by `FLOWRUN_PRICES` is malformed.
    """
    env = os.environ if settings is None else settings
    ref = parse_model(model or default_model(env))
    if ref.kind == "scripted":
        scripts = env.get("FLOWRUN_SCRIPTS", "").strip()
        cache_key = ("scripted", scripts, "")
        if cache_key not in _cache:
            from .scripted import ScriptedProvider

            _cache[cache_key] = (
                ScriptedProvider.from_directory(Path(scripts)) if scripts else ScriptedProvider({})
            )
        return _cache[cache_key]

    if ref.kind == "anthropic":
        key = env.get("ANTHROPIC_API_KEY") or None
        base_url = env.get("ANTHROPIC_BASE_URL") or None
        cache_key = ("anthropic", base_url or "", _key_id(key))
        if cache_key not in _cache:
            from .anthropic import AnthropicProvider, ThinkingConfig

            _cache[cache_key] = AnthropicProvider(
                api_key=key,
                base_url=base_url,
                thinking=ThinkingConfig.parse(env.get("FLOWRUN_THINKING", "adaptive")),
                max_retries=_max_retries(env),
                prices=_prices(env),
            )
        return _cache[cache_key]

    if ref.kind == "openai":
        base_url = env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
        key = env.get("OPENAI_API_KEY") or None
    elif ref.kind == "ollama":
        base_url = env.get("OLLAMA_BASE_URL") or OLLAMA_BASE_URL
        key = "ollama"  # Ollama ignores the key, but the SDK insists on one
    else:
        base_url = ref.base_url or ""
        key = env.get("OPENAI_COMPAT_API_KEY") or "none"
    cache_key = (ref.kind, base_url, _key_id(key))
    if cache_key not in _cache:
        from .openai_compat import OpenAICompatProvider

        _cache[cache_key] = OpenAICompatProvider(
            base_url=base_url,
            api_key=key,
            kind=ref.kind,
            max_retries=_max_retries(env),
            prices=_prices(env),
        )
    return _cache[cache_key]
