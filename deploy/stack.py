"""qol_app as deployed, on loopback: a scratch PostgreSQL database, gunicorn web nodes, the
scheduler and nginx (Debian's package) with TLS, configured from this folder's files.

Used by ``deploy/smoke.py``, the two-node tests and ``bench/bench_load.py``. Every port is a
free loopback port and every file lives in one work folder, so runs never collide. Also a
command: ``python deploy/stack.py seed N`` (run by :meth:`Stack.seed` in the stack's
environment) creates a site, a nurse and N patients with an open baseline visit.
"""

from __future__ import annotations

import contextlib
import html as html_lib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PG_ADMIN_URL = os.environ.get("QOL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PIN = "246810"
NURSE = ("smoke.nurse", "smoke nurse password 1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_missing() -> str | None:
    """None when nginx can run here, else why not."""
    if not Path(NGINX).exists():
        return f"nginx not installed ({NGINX}); apt-get install nginx"
    if not Path("/etc/nginx/mime.types").exists():
        return "/etc/nginx/mime.types missing (Debian's nginx package installs it)"
    return None


def postgres_missing(admin_url: str = PG_ADMIN_URL) -> str | None:
    from sqlalchemy import create_engine

    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL not reachable at {admin_url}: {type(exc).__name__}"
    return None


class Stack:
    """Start with ``with Stack(workdir) as stack:``; everything stops and the database is dropped on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int = 2,
        workers: int = 2,
        scheduler: bool = True,
        nginx: bool = True,
        bare: bool = False,
        scheduler_interval: int = 30,
        env: dict[str, str] | None = None,
        admin_url: str = PG_ADMIN_URL,
    ) -> None:
        self.workdir = Path(workdir)
        self.n_nodes = nodes
        self.workers = workers
        self.with_scheduler = scheduler
        self.with_nginx = nginx
        self.with_bare = bare
        self.scheduler_interval = scheduler_interval
        self.extra_env = env or {}
        self.admin_url = admin_url
        self.procs: dict[str, subprocess.Popen] = {}
        self.browsers: list[Browser] = []
        self.node_ports = [free_port() for _ in range(nodes)]
        self.bare_port = free_port() if bare else None
        self.https_port = free_port()
        self.http_port = free_port()
        self.db_name = f"qol_stack_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.database_url = ""
        self.env: dict[str, str] = {}

    # ---- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()
        self.database_url = make_url(self.admin_url).set(database=self.db_name).render_as_string(hide_password=False)
        base = {k: v for k, v in os.environ.items() if not k.startswith("QOL_")}
        self.env = base | {
            "QOL_DATABASE_URL": self.database_url,
            "QOL_SECRET_KEY": secrets.token_hex(32),
            "QOL_PUBLIC_BASE_URL": f"https://127.0.0.1:{self.https_port}",
            "QOL_TRUSTED_PROXIES": "1" if self.with_nginx else "0",
            "QOL_LOG_FORMAT": "json",
            "QOL_SESSION_COOKIE_SECURE": "1" if self.with_nginx else "0",
            "QOL_SCHEDULER_INTERVAL_SECONDS": str(self.scheduler_interval),
            "QOL_WEB_WORKERS": str(self.workers),
            "PYTHONUNBUFFERED": "1",
        }
        self.env |= self.extra_env
        self.qol("db", "upgrade")
        for index, port in enumerate(self.node_ports, start=1):
            self._spawn(
                f"node{index}",
                [
                    BIN / "gunicorn",
                    "-c",
                    DEPLOY / "gunicorn.conf.py",
                    "-b",
                    f"127.0.0.1:{port}",
                    "qol_app:create_app()",
                ],
            )
        if self.with_bare:
            self._spawn(
                "bare",
                [BIN / "gunicorn", "-w", str(self.workers), "-b", f"127.0.0.1:{self.bare_port}", "bench.bare_app:app"],
                env=self.env | {"PYTHONPATH": str(ROOT), "BARE_DB": str(self.workdir / "bare.sqlite")},
            )
        for index, port in enumerate(self.node_ports, start=1):
            self._wait(f"node{index}", lambda port=port: _plain_get(port, "/healthz") == 200)
        if self.with_bare:
            self._wait("bare", lambda: _plain_get(self.bare_port, "/bare") == 200)
        if self.with_scheduler:
            self._spawn("scheduler", [BIN / "qol", "scheduler"])
        if self.with_nginx:
            self._write_tls()
            self._write_nginx()
            check = subprocess.run(
                [NGINX, "-t", "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), "-e", "stderr"],
                capture_output=True,
                text=True,
            )
            if check.returncode:
                raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
            self._spawn(
                "nginx",
                [NGINX, "-p", self.workdir, "-c", self.workdir / "nginx.conf", "-e", self.workdir / "logs/error.log"],
            )
            self._wait("nginx", lambda: self.client().get("/healthz").status == 200)

    def stop(self) -> None:
        for browser in self.browsers:
            browser.close()
        self.browsers.clear()
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            handle = getattr(proc, "log_handle", None)
            if handle is not None:
                handle.close()
        self.procs.clear()
        if self.database_url:
            from sqlalchemy import create_engine, text

            admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            admin.dispose()
            self.database_url = ""

    def _spawn(self, name: str, argv: list, env: dict | None = None) -> subprocess.Popen:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(a) for a in argv], env=env or self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        proc.log_handle = log  # type: ignore[attr-defined]
        self.procs[name] = proc
        return proc

    def _wait(self, name: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if ready():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready in {timeout:.0f} s:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def json_lines(self, name: str) -> list[dict]:
        """The JSON log lines a process wrote (gunicorn's own plain lines are skipped)."""
        out = []
        for line in self.log(name).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    # ---- commands -----------------------------------------------------------------------
    def qol(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``qol ARGS`` in the stack's environment."""
        done = subprocess.run([BIN / "qol", *args], env=self.env, cwd=self.workdir, capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"qol {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def seed(self, patients: int) -> dict:
        """A site, a nurse (``NURSE``) and ``patients`` patients (PIN ``PIN``) with an open baseline visit."""
        done = subprocess.run(
            [BIN / "python", Path(__file__), "seed", str(patients)],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    # ---- nginx --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.workdir / "tls" / "cert.pem"))

    def client(self) -> Browser:
        """A browser talking HTTPS to nginx."""
        browser = Browser("127.0.0.1", self.https_port, self.ssl_context())
        self.browsers.append(browser)
        return browser

    def node_client(self, index: int) -> Browser:
        """A browser talking plain HTTP straight to web node ``index`` (0-based)."""
        browser = Browser("127.0.0.1", self.node_ports[index])
        self.browsers.append(browser)
        return browser

    def _write_tls(self) -> None:
        tls = self.workdir / "tls"
        tls.mkdir(exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                tls / "key.pem",
                "-out",
                tls / "cert.pem",
            ],
            check=True,
            capture_output=True,
        )

    def _write_nginx(self) -> None:
        """deploy/nginx/*.conf with loopback ports, the throwaway certificate and local paths."""
        wd = self.workdir
        static = ROOT / "qol_app" / "static"
        site = (DEPLOY / "nginx" / "qol.conf").read_text()
        upstreams = "\n".join(f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;" for p in self.node_ports)
        site = _sub(site, r"(    server 127\.0\.0\.1:800\d max_fails=3 fail_timeout=10s;\n)+", upstreams + "\n")
        site = _sub(site, r"listen 80;\n\s*listen \[::\]:80;", f"listen 127.0.0.1:{self.http_port};")
        site = _sub(
            site,
            r"listen 443 ssl http2;[^\n]*\n\s*listen \[::\]:443 ssl http2;",
            f"listen 127.0.0.1:{self.https_port} ssl;",
        )
        site = _sub(site, re.escape("/etc/ssl/qol/fullchain.pem"), str(wd / "tls" / "cert.pem"))
        site = _sub(site, re.escape("/etc/ssl/qol/privkey.pem"), str(wd / "tls" / "key.pem"))
        site = _sub(site, re.escape("/var/log/nginx/"), f"{wd}/logs/")
        site = _sub(site, re.escape("/opt/qol/venv/lib/python3.11/site-packages/qol_app/static/"), f"{static}/")
        site = _sub(site, re.escape("/etc/nginx/qol-proxy.conf"), str(wd / "qol-proxy.conf"))
        if self.with_bare:
            site = _sub(
                site,
                r"    location / \{",
                "    location = /bare {\n        proxy_pass http://qol_bare;\n"
                f"        include {wd}/qol-proxy.conf;\n    }}\n\n    location / {{",
            )
            site = f"upstream qol_bare {{\n    server 127.0.0.1:{self.bare_port};\n}}\n" + site
        (wd / "qol.conf").write_text(site)
        shutil.copy(DEPLOY / "nginx" / "qol-proxy.conf", wd / "qol-proxy.conf")
        temp = wd / "nginx-temp"
        temp.mkdir(exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (wd / "nginx.conf").write_text(
            f"""{user}worker_processes 1;
pid {wd}/nginx.pid;
daemon off;
error_log {wd}/logs/error.log warn;
events {{ worker_connections 2048; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {wd}/qol.conf;
}}
"""
        )


def _sub(text: str, pattern: str, replacement: str) -> str:
    """``re.sub`` that fails when the shipped file no longer has what the stack rewrites."""
    new, count = re.subn(pattern, lambda _m: replacement, text)
    if not count:
        raise RuntimeError(f"deploy/nginx/qol.conf no longer matches {pattern!r}; update deploy/stack.py")
    return new


def _plain_get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


# ---- a browser ------------------------------------------------------------------------------
class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: str, seconds: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


class Browser:
    """Enough of a browser for form posts: keep-alive, a cookie jar, hidden fields, redirects."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None = None, timeout: float = 60) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.context is not None:
                self.conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None) -> Response:
        head = dict(headers or {})
        if self.cookies:
            head["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            head["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                conn = self._connection()
                conn.request(method, path, body=body, headers=head)
                resp = conn.getresponse()
                data = resp.read().decode("utf-8", errors="replace")
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed while idle: a browser reconnects too.
                self.close()
                if attempt == 2:
                    raise
        seconds = time.perf_counter() - started
        for header in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        if resp.headers.get("Connection", "").lower() == "close":
            self.close()
        return Response(resp.status, resp.headers, data, seconds)

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw) -> Response:
        return self.request("POST", path, form, **kw)


def path_of(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def forms(html: str) -> list[tuple[str, str]]:
    """(action, inner html) of each form on a page, in page order."""
    out = []
    for match in re.finditer(r"<form([^>]*)>(.*?)</form>", html, re.S):
        action = re.search(r'action="([^"]*)"', match.group(1))
        out.append((action.group(1) if action else "", match.group(2)))
    return out


def hidden(form_html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form_html):
        if 'type="hidden"' in tag:
            name = re.search(r'name="([^"]*)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = html_lib.unescape(value.group(1)) if value else ""
    return fields


def main_form(html: str) -> str:
    """The page's own form (not the language switch, the large-print switch or the sign-out button)."""
    for action, inner in forms(html):
        if all(other not in action for other in ("/language", "/logout", "/large-print")) and "lang" not in hidden(
            inner
        ):
            return inner
    raise ValueError("no form on the page")


def answers_for(form_html: str, choose) -> dict[str, str]:
    """An answer for every question of a survey page: ``choose(name, values)`` picks a radio value;
    number fields get a value inside their range."""
    radios: dict[str, list[str]] = {}
    for tag in re.findall(r'<input[^>]*type="radio"[^>]*>', form_html):
        name = re.search(r'name="([^"]*)"', tag).group(1)
        radios.setdefault(name, []).append(re.search(r'value="([^"]*)"', tag).group(1))
    out = {name: choose(name, values) for name, values in radios.items()}
    for tag in re.findall(r'<input[^>]*type="number"[^>]*>', form_html):
        name = re.search(r'name="([^"]*)"', tag).group(1)
        low = float((re.search(r'min="([^"]*)"', tag) or re.search("()", "")).group(1) or 0)
        high = float((re.search(r'max="([^"]*)"', tag) or re.search("()", "")).group(1) or 100)
        out[name] = str(int((low + high) // 2))
    return out


# ---- a patient's visit ------------------------------------------------------------------------
class VisitError(AssertionError):
    """The app answered something a patient's browser would not expect."""


def _expect(response: Response, label: str, *statuses: int) -> Response:
    if response.status not in statuses:
        raise VisitError(f"{label}: HTTP {response.status} (expected {statuses}): {response.body[:300]!r}")
    return response


def visit(browser: Browser, token: str, pin: str | None, *, record=None, think=None, choose=None) -> int:
    """Sign in with the personal link and PIN, answer every open visit (all its forms), Send each visit.

    ``record(label, response)`` sees every request (labels: "link", "sign-in", "home", "start",
    "respondent", "respondent POST", "page", "page POST", "review", "send", "done");
    ``think()`` is called after each page a person would read. Returns the visits sent (one Send each).
    """
    record = record or (lambda label, response: None)
    think = think or (lambda: None)
    choose = choose or (lambda name, values: values[len(values) // 2])

    def get(label: str, path: str, *statuses: int) -> Response:
        response = browser.get(path)
        record(label, response)
        return _expect(response, label, *(statuses or (200,)))

    def post(label: str, path: str, form: dict, *statuses: int) -> Response:
        response = browser.post(path, form)
        record(label, response)
        return _expect(response, label, *(statuses or (302, 303)))

    page = get("link", f"/p/l/{token}")
    think()
    form = hidden(main_form(page.body)) | ({"pin": pin} if pin else {})
    post("sign-in", f"/p/l/{token}", form)
    sent = 0
    for _ in range(200):
        home = get("home", "/p/")
        links = re.findall(r'href="(/p/t/\d+)"', home.body)
        if not links:
            return sent
        think()
        where = path_of(get("start", links[0], 302).location)
        for _ in range(100):
            if where.endswith("/respondent"):
                page = get("respondent", where)
                think()
                where = path_of(
                    post("respondent POST", where, hidden(main_form(page.body)) | {"respondent": "self"}).location
                )
            elif re.search(r"/p/t/\d+$", where):
                where = path_of(get("start", where, 302).location)
            elif where.endswith("/submit"):
                page = get("review", where)
                think()
                where = path_of(post("send", where, hidden(main_form(page.body))).location)
            elif where.endswith("/done"):
                get("done", where)
                sent += 1
                think()
                break
            elif re.search(r"/p/t/\d+/\w+/\d+", where):
                page = get("page", where)
                inner = main_form(page.body)
                think()
                form = hidden(inner) | answers_for(inner, choose) | {"nav": "next"}
                where = path_of(post("page POST", where.split("?")[0], form).location)
            elif where.rstrip("/") == "/p":
                break
            else:
                raise VisitError(f"unexpected page {where}")
        else:
            raise VisitError("the visit never ended")
    raise VisitError("more than 200 forms?")


def sign_out(browser: Browser, record=None) -> Response:
    home = browser.get("/p/")
    for action, inner in forms(home.body):
        if action.endswith("/logout"):
            response = browser.post(action, hidden(inner))
            if record:
                record("sign-out", response)
            return _expect(response, "sign-out", 302, 303)
    raise VisitError("no sign-out button on the home page")


# ---- seeding (run in the stack's environment) --------------------------------------------------
def _seed(n_patients: int) -> dict:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from qol_app import create_app
    from qol_app.db import db, utcnow
    from qol_app.models import Site
    from qol_app.passwords import hash_pin
    from qol_app.services import staff, timepoints
    from qol_app.services.audit import Actor
    from qol_app.services.enrolment import enroll_patient

    app = create_app()
    actor = Actor.system("stack-seed")
    with app.app_context():
        session = db.session
        now = utcnow()
        site = Site(
            code="S01", name="Smoke site", timezone="Asia/Shanghai", default_language="zh_Hans", emergency_phone="120"
        )
        session.add(site)
        session.flush()
        staff.create_user(
            session,
            actor,
            username=NURSE[0],
            full_name="Smoke Nurse",
            role="nurse",
            password=NURSE[1],
            now=now,
            sites=[site],
        )
        # Randomised tomorrow (site time): the baseline window (7 days before, until that day) is open.
        tomorrow = now.astimezone(ZoneInfo(site.timezone)).date() + dt.timedelta(days=1)
        pin_hash = hash_pin(PIN)  # one hash for all, as enrolment makes it (hash_pin), so no sign-in rehashes
        out = []
        for i in range(n_patients):
            enrolled = enroll_patient(
                session,
                actor,
                study_id=f"S01-{i:05d}",
                site=site,
                arm="AB"[i % 2],
                randomization_date=tomorrow,
                language="zh_Hans" if i % 4 else "en",
                now=now,
                with_pin=False,
            )
            enrolled.patient.pin_hash = pin_hash
            out.append(enrolled.token)
            if i % 200 == 199:
                session.commit()
        session.commit()
        timepoints.reconcile_all(session, now, checkpoint=session.commit)
        session.commit()
        timepoints.sweep_statuses(session, now, checkpoint=session.commit)
        session.commit()
    return {"patients": out, "pin": PIN, "nurse": list(NURSE), "site": "S01"}


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        print(json.dumps(_seed(int(sys.argv[2]))))
    else:
        sys.exit("usage: python deploy/stack.py seed N")
