"""Run every benchmark in bench/ one after the other and print their figures (``make bench``).

Run:  .venv/bin/python bench/run_all.py [NAME ...] [--quick] [--timeout SECONDS]

NAMEs pick benchmarks (``load``, ``bench_web``, ...); default all. ``--quick`` passes smaller sizes,
for checking that they run rather than for figures. Each benchmark runs in its own process with a
time limit; one that fails or times out is reported and the others still run. The exit status is
1 when any failed. Benchmarks never run in the test suite: their timings depend on the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (arguments for a full run, arguments for --quick). Cheapest first.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bench_scoring": ([], []),
    "bench_planner": ([], []),
    "bench_burden": ([], []),
    "bench_web": ([], ["--seconds", "2", "--rounds", "1"]),
    "bench_dashboard": ([], ["--patients", "500", "--site-patients", "200", "--repeat", "1"]),
    "bench_sweep": ([], ["--patients", "300"]),
    "bench_rescore": ([], ["--forms", "5000"]),
    "bench_export": ([], ["--forms", "5000"]),
    "bench_load": (
        [],
        ["--patients", "20", "--think", "0.5,1", "--ramp", "5", "--levels", "5,10", "--level-seconds", "5"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: does each one still run?")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = parser.parse_args()
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in wanted if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    results = []
    for name in wanted:
        argv = BENCHMARKS[name][1 if args.quick else 0]
        print(f"\n===== {name} {' '.join(argv)}", flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, HERE / f"{name}.py", *argv], timeout=args.timeout)
            status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            status = f"TIMED OUT after {args.timeout:.0f} s"
        results.append((name, status, time.monotonic() - started))
    print("\n===== summary")
    for name, status, seconds in results:
        print(f"{name:<16} {status:<24} {seconds:6.0f} s")
    sys.exit(0 if all(status == "ok" for _n, status, _s in results) else 1)


if __name__ == "__main__":
    main()
