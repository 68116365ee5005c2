"""Summarise a snapshot written by bench/memdiag/sitecustomize.py: per glibc arena, the memory
it holds and how much of it is free; pymalloc's arenas; threads; the commonest live objects.

    python bench/memdiag/summary.py /tmp/memdiag/<pid>-<n> [/tmp/memdiag/<pid>-<m>]

With two snapshots of one process, the object counts that changed most between them.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MIB = 2**20


def arenas(base: str) -> None:
    root = ET.parse(f"{base}.malloc.xml").getroot()
    for heap in [*root.findall("heap"), root]:
        free = sum(int(t.get("size")) for t in heap.findall("total") if t.get("type") in ("fast", "rest"))
        held = sum(int(s.get("size")) for s in heap.findall("system") if s.get("type") == "current")
        label = f"arena {heap.get('nr')}" if heap is not root else "all arenas"
        print(f"  {label:12} holds {held / MIB:6.1f} MiB, of it free {free / MIB:6.1f} MiB")


def pymalloc(base: str) -> None:
    text = Path(f"{base}.pymalloc.txt").read_text()
    current = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    used = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    if current and used:
        print(f"  pymalloc: {current.group(1)} arenas of 1 MiB, {int(used.group(1).replace(',', '')) / MIB:.1f} MiB in objects")


def objects(base: str) -> dict[str, int]:
    lines = Path(f"{base}.objects.txt").read_text().splitlines()
    print(f"  {lines[0]}")
    return {name: int(n) for n, name in (line.split(" ", 1) for line in lines[1:])}


def main() -> None:
    counts = []
    for base in sys.argv[1:3]:
        print(base)
        arenas(base)
        pymalloc(base)
        counts.append(objects(base))
    if len(counts) == 2:
        first, second = counts
        grown = sorted(((second.get(k, 0) - first.get(k, 0), k) for k in set(first) | set(second)), reverse=True)
        print("  objects grown most: " + ", ".join(f"{k} {d:+d}" for d, k in grown[:12]))


if __name__ == "__main__":
    main()
