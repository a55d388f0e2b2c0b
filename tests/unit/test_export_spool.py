"""SAS, Stata and SPSS files are written from a spooled, memory-mapped frame: the process's own
memory stays flat however many rows there are, and the spool is gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyreadstat
import pytest

from qol_app.export import write_dataset
from tests.unit.test_export_writers import _many_rows, sample

STATS = ("xpt", "dta", "sav")

#: Peak anonymous (private) memory during the whole write, minus what the process held before.
#: Sampled from /proc in a thread; file-backed pages (the mapped spool) are not counted, since the
#: kernel reclaims them under pressure. ``materialise`` is the control: the old way, every row in
#: memory first.
_PEAK_PROBE = """
import sys, threading, time
from pathlib import Path
import pandas, pyarrow.ipc, pyreadstat  # loaded before the baseline: imports are not the write's memory
from tests.unit.test_export_writers import _many_rows, sample
from qol_app.export import write_dataset

def anonymous_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

fmt, out, mode, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def held():  # built once the writer starts pulling rows, so it counts as the write's memory
    yield from list(_many_rows(count))

rows = held() if mode == "materialise" else _many_rows(count)
base = anonymous_kib()
peak, done = [base], threading.Event()

def sample_memory():
    while not done.is_set():
        peak[0] = max(peak[0], anonymous_kib())
        time.sleep(0.005)

sampler = threading.Thread(target=sample_memory)
sampler.start()
write_dataset(fmt, sample(rows, "big"), out)
done.set()
sampler.join()
print((peak[0] - base) / 1024)
"""


def _peak_growth_mib(fmt: str, out: Path, mode: str, count: int) -> float:
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, fmt, str(out), mode, str(count)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=True,
    )
    return float(result.stdout)


def _growth_from_40k_to_200k_rows(tmp_path: Path, fmt: str, mode: str) -> float:
    peaks = []
    for count in (40_000, 200_000):
        out = tmp_path / str(count)
        out.mkdir()
        peaks.append(_peak_growth_mib(fmt, out, mode, count))
    return peaks[1] - peaks[0]


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


@needs_proc
@pytest.mark.parametrize("fmt", STATS)
def test_private_memory_does_not_grow_with_the_rows(tmp_path: Path, fmt: str) -> None:
    """160k more rows cost a few MiB (integer columns narrowed in memory), not the ~55 MiB of rows held."""
    growth = _growth_from_40k_to_200k_rows(tmp_path, fmt, "stream")
    assert growth < 8, f"{fmt}: {growth:.1f} MiB"
    _, info = {"xpt": pyreadstat.read_xport, "dta": pyreadstat.read_dta, "sav": pyreadstat.read_sav}[fmt](
        tmp_path / "200000" / f"big.{fmt}", metadataonly=True
    )
    assert info.number_rows in (200_000, None)  # XPT does not record its row count
    assert sorted(p.name for p in (tmp_path / "200000").iterdir()) == [f"big.{fmt}"]  # the spool is gone


@needs_proc
def test_the_memory_probe_sees_rows_held_in_memory(tmp_path: Path) -> None:
    """The control: with the rows held in memory first (as before the spool), the probe shows it."""
    assert _growth_from_40k_to_200k_rows(tmp_path, "sav", "materialise") > 40


@pytest.mark.parametrize("fmt", STATS)
def test_the_spool_is_removed_when_writing_fails(tmp_path: Path, fmt: str) -> None:
    def rows() -> Iterator[tuple[Any, ...]]:
        yield from _many_rows(70_000)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_dataset(fmt, sample(rows()), tmp_path)
    assert list(tmp_path.iterdir()) == []
