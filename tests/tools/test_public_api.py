"""`flowrun.tools`' public names, and that importing it (or the config snippets) stays cheap."""

from __future__ import annotations

import subprocess
import sys

import flowrun.tools

PUBLIC = {"build_mcp_server", "FlowrunMCP", "EngineSlot", "Face", "TokenTable", "BearerTokens",
          "create_operator_token", "RunView", "RunList", "FlowList", "FlowView", "StepView", "CheckpointView",
          "TranscriptLine", "WaitResult", "DecisionForm"}


def test_public_names() -> None:
    assert set(flowrun.tools.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(flowrun.tools, name) is not None


def test_importing_the_package_and_the_snippets_loads_no_mcp() -> None:
    code = ("import sys, flowrun.tools, flowrun.tools.config_snippets; "
            "print(','.join(m for m in ('mcp', 'pydantic', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
