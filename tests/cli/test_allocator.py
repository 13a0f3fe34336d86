"""The `mlvc` process caps glibc's malloc arenas and fixes its mmap threshold (cli/allocator.py):
observed through glibc's own report (`malloc_info`) in a fresh interpreter."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

PROBE = r"""
import ctypes, os, re, sys, tempfile, threading
if sys.argv[1] == "tuned":
    from mlvc.cli.allocator import tune_allocator
    tune_allocator()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
barrier = threading.Barrier(8)

def work():
    barrier.wait()  # eight threads allocating at once: each gets an arena of its own unless capped
    bufs = [bytearray(3000) for _ in range(200)]
    barrier.wait()
    del bufs

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()


def report():
    path = tempfile.mktemp()
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    return text

def mapped():
    return int(re.search(r'<total type="mmap" count="(\d+)"', report()).group(1))

big = bytearray(4 << 20)
del big  # glibc's default raises its mmap threshold past 4 MiB here...
before = mapped()
big = bytearray(4 << 20)  # ...so this one comes from the heap and stays there when freed
print(report().count("<heap nr="), mapped() - before)
"""


def probe(mode: str, **env: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return int(out[0]), int(out[1])


def test_the_mlvc_process_shares_two_arenas_and_maps_large_buffers_while_a_plain_one_does_not() -> None:
    arenas, mapped = probe("plain")
    assert arenas > 2 and mapped == 0  # the fragmentation the settings avoid
    arenas, mapped = probe("tuned")
    assert arenas <= 2 and mapped == 1


def test_a_users_own_malloc_settings_win() -> None:
    arenas, _mapped = probe("tuned", MALLOC_ARENA_MAX="4")
    assert arenas == 4

