"""The agent process's C heap: fewer glibc malloc arenas, so a long run's RSS stays flat.

glibc gives each thread that allocates while another holds the main arena an arena of its own
(up to 8 per core), and memory freed in one arena serves only that arena's later requests. The
agent's threads come and go with load — the store pool (monitor/store/executor.py), asyncio's
default executor for the judge step without a store and for the spool — and each arena then
keeps megabytes of freed chunks that none of the others can use: a soak at ~100 probes/s showed
four executor arenas holding 22 MiB free out of 29 MiB (bench/RESULTS.md, "Soak (one hour)").
Two arenas keep contention low (the event loop plus one worker at a time) and that waste
bounded. It must be set before any thread allocates: glibc fixes the arena limit when it
first needs a second arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

# glibc's malloc.h
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """mallopt(M_ARENA_MAX, arenas) on glibc; True if set. An operator's MALLOC_ARENA_MAX in
    the environment wins (glibc read it at start-up), and other C libraries are left alone."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        ok = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError) as e:
        log.debug("mallopt unavailable: %s", e)
        return False
    log.debug("malloc arenas limited to %d: %s", arenas, ok)
    return ok
