"""Latency under real concurrency: virtual patients through nginx to two gunicorn nodes on PostgreSQL.

Run:  .venv/bin/python bench/bench_load.py [--patients 200] [--think 2,10] [--max-seconds 420]
                                           [--levels 10,25,50,100,200] [--level-seconds 20]

Everything runs on loopback, started from deploy/ as a site would run it (deploy/stack.py): nginx
with TLS, two gunicorn nodes (``--workers`` each), the scheduler, a scratch PostgreSQL database.

1. Think-time run: ``--patients`` virtual patients, started over ``--ramp`` seconds, each signs in
   with the personal link and PIN, fills the whole baseline visit (QLQ-C30, BN20, EQ-5D-5L: 14
   pages) and presses Send on each form, reading every page for a time drawn uniformly from
   ``--think`` seconds. After each page a patient reads, the same browser also fetches a bare
   Flask page (bench/bare_app.py, its own gunicorn with as many workers, behind the same nginx),
   so the bare page is measured under the same load in the same run.
2. Saturation run: no think time; ``--levels`` concurrent patients, ``--level-seconds`` each, each
   patient signing in and doing visits back to back. The saturation point is the first level whose
   throughput is less than 10 % above the level before.

Printed: p50/p95/p99/max per request type, errors, throughput, visits completed, and the load on
the machine while measuring (load average; CPU used by this benchmark's processes, by PostgreSQL
(all its databases) and by everything else). Target (ONS eQ's published production figures):
0 errors, p95 < 320 ms and p99 < 467 ms for every patient request type.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.stack import Browser, Stack, VisitError, nginx_missing, postgres_missing, visit

TARGET_P95, TARGET_P99 = 0.320, 0.467
ORDER = [
    "link",
    "sign-in",
    "home",
    "start",
    "respondent",
    "respondent POST",
    "page",
    "page POST",
    "review",
    "send",
    "done",
    "bare",
]


# ---- the load generator (runs in worker processes) ---------------------------------------------
def _worker(job: dict) -> dict:
    """Run ``job["users"]`` virtual patients in threads; return their timings."""
    import ssl

    context = ssl.create_default_context(cafile=job["cafile"])
    records: list[tuple[str, float, float]] = []  # (label, seconds, finished at)
    errors: list[str] = []
    done = [0, 0]  # visits completed, visits cut off by the time bound
    lock = threading.Lock()
    tokens = iter(job["tokens"])
    rng = random.Random(job["seed"])
    low, high = job["think"]

    def user(index: int) -> None:
        time.sleep(max(0.0, job["start_at"][index] - time.time()))
        mine: list[tuple[str, float, float]] = []
        own = random.Random(rng.random())
        while time.time() < job["deadline"]:
            with lock:
                token = next(tokens, None)
            if token is None:
                break
            browser = Browser("127.0.0.1", job["port"], context)

            def record(label: str, response) -> None:
                mine.append((label, response.seconds, time.time()))

            def think(browser: Browser = browser) -> None:
                if job["bare"]:
                    response = browser.get("/bare")
                    mine.append(("bare", response.seconds, time.time()))
                    if response.status != 200:
                        raise VisitError(f"bare: HTTP {response.status}")
                if high > 0:
                    pause = own.uniform(low, high)
                    if time.time() + pause > job["deadline"]:
                        raise TimeoutError
                    time.sleep(pause)
                elif time.time() > job["deadline"]:
                    raise TimeoutError

            try:
                visit(browser, token, job["pin"], record=record, think=think)
                with lock:
                    done[0] += 1
            except TimeoutError:
                with lock:
                    done[1] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
            finally:
                browser.close()
            if job["once"]:
                break
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(job["users"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"records": records, "errors": errors, "visits": done[0], "cut_off": done[1]}


def run_load(stack: Stack, tokens: list[str], pin: str, *, users: int, procs: int, think, ramp, seconds, bare, once):
    """Spread ``users`` over ``procs`` processes; returns merged results and the wall-clock span."""
    start = time.time() + 2.0
    per = [users // procs + (1 if i < users % procs else 0) for i in range(procs)]
    chunks, offset = [], 0
    for n in per:
        share = len(tokens) * n // users
        chunks.append(tokens[offset : offset + share])
        offset += share
    jobs = []
    user_no = 0
    for i, n in enumerate(per):
        starts = [start + ramp * (user_no + k) / max(1, users) for k in range(n)]
        user_no += n
        jobs.append(
            {
                "port": stack.https_port,
                "cafile": str(stack.workdir / "tls" / "cert.pem"),
                "tokens": chunks[i],
                "pin": pin,
                "users": n,
                "start_at": starts,
                "deadline": start + seconds,
                "think": think,
                "bare": bare,
                "once": once,
                "seed": 1000 + i,
            }
        )
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        results = pool.map(_worker, jobs)
    merged = {"records": [], "errors": [], "visits": 0, "cut_off": 0}
    for result in results:
        merged["records"] += result["records"]
        merged["errors"] += result["errors"]
        merged["visits"] += result["visits"]
        merged["cut_off"] += result["cut_off"]
    return merged, start


# ---- machine load ----------------------------------------------------------------------------
def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds)."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    return table


class MachineLoad:
    """CPU used while measuring: by the app (nodes, scheduler, nginx), the bare page's server, the load
    generator, PostgreSQL (every database on the server, other people's too) and everything else.

    Per process: CPU time at the end minus at the start (a process started meanwhile counts whole).
    CPU of a process that ended meanwhile is lost, except the load generator's, which this process
    reaped (getrusage).
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        import resource

        self.groups = groups
        self.loadavg: list[str] = []
        self.start = self._sample()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children0 = usage.ru_utime + usage.ru_stime

    @staticmethod
    def _tree(table, roots: list[int]) -> set[int]:
        tree = set(roots)
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _name, _cpu) in table.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        return tree

    def _sample(self):
        table = _proc_table()
        busy, _total = _cpu_times()
        self.loadavg.append(Path("/proc/loadavg").read_text().split()[0])
        return time.time(), busy, table

    def measure(self) -> dict[str, float]:
        """Cores used (CPU seconds per second) since construction, by group; plus "wall" seconds."""
        import resource

        t1, busy1, table1 = self._sample()
        t0, busy0, table0 = self.start
        wall = t1 - t0

        def used(pids) -> float:
            return sum(table1[pid][2] - (table0[pid][2] if pid in table0 else 0.0) for pid in pids if pid in table1)

        out: dict[str, float] = {"wall": wall, "machine": (busy1 - busy0) / os.sysconf("SC_CLK_TCK") / wall}
        counted: set[int] = set()
        for name, roots in self.groups.items():
            tree = self._tree(table1, roots)
            counted |= tree
            out[name] = used(tree) / wall
        out["postgres"] = (
            used(p for p, (_pp, n, _c) in table1.items() if n.startswith("postgres") and p not in counted) / wall
        )
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["generator"] = (usage.ru_utime + usage.ru_stime - self.children0) / wall
        named = sum(v for k, v in out.items() if k not in ("wall", "machine"))
        out["others"] = max(0.0, out["machine"] - named)
        return out

    def describe(self, m: dict[str, float]) -> str:
        return (
            f"machine CPU {m['machine']:.2f} of {os.cpu_count()} cores busy: app {m['app']:.2f}, bare page "
            f"{m['bare']:.2f}, load generator {m['generator']:.2f}, PostgreSQL (all databases) {m['postgres']:.2f}, "
            f"everything else {m['others']:.2f}; 1-min load average {' -> '.join(self.loadavg)}"
        )


# ---- reporting -------------------------------------------------------------------------------
def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def table(records, span: float) -> tuple[list[str], bool]:
    by: dict[str, list[float]] = {}
    for label, seconds, _at in records:
        by.setdefault(label, []).append(seconds)
    lines = [f"{'request':<16} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  target"]
    ok = True
    patient: list[float] = []
    for label in ORDER:
        values = sorted(by.get(label, []))
        if not values:
            continue
        p95, p99 = pct(values, 95), pct(values, 99)
        verdict = ""
        if label != "bare":
            patient += values
            good = p95 < TARGET_P95 and p99 < TARGET_P99
            ok &= good
            verdict = "ok" if good else "MISSED"
        lines.append(
            f"{label:<16} {len(values):>6} {1000 * pct(values, 50):>8.0f} {1000 * p95:>8.0f} {1000 * p99:>8.0f} "
            f"{1000 * values[-1]:>8.0f}  {verdict}"
        )
    patient.sort()
    lines.append(
        f"{'all patient':<16} {len(patient):>6} {1000 * pct(patient, 50):>8.0f} {1000 * pct(patient, 95):>8.0f} "
        f"{1000 * pct(patient, 99):>8.0f} {1000 * (patient[-1] if patient else 0):>8.0f}"
    )
    lines.append(f"throughput: {len(records) / span:.1f} requests/s over {span:.0f} s (bare page included)")
    return lines, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--think", default="2,10", help="think time range in seconds, per page")
    parser.add_argument("--ramp", type=float, default=30, help="seconds over which patients start")
    parser.add_argument("--max-seconds", type=float, default=420, help="bound of the think-time run")
    parser.add_argument("--levels", default="10,25,50,100,200", help="saturation run: concurrent patients per level")
    parser.add_argument("--level-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--skip-saturation", action="store_true")
    args = parser.parse_args()
    for problem in (nginx_missing(), postgres_missing()):
        if problem:
            sys.exit(f"bench_load: {problem}")
    low, high = (float(x) for x in args.think.split(","))
    levels = [int(x) for x in args.levels.split(",") if x]
    sat_pool = 0 if args.skip_saturation else sum(level * 2 + 40 for level in levels)
    with (
        tempfile.TemporaryDirectory(prefix="qol-load-") as tmp,
        Stack(
            Path(tmp), nodes=2, workers=args.workers, scheduler=True, nginx=True, bare=True, scheduler_interval=60
        ) as stack,
    ):
        print(
            f"stack: nginx (1 worker) -> 2 gunicorn nodes x {args.workers} sync workers, scheduler, PostgreSQL; "
            f"bare Flask page: gunicorn x {args.workers} behind the same nginx"
        )
        started = time.time()
        data = stack.seed(args.patients + sat_pool + 4)
        print(f"seeded {len(data['patients'])} patients in {time.time() - started:.0f} s")
        tokens = data["patients"]
        warm, think_tokens, sat_tokens = tokens[:4], tokens[4 : 4 + args.patients], tokens[4 + args.patients :]
        for token in warm:  # every worker imports and caches once before anything is timed
            browser = stack.client()
            visit(browser, token, data["pin"])
            browser.close()
        groups = {
            "app": [proc.pid for name, proc in stack.procs.items() if name != "bare"],
            "bare": [stack.procs["bare"].pid],
        }

        print(
            f"\n== think-time run: {args.patients} patients, think {low:g}-{high:g} s per page, ramp {args.ramp:g} s =="
        )
        load = MachineLoad(groups)
        result, start = run_load(
            stack,
            think_tokens,
            data["pin"],
            users=args.patients,
            procs=args.procs,
            think=(low, high),
            ramp=args.ramp,
            seconds=args.max_seconds,
            bare=True,
            once=True,
        )
        span = max((at for _l, _s, at in result["records"]), default=start + 1) - start
        lines, ok = table(result["records"], span)
        print("\n".join(lines))
        print(
            f"visits sent: {result['visits']} of {args.patients}; cut off by the {args.max_seconds:.0f} s bound: "
            f"{result['cut_off']}; errors: {len(result['errors'])}"
        )
        for error in result["errors"][:5]:
            print(f"  error: {error}")
        m = load.measure()
        patient_requests = sum(1 for label, _s, _at in result["records"] if label != "bare")
        print(f"during the think-time run ({m['wall']:.0f} s): {load.describe(m)}")
        print(
            f"app CPU per patient request: {1000 * m['app'] * m['wall'] / max(1, patient_requests):.1f} ms "
            f"(nodes, scheduler and nginx together)"
        )
        verdict = ok and not result["errors"] and result["visits"] == args.patients
        print(
            f"TARGET (0 errors, p95 < 320 ms, p99 < 467 ms per patient request type): {'MET' if verdict else 'NOT MET'}"
        )

        if args.skip_saturation:
            return
        print(f"\n== saturation run: no think time, {args.level_seconds:g} s per level ==")
        print(
            f"{'patients':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6} {'visits':>6} "
            f"{'CPU/req':>6}  (requests finished within the level; CPU/req: app CPU ms per request)"
        )
        rates: list[tuple[int, float]] = []
        offset = 0
        saturated = None
        for level in levels:
            share = sat_tokens[offset : offset + level * 2 + 40]
            offset += len(share)
            load = MachineLoad(groups)
            result, start = run_load(
                stack,
                share,
                data["pin"],
                users=level,
                procs=args.procs,
                think=(0, 0),
                ramp=1,
                seconds=args.level_seconds,
                bare=False,
                once=False,
            )
            end = start + args.level_seconds
            values = sorted(s for _l, s, at in result["records"] if at <= end)  # finished within the level
            rate = len(values) / args.level_seconds
            m = load.measure()
            cpu = 1000 * m["app"] * m["wall"] / max(1, len(result["records"]))
            print(
                f"{level:>8} {rate:>7.1f} {1000 * pct(values, 50):>7.0f} {1000 * pct(values, 95):>7.0f} "
                f"{1000 * pct(values, 99):>7.0f} {len(result['errors']):>6} {result['visits']:>6} {cpu:>6.1f}  "
                f"cores: app {m['app']:.2f}, PostgreSQL {m['postgres']:.2f}, generator {m['generator']:.2f}, "
                f"others {m['others']:.2f}; load {' -> '.join(load.loadavg)}"
            )
            for error in result["errors"][:3]:
                print(f"    error: {error}")
            if saturated is None and rates and rate < rates[-1][1] * 1.10:
                saturated = rates[-1]
            rates.append((level, rate))
        if saturated:
            print(
                f"saturation: throughput stops growing at about {saturated[0]} concurrent patients without think time "
                f"({saturated[1]:.0f} requests/s); more only queue"
            )
        else:
            print(f"saturation not reached up to {levels[-1]} concurrent patients ({rates[-1][1]:.0f} requests/s)")


if __name__ == "__main__":
    main()
