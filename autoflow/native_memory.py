"""Hand memory the process freed back to the operating system between ticks.

A tick allocates and frees a few MiB (HTTP, SQL rows, Prefect's flow-run machinery) in
short-lived threads. glibc keeps freed blocks in its heaps for reuse, so an idle service's
resident size rises in steps even though Python's own allocations stay flat (tracemalloc) and
no thread is left behind. ``malloc_trim(0)`` hands the free pages back; it takes a few
milliseconds once per tick. It does not remove all the rise: see benchmarks/README.md, Memory.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap memory to the OS (glibc only); whether it could be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
