"""The project's lint rules (pyproject [tool.ruff]) hold for the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        found = shutil.which("ruff")
        if found is None:
            pytest.skip("ruff is not installed (it comes with the test extra: pip install -e '.[test]')")
        ruff = Path(found)
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "qol_app", "tests", "bench", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
