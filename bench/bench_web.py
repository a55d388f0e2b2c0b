"""Survey page GET and POST under gunicorn (2 workers) on SQLite, beside bare Flask endpoints.

Run:  .venv/bin/python bench/bench_web.py [--seconds 6] [--rounds 3] [--threads 4]
Target: each survey request rate at least 50 % of its bare counterpart (a bare page; a one-row
insert). The four measurements alternate for ``--rounds`` rounds and the median of each is
reported, so a burst of load elsewhere on the machine skews one round, not the result; the
server CPU time per request (gunicorn workers, from /proc) is printed beside each rate. The
survey GET shows a page with saved answers (as when a patient resumes). Also prints the gzip
size of a survey page with its CSS (target <= 20 KB).

Two floors are measured in the same rounds, to show how much of the GET budget is spent before
a survey page does any work of its own: the app's ``/healthz`` (every hook, no session) and a
signed-in request that only passes the session check and redirects (``/p/signed-out``).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Client:
    """A keep-alive HTTP client with a cookie jar, enough for a form-posting browser."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str, dict]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read().decode()
        for header in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return resp.status, data, dict(resp.headers)


def hidden(html: str) -> dict[str, str]:
    forms = [
        f
        for f in re.findall(r"<form.*?</form>", html, re.S)
        if "/language" not in f.split(">")[0] and "/logout" not in f.split(">")[0]
    ]
    last = forms[0] if forms else html
    fields = {}
    for tag in re.findall(r"<input[^>]*>", last):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', tag))
        if attrs.get("type") == "hidden" and "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


def setup(instance: Path) -> dict:
    env = os.environ | {
        "QOL_DATABASE_URL": f"sqlite:///{instance / 'qol.sqlite'}",
        "QOL_SECRET_KEY": "bench",
        "QOL_SESSION_COOKIE_SECURE": "0",
    }
    subprocess.run([BIN / "qol", "db", "upgrade"], env=env, check=True, capture_output=True)
    script = f"""
import datetime as dt
from qol_app import create_app
from qol_app.db import db, utcnow
from qol_app.models import Site, Timepoint
from qol_app.services.audit import Actor
from qol_app.services.enrolment import enroll_patient
app = create_app()
with app.app_context():
    now = utcnow()
    site = Site(code="B01", name="bench", timezone="Asia/Shanghai", default_language="zh_Hans", emergency_phone="120")
    db.session.add(site); db.session.flush()
    out = []
    for n in range({THREADS}):
        e = enroll_patient(db.session, Actor.system("bench"), study_id=f"B01-{{n:03d}}", site=site, arm="B",
                           randomization_date=now.date(), language="zh_Hans", now=now, with_pin=False)
        day = now.date()
        tp = Timepoint(patient_id=e.patient.id, key="baseline", rule_id="baseline", kind="questionnaire",
                       instruments=["eortc_qlq_c30"], anchor_kind="randomization", anchor_date=day, target_date=day,
                       window_start=day, window_end=day + dt.timedelta(days=2), grace_end=day + dt.timedelta(days=3),
                       opens_at=now - dt.timedelta(days=1), closes_at=now + dt.timedelta(days=2),
                       grace_closes_at=now + dt.timedelta(days=3), status="open", respondent="self")
        db.session.add(tp); db.session.flush()
        out.append(f"{{e.token}} {{tp.id}}")
    db.session.commit()
    print("\\n".join(out))
"""
    done = subprocess.run([BIN / "python", "-c", script], env=env, check=True, capture_output=True, text=True)
    pairs = [line.split() for line in done.stdout.strip().splitlines()]
    return {"env": env, "patients": [(token, int(tp)) for token, tp in pairs]}


def serve(app_spec: str, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [BIN / "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", app_spec], env=env, cwd=ROOT
    )
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/")
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{app_spec} did not start")


def server_cpu(server: subprocess.Popen) -> float:
    """CPU seconds used so far by a gunicorn server's worker processes (Linux /proc)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.pid:  # parent pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(workers: list, seconds: float) -> float:
    """Run each worker callable in its own thread for ``seconds``; return total requests/s."""
    counts = [0] * len(workers)
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < stop:
            workers[i]()
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    THREADS = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        data = setup(instance)
        bare_db = instance / "bare.sqlite"
        con = sqlite3.connect(bare_db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.close()
        app = serve("qol_app:create_app()", 8711, data["env"])
        bare = serve("bench.bare_app:app", 8712, os.environ | {"BARE_DB": str(bare_db), "PYTHONPATH": str(ROOT)})
        try:
            clients = []
            for token, tp in data["patients"]:
                c = Client(8711)
                _, html, _ = c.request("GET", f"/p/l/{token}")
                status, _, _ = c.request("POST", f"/p/l/{token}", hidden(html))
                assert status in (302, 303), status
                clients.append((c, tp))
            page = "/p/t/{tp}/eortc_qlq_c30/1"

            def getter(c, tp):
                def get():
                    status, html, _ = c.request("GET", page.format(tp=tp))
                    assert status == 200 and " checked" in html, status

                return get

            def poster(c, tp):
                _, html, _ = c.request("GET", page.format(tp=tp))
                form = hidden(html)
                flip = [1]

                def post():
                    flip[0] = 3 - flip[0]
                    status, _, _ = c.request(
                        "POST",
                        page.format(tp=tp),
                        form | {f"q{i}": str(flip[0]) for i in range(1, 6)} | {"nav": "next"},
                    )
                    assert status in (302, 303), status

                return post

            def signed_in_only(c):
                def get():
                    status, _, headers = c.request("GET", "/p/signed-out")
                    assert status == 302 and headers["Location"].endswith("/p/"), (status, headers)

                return get

            bare_clients = [Client(8712) for _ in range(args.threads)]
            anonymous = [Client(8711) for _ in range(args.threads)]
            workloads = {
                "survey GET": [getter(c, tp) for c, tp in clients],
                "bare GET": [(lambda b=b: b.request("GET", "/bare")) for b in bare_clients],
                "survey POST": [poster(c, tp) for c, tp in clients],
                "bare POST": [(lambda b=b: b.request("POST", "/insert", {"v": "x"})) for b in bare_clients],
                "floor: /healthz": [(lambda a=a: a.request("GET", "/healthz")) for a in anonymous],
                "floor: signed in": [signed_in_only(c) for c, _ in clients],
            }
            for post in workloads["survey POST"]:
                post()  # every form has saved answers before the GETs are timed
            rates: dict[str, list[float]] = {name: [] for name in workloads}
            cpu: dict[str, list[float]] = {name: [] for name in workloads}
            for round_no in range(1, args.rounds + 1):
                for name, work in workloads.items():
                    server = bare if name.startswith("bare") else app
                    before = server_cpu(server)
                    rates[name].append(measure(work, args.seconds))
                    cpu[name].append((server_cpu(server) - before) / (rates[name][-1] * args.seconds))
                print(f"round {round_no}: " + ", ".join(f"{name} {r[-1]:.0f}" for name, r in rates.items()))
            results = {name: statistics.median(r) for name, r in rates.items()}
            for name, rate in results.items():
                print(
                    f"{name:<17} {rate:8.1f} req/s (median of {args.rounds}), "
                    f"server CPU {1000 * statistics.median(cpu[name]):.2f} ms per request"
                )
            print(f"GET ratio  {100 * results['survey GET'] / results['bare GET']:.0f} % (target >= 50 %)")
            for name in ("floor: /healthz", "floor: signed in"):
                print(f"{name:<17} {100 * results[name] / results['bare GET']:.0f} % of bare GET")
            print(f"POST ratio {100 * results['survey POST'] / results['bare POST']:.0f} % (target >= 50 %)")
            c, tp = clients[0]
            _, html, _ = c.request("GET", page.format(tp=tp))
            css = b"".join(
                (ROOT / "qol_app" / "static" / name).read_bytes()
                for name in ("app.css", "patient.css")
                if (ROOT / "qol_app" / "static" / name).exists()
            )
            size = len(gzip.compress(html.encode() + css))
            print(f"survey page + CSS gzipped: {size / 1024:.1f} KB (target <= 20 KB)")
        finally:
            for proc in (app, bare):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)


THREADS = 4
if __name__ == "__main__":
    main()
