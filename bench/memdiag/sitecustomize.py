"""A memory snapshot of a running agent on SIGUSR1, for bench/soak.py's diagnosis (not part of
monitor). Python imports this file at start-up when its directory is first on PYTHONPATH:

    python bench/soak.py ... --env PYTHONPATH=$PWD/bench/memdiag:$PWD --env MEMDIAG_DIR=/tmp/memdiag
    kill -USR1 <agent pid>; python bench/memdiag/summary.py /tmp/memdiag/<pid>-<n>

Each signal writes, as <MEMDIAG_DIR>/<pid>-<n>.*: glibc's malloc_info (XML, one <heap> per
arena), pymalloc's statistics (sys._debugmallocstats: its 1 MiB arenas hold Python's small
objects, outside malloc's heaps), and the threads' names with counts of live objects by type.
Nothing happens without MEMDIAG_DIR.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import os
import signal
import sys
import threading

DIRECTORY = os.environ.get("MEMDIAG_DIR")


def snapshot(signum: int, frame: object) -> None:
    snapshot.count += 1  # type: ignore[attr-defined]
    base = f"{DIRECTORY}/{os.getpid()}-{snapshot.count}"  # type: ignore[attr-defined]
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    fp = libc.fopen(f"{base}.malloc.xml".encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    fd = os.open(f"{base}.pymalloc.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    saved = os.dup(2)
    os.dup2(fd, 2)  # _debugmallocstats writes to C stderr
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    with open(f"{base}.objects.txt", "w") as f:
        f.write("threads: " + ", ".join(t.name for t in threading.enumerate()) + "\n")
        for name, n in counts.most_common(60):
            f.write(f"{n} {name}\n")


snapshot.count = 0  # type: ignore[attr-defined]
if DIRECTORY:
    signal.signal(signal.SIGUSR1, snapshot)
