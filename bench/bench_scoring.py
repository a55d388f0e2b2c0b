"""Throughput of ``score()`` on QLQ-C30 + BN20 forms held in memory.

Run on demand: ``python bench/bench_scoring.py [n_forms]``. Prints figures;
nothing is asserted (timings vary by machine).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qol_app.instruments import get_registry
from qol_app.scoring import score


def random_forms(instrument_id: str, n: int, rng: random.Random) -> list[dict[str, int | None]]:
    """Valid answers, about 3 % of items skipped (so the half rule is exercised)."""
    items = get_registry().get(instrument_id).items
    return [{item.id: (None if rng.random() < 0.03 else rng.choice(item.codes)) for item in items} for _ in range(n)]


def bench(instrument_id: str, forms: list[dict[str, int | None]]) -> float:
    start = time.perf_counter()
    for answers in forms:
        score(instrument_id, answers)
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rng = random.Random(20240601)
    t0 = time.perf_counter()
    get_registry()
    print(f"registry load (YAML + validation): {(time.perf_counter() - t0) * 1000:.1f} ms")
    total_forms, total_seconds = 0, 0.0
    for instrument_id in ("eortc_qlq_c30", "eortc_qlq_bn20"):
        forms = random_forms(instrument_id, n, rng)
        bench(instrument_id, forms[:200])  # warm-up
        seconds = bench(instrument_id, forms)
        total_forms += n
        total_seconds += seconds
        print(
            f"{instrument_id:16s} {n:7d} forms in {seconds:6.3f} s = "
            f"{n / seconds:9.0f} forms/s ({seconds / n * 1e6:6.1f} µs/form)"
        )
    print(
        f"{'C30 + BN20':16s} {total_forms:7d} forms in {total_seconds:6.3f} s = "
        f"{total_forms / total_seconds:9.0f} forms/s"
    )


if __name__ == "__main__":
    main()
