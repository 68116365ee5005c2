"""monitor.memory: the glibc arena limit, seen in glibc's own malloc_info of a fresh process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

# Threads that each malloc (blocks above pymalloc's 512 bytes, below the mmap threshold), then
# glibc's count of heaps (arenas); the limit is applied first when the argument is "limit".
SCRIPT = textwrap.dedent("""
    import ctypes, sys, tempfile, threading
    from monitor.memory import limit_malloc_arenas
    applied = limit_malloc_arenas() if sys.argv[1] == "limit" else None
    barrier = threading.Barrier(6)
    def work():
        barrier.wait()
        keep = [bytearray(4000) for _ in range(2000)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        print(applied, open(f.name).read().count("<heap nr="))
""")


def heaps(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=environ, timeout=60)
    applied, count = out.stdout.split()
    return applied, int(count)


def test_the_limit_keeps_a_threaded_process_to_two_arenas() -> None:
    assert heaps("limit") == ("True", 2)
    # Without it, each of the six threads gets an arena of its own (glibc allows 8 per core).
    assert heaps("none")[1] > 2


def test_an_operators_malloc_arena_max_wins() -> None:
    applied, count = heaps("limit", MALLOC_ARENA_MAX="3")
    assert applied == "False"
    assert count == 3
