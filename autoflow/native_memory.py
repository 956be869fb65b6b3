"""Hand memory the process freed back to the operating system between ticks.

A tick allocates and frees a few MiB (HTTP, SQL rows, Prefect's flow-run machinery) in
short-lived threads. glibc keeps freed blocks in its heaps for reuse, so an idle service's
resident size rises in steps even though Python's own allocations stay flat (tracemalloc) and
no thread is left behind. ``malloc_trim(0)`` hands the free pages back; it takes a few
milliseconds once per tick. It does not remove all the rise: see benchmarks/README.md, Memory.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

_trim: Any = None
_looked = False


def release_free_memory() -> bool:
    """Return freed heap memory to the OS (glibc only); whether it could be done."""
    global _trim, _looked
    if not _looked:
        _looked = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim  # not on musl or macOS: nothing to do there
            _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _trim = None
    if _trim is None:
        return False
    try:
        _trim(0)
    except OSError as exc:  # pragma: no cover - a libc call that cannot fail in practice
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
