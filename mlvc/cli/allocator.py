"""Allocator settings for the `mlvc` process (glibc only; the library never changes them).

A transfer copies many small objects on several threads.  glibc gives each thread its own
malloc arena and raises its mmap threshold after every large buffer is freed (up to 32 MiB),
so freed payloads and 8 MiB read buffers stay in the arenas as fragments: a 200,000-file fetch
from S3 grew steadily to 205 MiB.  Two shared arenas and a fixed 1 MiB mmap threshold (large
buffers go back to the system when freed) keep it flat near 158 MiB; `add` of a 1 GiB
checkpoint takes the same time either way (measured; see benchmarks/README.md).

A user's own MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ wins over ours.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 1 << 20


def _is_glibc() -> bool:
    # confstr answers from the C library itself; platform.libc_ver() reads the Python executable
    # (6.5 ms of every start with Debian's statically linked python3.11)
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not a glibc name
        return False


def tune_allocator() -> None:
    if not _is_glibc():
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # a libc without mallopt: its defaults stand
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, ARENAS)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
