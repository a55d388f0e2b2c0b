"""Real servers on 127.0.0.1 for delivery tests: an HTTP server whose handler the test writes,
and an SMTP server (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    body: dict | str
    content_type: str = "application/json"


@dataclass
class HttpServer:
    """Records every request; ``answer(request) -> Answer`` decides the reply (checks go there too:
    a failed check is stored in ``problems`` and answered with HTTP 400)."""

    answer: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def http_server(answer: Callable[[Request], Answer]) -> Iterator[HttpServer]:
    state = HttpServer(answer)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length))
            state.requests.append(request)
            try:
                reply = state.answer(request)
            except AssertionError as exc:
                state.problems.append(str(exc))
                reply = Answer(400, {"error": f"test check failed: {exc}"})
            body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body, ensure_ascii=False)
            data = body.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Inbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.envelopes.append(envelope)
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()
