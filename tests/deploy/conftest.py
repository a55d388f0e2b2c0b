"""Deployment tests start real processes (gunicorn, nginx, the scheduler) on loopback ports.

They need PostgreSQL (one truth for several nodes) and, for the proxy, Debian's nginx. Where one
is missing they are skipped with the reason, except in CI (QOL_REQUIRE_POSTGRES=1 /
QOL_REQUIRE_NGINX=1), where a missing one fails the run.
"""

from __future__ import annotations

import os

import pytest

from deploy.stack import nginx_missing, postgres_missing


@pytest.fixture(scope="session")
def needs_postgres() -> None:
    problem = postgres_missing()
    if problem:
        if os.environ.get("QOL_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def needs_nginx(needs_postgres) -> None:
    problem = nginx_missing()
    if problem:
        if os.environ.get("QOL_REQUIRE_NGINX") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
