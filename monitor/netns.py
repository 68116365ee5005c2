"""Sockets and name lookups inside a Linux network namespace, for `netns: NAME` vantages.

The daemon itself stays where it is — the store, the exporter and the other vantages live in
its own namespace — and only a probe's sockets are made inside the vantage's namespace. A
socket belongs for life to the namespace it was created in, so only its creation has to
happen there: a thread that entered the namespace once with setns(2) creates them (Python
3.11 has no os.setns, hence ctypes). The socket is then used from the event loop as any other.

Name lookups (getaddrinfo) run on threads inside the namespace too, so glibc's queries leave
from there. Like `ip netns exec`, those threads see /etc/netns/NAME/* (resolv.conf, hosts,
nsswitch.conf) in place of /etc/*: each unshares its mount namespace, stops mounts from
propagating back to the host, and bind-mounts the files. Lookups may block for seconds, so
they have threads of their own and never delay socket creation.

Privileges: setns(CLONE_NEWNET) needs CAP_SYS_ADMIN over both the caller's and the
namespace's user namespace, and read access to /run/netns/NAME; unshare(CLONE_NEWNS) and the
bind mounts need CAP_SYS_ADMIN as well, and are done only when /etc/netns/NAME exists.
CAP_NET_ADMIN is not needed to use a namespace, only to make one and its interfaces
(`ip netns add`, veth pairs), which is the operator's job.

A namespace that is missing or cannot be entered is the vantage's failure, not a bug: the
calls raise OSError(ENETDOWN) saying why, which probes report as network_unreachable. A
namespace deleted and re-created under the same name is noticed (its inode changes) and
entered afresh. A thread inside a namespace keeps it alive, so `release` lets go of one that
is no longer configured.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_DIR = Path("/run/netns")  # where `ip netns add` pins namespaces
ETC_DIR = Path("/etc/netns")  # per-namespace /etc files, as `ip netns exec` uses them

# Lookups of one namespace running at once; more wait for a free thread.
LOOKUP_THREADS = 4
# Creating a socket takes microseconds; this only bounds the wait on a thread that never answers.
_SOCKET_WAIT_S = 5.0

_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SLAVE = 0x80000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


class NamespaceUnavailable(OSError):
    """The vantage's namespace cannot be used; errno ENETDOWN, the message says why."""

    def __init__(self, name: str, why: str):
        super().__init__(errno.ENETDOWN, f"network namespace {name!r} unavailable: {why}")


def new_socket(name: str, family: int, type: int) -> socket.socket:
    """A socket created inside namespace `name` (blocking until a thread there made it)."""
    sockets, _ = _namespace(name).threads()
    made = sockets.submit(socket.socket, family, type)
    try:
        return made.result(_SOCKET_WAIT_S)
    except TimeoutError:
        made.add_done_callback(_close_late_socket)
        raise


async def getaddrinfo(name: str, host: str, port: int | str | None, *, family: int = 0, type: int = 0) -> list[Any]:
    """socket.getaddrinfo as seen from inside namespace `name`, with its /etc/netns files."""
    _, lookups = _namespace(name).threads()
    return await asyncio.wrap_future(lookups.submit(socket.getaddrinfo, host, port, family, type))


def release(name: str) -> None:
    """Let the threads inside `name` finish what they run and leave it."""
    with _registry_lock:
        ns = _registry.pop(name, None)
    if ns is not None:
        ns.close()


def release_all_except(keep: Iterable[str]) -> None:
    """Release every namespace not in `keep` (after a reload dropped its vantages)."""
    keep = set(keep)
    with _registry_lock:
        gone = [name for name in _registry if name not in keep]
    for name in gone:
        release(name)


# ---------------------------------------------------------------------------------------------


_registry: dict[str, _Namespace] = {}
_registry_lock = threading.Lock()


def _namespace(name: str) -> _Namespace:
    with _registry_lock:
        ns = _registry.get(name)
        if ns is None:
            ns = _registry[name] = _Namespace(name)
        return ns


def _close_late_socket(made: Future[socket.socket]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


class _Namespace:
    """The threads inside one named namespace, replaced when the name points elsewhere."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._sockets: _Threads | None = None
        self._lookups: _Threads | None = None

    def threads(self) -> tuple[_Threads, _Threads]:
        """(socket maker, lookup threads) of the namespace the name points to now."""
        try:
            identity = _identity(self.name)
        except NamespaceUnavailable:
            self.close()  # a deleted namespace must not be kept alive by our threads
            raise
        with self._lock:
            if identity != self._identity or self._sockets is None or self._lookups is None:
                self._close_locked()
                self._identity = identity
                self._sockets = _Threads(self.name, identity, size=1, with_etc=False)
                self._lookups = _Threads(self.name, identity, size=LOOKUP_THREADS, with_etc=True)
            return self._sockets, self._lookups

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        for threads in (self._sockets, self._lookups):
            if threads is not None:
                threads.close()
        self._sockets = self._lookups = None
        self._identity = None


def _identity(name: str) -> tuple[int, int]:
    """(device, inode) of the namespace /run/netns/NAME is pinned to: changes when re-created."""
    path = RUN_DIR / name
    try:
        st = os.stat(path)
    except OSError as e:
        problem = e
    else:
        return st.st_dev, st.st_ino
    # Raised outside the except block: failure classification follows an exception's context,
    # and the ENOENT of a stat is not what went wrong for the probe.
    if isinstance(problem, FileNotFoundError):
        raise NamespaceUnavailable(name, f"{path} does not exist (create it with `ip netns add {name}`)")
    raise NamespaceUnavailable(name, f"{path}: {problem.strerror}")


class _Threads:
    """Up to `size` threads inside one namespace, running submitted calls in order.

    A thread enters the namespace when it starts and stays there until `close`. If it cannot
    enter, it fails the calls waiting at that moment with the reason and ends; the next call
    starts a thread that tries again (the namespace may have appeared, or been fixed).
    """

    def __init__(self, name: str, identity: tuple[int, int], *, size: int, with_etc: bool):
        self.name = name
        self.identity = identity
        self.size = size
        self.with_etc = with_etc
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._alive = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:  # replaced or released while the caller held on to us
                raise NamespaceUnavailable(self.name, "released while in use")
            self._calls.put((future, fn, args))
            if self._idle > 0:
                self._idle -= 1
            elif self._alive < self.size:
                self._alive += 1
                threading.Thread(target=self._serve, name=f"netns-{self.name}", daemon=True).start()
        return future

    def close(self) -> None:
        """Threads finish the calls already submitted, then leave (and so free the namespace)."""
        with self._lock:
            self._closed = True
            for _ in range(self._alive):
                self._calls.put(None)

    def _serve(self) -> None:
        try:
            _enter(self.name, self.identity, with_etc=self.with_etc)
        except OSError as exc:
            self._fail_waiting(exc)
            return
        while True:
            item = self._calls.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def _fail_waiting(self, exc: OSError) -> None:
        # No log line here: every probe that asked reports this reason as its failure detail.
        failure = exc if isinstance(exc, NamespaceUnavailable) else NamespaceUnavailable(self.name, str(exc))
        with self._lock:
            self._alive -= 1
            while True:
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    return
                if item is None:
                    continue
                future = item[0]
                if future.set_running_or_notify_cancel():
                    future.set_exception(failure)


def _enter(name: str, identity: tuple[int, int], *, with_etc: bool) -> None:
    """Move the calling thread into the namespace (and, for lookups, its /etc view)."""
    fd = os.open(RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            raise NamespaceUnavailable(name, "re-created while being entered")
        _check(_libc.setns(fd, _CLONE_NEWNET), "setns")
    finally:
        os.close(fd)
    if with_etc:
        _bind_etc(name)


def _bind_etc(name: str) -> None:
    """What `ip netns exec` does with /etc/netns/NAME, for this thread only."""
    etc = ETC_DIR / name
    if not etc.is_dir():
        return  # no per-namespace files: the host's resolv.conf, asked from inside the namespace
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # The thread has its own mount table now; as a slave, nothing mounted in it reaches the
    # host's. Without this the bind mounts below would replace /etc files for everyone.
    _check(_libc.mount(b"none", b"/", None, _MS_SLAVE | _MS_REC, None), "making / a slave mount")
    for entry in sorted(os.listdir(etc)):
        source, target = etc / entry, Path("/etc") / entry
        try:
            _check(_libc.mount(bytes(source), bytes(target), b"none", _MS_BIND, None), f"bind-mounting {source} on {target}")
        except OSError as exc:  # as ip netns exec: say so, use the rest
            log.warning("network namespace %r: %s", name, exc.strerror)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
