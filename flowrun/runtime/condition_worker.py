"""Evaluates one `when:` condition in a separate process, so the engine can bound it by time
and memory and kill it. Run by path (`python -I condition_worker.py`): it loads only jinja2
and the bounded sandbox, not the flowrun package. Reads `{"expr", "context"}` as JSON on stdin;
writes `{"value": bool}` or `{"error": "..."}` as JSON on stdout."""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
from pathlib import Path
from typing import Any


def _bounded() -> Any:
    path = Path(__file__).resolve().parent.parent / "flows" / "bounded_jinja.py"
    spec = importlib.util.spec_from_file_location("flowrun_bounded_jinja", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    cpu_s, memory = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    request = json.load(sys.stdin)
    bounded = _bounded()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))  # after the imports are mapped
    env = bounded.BoundedSandbox(autoescape=False)
    try:
        value = bool(env.compile_expression(request["expr"], undefined_to_none=True)(**request["context"]))
        answer: dict[str, Any] = {"value": value}
    except Exception as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
