"""The public surface of each layer, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

SURFACES = {
    "flowrun.flows": {"Run", "FlowTemplate", "Skill", "RunStatus", "StepStatus", "Outcome", "FlowrunError",
                      "TranscriptEntry", "Event", "Decision", "DecisionKind", "StartRefused", "SandboxProfile"},
    "flowrun.runtime": {"Engine", "EngineConfig", "EngineDeps", "Actor", "LOCAL_OPERATOR", "Catalog", "Tool",
                        "ToolContext", "ToolOutput", "builtin_tools"},
    "flowrun.llm": {"ModelProvider", "ModelRequest", "ScriptedProvider", "provider_for", "TurnComplete"},
    "flowrun.chat": {"ChatService", "Chat", "ChatRole", "parse_command"},
}


@pytest.mark.parametrize("module", sorted(SURFACES))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    exported = set(mod.__all__)
    assert SURFACES[module] <= exported
    for name in exported:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which it does not define"


def test_cli_help_imports_nothing_heavy() -> None:
    code = ("import sys, flowrun.cli.parser; flowrun.cli.parser.build_parser(); "
            "heavy = [m for m in ('anthropic', 'openai', 'e2b', 'mcp', 'pydantic', 'aiosqlite') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_model_sdks_are_not_imported_by_the_engine() -> None:
    code = ("import sys, flowrun.config, flowrun.runtime; "
            "print(','.join(m for m in ('anthropic', 'openai', 'e2b', 'mcp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
