"""Database calls run on threads of their own, never on asyncio's default executor.

The default executor also serves `loop.getaddrinfo`: with its threads blocked on a database
that does not answer, a probe's name resolution would wait behind them and fail as a
timeout that is not the network's. So every blocking database call of the daemon — the
writer's batches, the judge step, retention, migrations, alert state — goes through
`run_in_store_thread`, on a small bounded pool. The engine's timeouts (monitor/store/engine.py)
bound how long each call can hold a thread; `timeout` bounds how long a caller waits for
one (the thread itself finishes, or fails, on the engine's timeouts).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Enough for the writer, a few judge steps and a background task at once; more would only
# queue more work on a database that is already slow.
STORE_THREADS = 4

_pool: list[ThreadPoolExecutor] = []


def store_executor() -> ThreadPoolExecutor:
    if not _pool:
        _pool.append(ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="store"))
    return _pool[0]


async def run_in_store_thread(fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on a store thread. With `timeout`, TimeoutError once it has waited
    that long — a call still queued is then cancelled; one already running finishes on its own."""
    future = asyncio.get_running_loop().run_in_executor(store_executor(), functools.partial(fn, *args, **kwargs))
    if timeout is None:
        return await future
    return await asyncio.wait_for(future, timeout)
