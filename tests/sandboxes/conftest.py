"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A root the sandbox uid can reach by its absolute path (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="flowrun-test-"))
    root.chmod(0o711)
    yield root / "sandboxes"
    shutil.rmtree(root)
