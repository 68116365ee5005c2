"""What /proc says of another process: CPU seconds and memory, for the benches that measure a
server or daemon they started (its own figures, not the bench's)."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU of `pid` so far, at 1/CLOCK_TICK s resolution."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def status_mib(pid: int | str, *keys: str) -> dict[str, float]:
    """Fields of /proc/PID/status given in kB (VmRSS, VmHWM, …), in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in keys:
            out[key] = int(rest.split()[0]) / 1024
    return out
