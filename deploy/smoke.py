"""Smoke test of the deployment in this folder, all on loopback (``make smoke``).

nginx (Debian's package, with deploy/nginx/qol.conf and a throwaway certificate) in front of two
gunicorn nodes (deploy/gunicorn.conf.py) and the scheduler, on a scratch PostgreSQL database.
Walks a patient's whole baseline visit and a nurse's sign-in through nginx over HTTPS, then
checks what a hospital's IT team would: both nodes served the visit, static files come from
nginx, plain HTTP redirects, health checks answer, no personal link reaches a log file, a
forged X-Forwarded-For is not believed, and the audit trail is intact.

Run:  .venv/bin/python deploy/smoke.py [--keep DIR]     (exit status 0 when every check passed)
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.stack import NURSE, Stack, VisitError, forms, hidden, main_form, nginx_missing, postgres_missing, visit


def run(workdir: Path, say=print) -> list[str]:
    """Start the stack in ``workdir``, walk it, stop it; returns the failed checks (empty: all good)."""
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        say(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    with Stack(workdir, nodes=2, workers=2, scheduler=True, nginx=True, scheduler_interval=5) as stack:
        say(f"nginx https://127.0.0.1:{stack.https_port} -> nodes {stack.node_ports}; database {stack.db_name}")
        data = stack.seed(2)
        token, pin = data["patients"][0], data["pin"]

        # A patient's whole baseline visit through nginx.
        browser = stack.client()
        request_ids: list[str] = []
        try:
            sent = visit(browser, token, pin, record=lambda label, r: request_ids.append(r.headers["X-Request-ID"]))
        except VisitError as exc:
            check(False, f"patient visit through nginx: {exc}")
            sent = 0
        check(
            sent == 1,
            f"patient visit through nginx: {sent} visit sent (C30, BN20, EQ-5D-5L, one Send), {len(request_ids)} requests",
        )
        served = {
            name: {line.get("request_id") for line in stack.json_lines(name) if line.get("logger") == "qol_app.access"}
            for name in ("node1", "node2")
        }
        check(
            all(served[name] & set(request_ids) for name in served),
            "both nodes served the visit ("
            + ", ".join(f"{n}: {len(served[n] & set(request_ids))}" for n in served)
            + " requests; nginx's request id is the app's)",
        )

        # A nurse signs in through nginx and sees the dashboard.
        nurse = stack.client()
        login = nurse.get("/staff/login")
        form = hidden(main_form(login.body)) | {"username": NURSE[0], "password": NURSE[1]}
        signed_in = nurse.post("/staff/login", form)
        dashboard = nurse.get("/staff/")
        check(
            signed_in.status == 302 and dashboard.status == 200 and "Smoke Nurse" in dashboard.body,
            f"nurse sign-in through nginx (POST {signed_in.status}, dashboard {dashboard.status})",
        )
        logout = next(inner for action, inner in forms(dashboard.body) if action.endswith("/logout"))
        nurse.post("/staff/logout", hidden(logout))
        check(nurse.get("/staff/").status == 302, "nurse sign-out ends the session on every node")

        # What nginx itself does.
        probe = stack.client()
        static = probe.get("/static/app.css")
        check(
            static.status == 200
            and "X-Request-ID" not in static.headers
            and "public" in ", ".join(static.headers.get_all("Cache-Control") or []),
            "static files served by nginx (no app worker involved)",
        )
        page = probe.get("/staff/login")
        hsts = page.headers.get_all("Strict-Transport-Security") or []
        check(len(hsts) == 1, f"one HSTS header on app pages ({len(hsts)})")
        check(
            page.headers.get("Content-Security-Policy", "").startswith("default-src 'self'")
            and page.headers.get("X-Frame-Options") == "DENY",
            "the app's security headers pass through",
        )
        plain = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=10)
        plain.request("GET", "/p/")
        redirect = plain.getresponse()
        check(
            redirect.status == 301 and redirect.getheader("Location", "").startswith("https://"),
            f"plain HTTP redirects to HTTPS ({redirect.status})",
        )
        plain.close()
        check(probe.get("/healthz").status == 200, "/healthz through nginx")
        ready = probe.get("/readyz")
        check(ready.status == 200, f"/readyz through nginx ({ready.status}: {ready.body[:200]})")

        # A client cannot claim another address: nginx appends the real one and the app takes only that.
        spoof = stack.client()
        rid = spoof.get("/staff/login", headers={"X-Forwarded-For": "198.51.100.66"}).headers["X-Request-ID"]
        logged = [
            line
            for name in ("node1", "node2")
            for line in stack.json_lines(name)
            if line.get("request_id") == rid and line.get("logger") == "qol_app.access"
        ]
        check(
            len(logged) == 1 and logged[0].get("remote_addr") == "127.0.0.1",
            f"a forged X-Forwarded-For is ignored (logged {[line.get('remote_addr') for line in logged]})",
        )

        # Logs never hold a personal link; the audit trail is whole.
        logs = "".join(path.read_text(errors="replace") for path in (workdir / "logs").glob("*.log"))
        check(token not in logs, "no personal link in nginx's or the app's logs")
        check(
            "/p/l/<token>" in (workdir / "logs" / "qol.access.log").read_text(), "nginx logs the link's route instead"
        )
        verify = stack.qol("audit", "verify", check=False)
        check(verify.returncode == 0 and "intact" in verify.stdout, f"qol audit verify: {verify.stdout.strip()}")
        status = stack.qol("scheduler", "status", check=False)
        check(status.returncode == 0, f"scheduler swept: {status.stdout.strip().splitlines()[0]}")
        errors = [
            line
            for name in ("node1", "node2", "scheduler")
            for line in stack.json_lines(name)
            if line.get("level") in ("ERROR", "CRITICAL")
        ]
        check(not errors, f"no errors logged by the nodes or the scheduler ({errors[:2]})")
        served_lines = [
            re.sub(r"\s+", " ", line)[:160]
            for line in (workdir / "logs" / "qol.access.log").read_text().splitlines()[:3]
        ]
        say("nginx access log, first lines: " + " | ".join(served_lines))
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work folder to keep (logs, configs) instead of a temporary one")
    args = parser.parse_args()
    for problem in (nginx_missing(), postgres_missing()):
        if problem:
            sys.exit(f"smoke: {problem}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        failures = run(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="qol-smoke-") as tmp:
            failures = run(Path(tmp))
    print(f"smoke: {'all checks passed' if not failures else f'{len(failures)} check(s) FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
