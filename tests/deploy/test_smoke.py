"""deploy/smoke.py: nginx in front of two gunicorn nodes and the scheduler on PostgreSQL, walked
through by a patient's visit and a nurse's sign-in."""

from __future__ import annotations

import pytest

from deploy import smoke


@pytest.mark.slow
def test_the_deployment_smoke_passes(needs_nginx, tmp_path):
    lines: list[str] = []
    failures = smoke.run(tmp_path, say=lines.append)
    assert failures == [], "\n".join(lines)
    assert sum(line.startswith("ok") for line in lines) >= 15, "\n".join(lines)
