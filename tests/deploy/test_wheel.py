"""The built wheel runs anywhere: a fresh venv, any working directory, no repository beside it.

How the fresh venv gets the dependencies, and why: CI has no wheels of them on disk, and
downloading and unpacking pyarrow, pandas & co. would take longer than the rest of the suite. So
the venv gets exactly the runtime dependency closure that the wheel's own metadata declares,
linked from this test run's venv (dev tools such as pytest and ruff, and the editable checkout,
are left out). What this proves: the wheel carries everything of its own (code, templates, static
files, migrations, instruments, COMPILED catalogs) and declares every dependency it imports.
What it leaves to pip: resolving those dependencies from the index.
"""

from __future__ import annotations

import email.parser
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy.stack import free_port

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(tmp: Path) -> Path:
    """Build from the tracked sources only (no compiled catalogs, no caches), as a fresh clone would."""
    src = tmp / "src"
    shutil.copytree(ROOT / "qol_app", src / "qol_app", ignore=shutil.ignore_patterns("*.mo", "__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    assert not list(src.rglob("*.mo"))
    dist = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            dist,
            src,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("qol_app-*.whl")
    return wheel


def _requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in meta.get_all("Requires-Dist") or []]


def _closure(requirements: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions the requirements need (no extras), transitively."""
    todo, seen = list(requirements), {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(req.name)
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo.extend(Requirement(r) for r in dist.requires or [])
    return list(seen.values())


def _link_dependencies(dists: list[metadata.Distribution], target: Path) -> None:
    """Link each distribution's top-level files and folders (and its .dist-info) into ``target``."""
    target.mkdir()
    for dist in dists:
        base = Path(dist.locate_file(""))
        for file in dist.files or []:
            top = Path(file).parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = target / top
            if not link.exists():
                link.symlink_to(base / top)


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "qol_app/translations/zh_Hans/LC_MESSAGES/messages.mo",
        "qol_app/translations/en/LC_MESSAGES/messages.mo",
        "qol_app/questionnaires/eortc_qlq_c30.yaml",
        "qol_app/questionnaires/schedules/conquer.yaml",
        "qol_app/questionnaires/alerts/conquer.yaml",
        "qol_app/questionnaires/value_sets/eq5d5l_cn_2017.yaml",
        "qol_app/migrations/env.py",
        "qol_app/migrations/script.py.mako",
        "qol_app/templates/base.html",
        "qol_app/static/favicon.ico",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert any(re.match(r"qol_app/migrations/versions/.+\.py$", n) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", venv], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    _link_dependencies(_closure(_requirements(wheel)), tmp_path / "deps")
    (site / "qol_deps.pth").write_text(str(tmp_path / "deps") + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin/python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        check=True,
        capture_output=True,
    )

    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QOL_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "QOL_DATABASE_URL": f"sqlite:///{elsewhere / 'qol.sqlite'}",
        "QOL_SECRET_KEY": "wheel-test-" + "x" * 32,
        "QOL_SESSION_COOKIE_SECURE": "0",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }

    def run(*argv):
        return subprocess.run(argv, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)

    where = run(venv / "bin/python", "-c", "import qol_app, flask; print(qol_app.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site)), where.stdout  # the wheel, not the checkout
    upgraded = run(venv / "bin/qol", "db", "upgrade")
    assert upgraded.returncode == 0 and "is at head" in upgraded.stdout, upgraded.stderr[-2000:]
    checked = run(venv / "bin/qol", "check")
    assert checked.returncode == 0 and "QUESTIONNAIRE_DIR: loads" in checked.stdout, checked.stdout

    port = free_port()
    server = subprocess.Popen(
        [venv / "bin/qol", "run", "--port", str(port)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = status = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/staff/login", headers={"Accept-Language": "zh-CN"})
                response = conn.getresponse()
                status, body = response.status, response.read().decode()
                conn.close()
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200, (status, server.poll())
        # Chinese from the compiled catalog: without the .mo files this page would be in English.
        assert "工作人员登录" in body, body[:500]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/static/favicon.svg")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert b"Traceback" not in output, output.decode(errors="replace")[-2000:]
