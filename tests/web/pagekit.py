"""A home for page tests: the bundled demo plus a "kinds" Flow whose transcript holds every entry
kind (text, thinking, tool cards with a diff, a new file, a URL and a checklist, streamed shell
output, sub-agents, an error, setup and info notes) and hostile content in all of them."""

from __future__ import annotations

import shutil
from pathlib import Path

from flowrun.config import EXAMPLES_DIR

HOSTILE_MARKDOWN = """\
Here is **markdown** with a [safe link](https://example.com/docs) and `code`.

<script>window.__pwned = 'script'</script>

<img src="http://evil.example/pixel.png" onerror="window.__pwned = 'img'">

[click me](javascript:window.__pwned='link')

![tracker](http://evil.example/tracker.png)

<a href="javascript:window.__pwned='raw-a'" onclick="window.__pwned='onclick'">raw anchor</a>
"""

KINDS_FLOW = """\
id: kinds
name: Every Kind
description: A transcript with every entry kind, and hostile content in it.
defaults: {sandbox_profile: kinds-local}
steps:
  - {name: Everything, skill: kinds, subagents: 2}
  - {name: Break, skill: broken}
"""

KINDS_SCRIPT = {
    "skill": "kinds",
    "turns": [
        {
            "thinking": "Thinking about <b>where</b> this goes. <script>window.__pwned='thinking'</script>",
            "text": HOSTILE_MARKDOWN,
            "tools": [
                {"name": "todo_write", "input": {"todos": [
                    {"content": "Write the notes", "status": "completed"},
                    {"content": "Edit <em>them</em>", "status": "in_progress"},
                    {"content": "Fetch the docs", "status": "pending"}]}},
                {"name": "write_file", "input": {"path": "notes.md",
                                                 "content": "line one\n<script>window.__pwned='file'</script>\n"}},
                {"name": "edit_file", "input": {"path": "notes.md", "old_string": "line one", "new_string": "line 1"}},
                {"name": "shell", "input": {"command": "echo '<img src=x onerror=window.__pwned=1>' && echo streamed-done"}},
                {"name": "web_fetch", "input": {"url": "http://127.0.0.1:9/blocked"}, "expect": "error"},
            ],
        },
        {"tools": [{"name": "spawn_subagents", "input": {"tasks": [
            {"id": "alpha", "task": "Count the lines"}, {"id": "beta", "task": "Check the quoting"}]}}]},
        {"tools": [{"name": "submit_result", "input": {
            "outcome": "success", "summary": "Every kind of entry <script>window.__pwned='summary'</script>",
            "output": {"ok": True}}}]},
    ],
}

SUBAGENT_SCRIPT = {
    "skill": "kinds.subagent",
    "turns": [
        {"text": "Sub-agent reporting *in*.", "tools": [{"name": "shell", "input": {"command": "echo sub-agent-output"}}]},
        {"tools": [{"name": "submit_result", "input": {"outcome": "success", "summary": "sub done"}}]},
    ],
}

SKILL = ("slug: {slug}\ninstructions: Do {slug}.\noutput_schema: {{type: object}}\n"
         "allowed_tools: [shell, read_file, write_file, edit_file, list_files, todo_write, web_fetch]\n")


def environment(tmp_path: Path) -> dict[str, str]:
    """FLOWRUN_* for a fresh home with the demo and the kinds Flow."""
    import json

    root, scripts = tmp_path / "catalog", tmp_path / "scripts"
    for folder in ("flows", "skills", "profiles"):
        (root / folder).mkdir(parents=True)
    (root / "profiles" / "kinds-local.yaml").write_text("name: kinds-local\nbackend: local\nnetwork: true\n")
    (root / "flows" / "kinds.yaml").write_text(KINDS_FLOW)
    for slug in ("kinds", "broken"):
        (root / "skills" / f"{slug}.yaml").write_text(SKILL.format(slug=slug))
    shutil.copytree(EXAMPLES_DIR / "scripts", scripts)
    (scripts / "kinds.yaml").write_text(json.dumps(KINDS_SCRIPT))
    (scripts / "kinds.subagent.yaml").write_text(json.dumps(SUBAGENT_SCRIPT))
    return {"FLOWRUN_HOME": str(tmp_path / "home"), "FLOWRUN_PATH": str(root), "FLOWRUN_SCRIPTS": str(scripts)}
