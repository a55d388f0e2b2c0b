"""The export's memory settings: Arrow's allocator chosen when the app is imported."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = "import qol_app, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


def _backend(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_app_gives_arrow_the_system_allocator_unless_the_environment_chooses():
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _backend(env) == "system"
    assert _backend(env | {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
