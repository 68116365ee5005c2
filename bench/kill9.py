"""What SIGKILL loses: kill a running agent at N random moments and count, per kill, the
results it had measured (logged `result id=…`) that never reached the store.

    python bench/kill9.py [--kills 20] [--checks 8] [--interval 500ms] [--batch 500] [--flush 1s] [--seed 15]

The agent measures `--checks` tcp checks against a loopback listener every `--interval`,
writing to a SQLite store; each run is killed after a random 0.3–2.5 s; a last run, stopped
gracefully, replays anything spooled. Prints, per kill, results measured and lost and how old
the oldest lost one was, then the bound: lost ≤ one unflushed batch (≤ --batch, and nothing
measured more than one flush interval before the kill), and the store's integrity check.
The loop helpers are tests/crash_loop.py, shared with the kill -9 test.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import parse_duration  # noqa: E402
from tests.crash_loop import crash_config, integrity, kill_loop, lost_ages  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--checks", type=int, default=8)
    p.add_argument("--interval", default="500ms")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--flush", default="1s")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill9-") as tmp, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        directory = Path(tmp)
        config = crash_config(directory, listener.getsockname()[1], checks=args.checks, interval=args.interval,
                              batch_size=args.batch, flush_interval=args.flush)
        kills = kill_loop(directory, config, args.kills, seed=args.seed)
        ages = lost_ages(directory, kills)
        check = integrity(directory / "store.db")
        leftover = len(list((directory / "spool").glob("*.jsonl")))
    print(f"{'kill':>4} {'measured':>9} {'lost':>5}")
    for n, k in enumerate(kills, 1):
        print(f"{n:>4} {len(k.measured):>9} {len(k.lost):>5}")
    lost = [len(k.lost) for k in kills]
    flush = parse_duration(args.flush)
    print(f"\nkills {len(kills)}; lost per kill: median {statistics.median(lost):g}, max {max(lost)} "
          f"(batch_size {args.batch}); oldest lost result measured {max(ages, default=0):.2f} s before its kill "
          f"(flush_interval {flush:g} s); nominal rate {args.checks / parse_duration(args.interval):g} results/s")
    print(f"store integrity_check: {check}; spool segments left after the graceful run: {leftover}")
    print("bound holds" if max(lost) <= args.batch and max(ages, default=0) <= flush + 1.0 and check == "ok" and not leftover else "BOUND BROKEN")


if __name__ == "__main__":
    main()
