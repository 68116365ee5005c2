"""Fold a py-spy raw profile (`py-spy record --native -f raw`) into where a probe's time goes.

    python bench/fold_pyspy.py PROFILE.raw [--within run_ours] [--top 15]

Only samples whose stack contains `--within` count (default: bench/probe_cost.py's monitor
side, so the bench's own blackbox client threads are left out). Each sample goes to the first
matching category, in this order: OpenSSL's handshake (`do_handshake`, all below it), OpenSSL
record reads/writes, a system call (the innermost frame is libc's send/recv/connect/close/
epoll/socket), then by the innermost Python frame: the HTTP libraries (httpx, httpcore, h11,
anyio, sniffio, http.cookiejar, urllib), asyncio and selectors, monitor itself, other. py-spy
samples a thread that is running or runnable, so a system call's share includes time the
thread waited for a CPU on a loaded machine: read the Python categories as CPU, the system
calls as an upper bound. Then the `--top` innermost Python frames outside OpenSSL.
"""

from __future__ import annotations

import argparse
import collections

SYSCALLS = ("send", "recv", "connect", "close", "epoll_wait", "epoll_ctl", "socket", "__libc_send", "__libc_recv", "getsockopt", "setsockopt")
LIBRARIES = ("httpx/", "httpcore/", "h11/", "anyio/", "sniffio/", "http/cookiejar", "urllib/")


def category(frames: list[str]) -> str:
    stack = ";".join(frames)
    if "do_handshake" in stack:
        return "OpenSSL handshake (do_handshake)"
    if "SSLObject.read" in stack or "SSLObject.write" in stack:
        return "OpenSSL records (SSLObject.read/write)"
    if frames[-1].split(" (")[0] in SYSCALLS:
        return "system calls (send/recv/connect/close/epoll)"
    python = [f for f in frames if ".py:" in f]
    inner = python[-1] if python else ""
    if any(lib in inner for lib in LIBRARIES):
        return "HTTP libraries (httpx, httpcore, h11, anyio, sniffio)"
    if "asyncio/" in inner or "selectors.py" in inner:
        return "asyncio event loop"
    if "monitor/" in inner:
        return "monitor (our Python)"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile")
    parser.add_argument("--within", default="run_ours")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    categories: collections.Counter[str] = collections.Counter()
    inner: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.profile) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if args.within not in stack:
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            what = category(frames)
            categories[what] += n
            if not what.startswith("OpenSSL"):
                python = [f for f in frames if ".py:" in f]
                if python:
                    inner[python[-1].split(" (")[0] + " (" + python[-1].rsplit("/", 1)[-1]] += n
    print(f"{total} samples within {args.within!r}")
    for what, n in categories.most_common():
        print(f"{100 * n / total:6.1f}%  {what}")
    print(f"\ninnermost Python frame, outside OpenSSL (top {args.top})")
    for what, n in inner.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {what}")


if __name__ == "__main__":
    main()
