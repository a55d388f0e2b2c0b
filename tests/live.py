"""A real server for tests: gunicorn on loopback, and a small HTTP client with its own cookies.

``serve`` starts gunicorn in its own process group (so a test can kill -9 the master and every
worker at once), waits for ``/healthz`` and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import AUDIT_KEY

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def kill(self) -> None:
        """kill -9 the master and its workers (the whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def serve(
    database_url: str, tmp_path: Path, *, workers: int = 2, threads: int = 4, env: dict | None = None
) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    environment = {
        **os.environ,
        "QOL_DATABASE_URL": database_url,
        "QOL_SECRET_KEY": "live-test-secret",
        "QOL_AUDIT_KEY": AUDIT_KEY,
        "QOL_SESSION_COOKIE_SECURE": "0",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--timeout",
        "60",
        "qol_app:create_app()",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if Client(port).get("/healthz").status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    def csrf(self) -> str:
        found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', self.body)
        assert found, self.body[:500]
        return html.unescape(found.group(1))

    def hidden(self) -> dict[str, str]:
        forms = re.findall(r"<form[^>]*>.*?</form>", self.body, flags=re.DOTALL)
        fields = {}
        for tag in re.findall(r"<input[^>]*>", forms[-1] if forms else ""):
            if 'type="hidden"' in tag:
                name = re.search(r'name="([^"]*)"', tag)
                value = re.search(r'value="([^"]*)"', tag)
                if name and name.group(1) != "next":
                    fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
        return fields


class Client:
    """One browser: its own cookies, one connection per request (a killed server breaks only one)."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port, self.timeout, self.cookies = port, timeout, {}

    def request(self, method: str, path: str, data: dict | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            headers = {"Host": "127.0.0.1"}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = None
            if data is not None:
                body = urllib.parse.urlencode(data)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read().decode("utf-8", "replace")
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, data: dict) -> Reply:
        return self.request("POST", path, data)
