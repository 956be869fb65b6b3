"""release_free_memory hands freed heap pages back to the operating system (glibc)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from autoflow.native_memory import release_free_memory

GLIBC = platform.libc_ver()[0] == "glibc"

PROBE = """
import json, psutil
from autoflow.native_memory import release_free_memory
me = psutil.Process()
blocks = [bytearray(2048) for _ in range(60_000)]  # ~120 MiB through malloc (above pymalloc's 512 bytes)
keep = blocks[-1]                                   # pins the heap's top: free() alone cannot shrink it
del blocks
before = me.memory_info().rss
trimmed = release_free_memory()
after = me.memory_info().rss
print(json.dumps({"trimmed": trimmed, "released_mib": (before - after) / 2**20}))
"""


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; elsewhere release_free_memory does nothing")
def test_freed_memory_goes_back_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True).stdout
    found = json.loads(out)
    assert found["trimmed"] is True
    assert found["released_mib"] > 50, found


def test_can_be_called_again_and_again() -> None:
    assert release_free_memory() is GLIBC
    assert release_free_memory() is GLIBC
