"""Memory of a large export: the garbage collector run rarely while rows are read, and freed
memory handed back to the system between steps (Arrow's pool and the C heap)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow as pa


@contextmanager
def bulk_gc(threshold: int = 200_000) -> Iterator[None]:
    """Run the cyclic garbage collector rarely while many short-lived objects are made (rows
    hold no reference cycles, yet the collector would scan the young generation every 700)."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library is glibc (None elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the memory freed since the last call back to the system: Arrow's pool's and the C
    heap's (glibc keeps freed blocks of the many temporaries of one dataset, so each dataset would
    otherwise start from the high-water mark of the one before)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)
