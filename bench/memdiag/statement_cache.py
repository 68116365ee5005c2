"""What Python's sqlite3 statement cache costs when statements change shape: one connection
runs `--statements` INSERT … RETURNING of 1–`--rows` rows × 20 columns, each with its own row
count (as the store's writer does: its batches' multi-row INSERT and `id IN (…)` lookup follow
the batch size), once with the driver's default cache (`cached_statements=128`) and once with
none, each in a fresh process; prints the process's RSS as it goes, side by side.

    python bench/memdiag/statement_cache.py [--statements 300] [--rows 500]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = 20


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def child(cached: int, statements: int, rows: int) -> None:
    names = ", ".join(f"c{i}" for i in range(COLUMNS))
    row = "(" + ", ".join("?" * COLUMNS) + ")"
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "t.db", cached_statements=cached)
        conn.execute(f"CREATE TABLE t (id INTEGER PRIMARY KEY, {names})")
        print(f"0 {rss_mib():.1f}", flush=True)
        sizes = random.Random(1).sample(range(1, rows + 1), statements)
        for done, n in enumerate(sizes, 1):
            conn.execute(f"INSERT INTO t ({names}) VALUES {', '.join([row] * n)} RETURNING id", [1] * (COLUMNS * n)).fetchall()
            if done % 50 == 0 or done == statements:
                print(f"{done} {rss_mib():.1f}", flush=True)
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--statements", type=int, default=300)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return child(args.child, args.statements, args.rows)
    runs = {}
    for cached in (128, 0):
        out = subprocess.run([sys.executable, __file__, "--child", str(cached), "--statements", str(args.statements), "--rows", str(args.rows)],
                             capture_output=True, text=True, check=True, timeout=600).stdout
        runs[cached] = dict(line.split() for line in out.splitlines())
    print(f"{'statements run':>15} {'RSS MiB, cache 128':>19} {'RSS MiB, no cache':>18}")
    for done in runs[128]:
        print(f"{done:>15} {runs[128][done]:>19} {runs[0][done]:>18}")


if __name__ == "__main__":
    main()
