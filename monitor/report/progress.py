"""A progress bar on stderr while a report is computed — only when stderr is a terminal, so
scripts and logs see nothing."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, steps: int, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.steps = max(1, steps)
        self.done = 0
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        """Start the next step, called `label`."""
        if not self.enabled:
            return
        filled = WIDTH * min(self.done, self.steps) // self.steps
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r[{bar}] {100 * self.done // self.steps:3d}% {label[:50]:<50}")
        self.stream.flush()
        self.done += 1

    def finish(self) -> None:
        if self.enabled:
            self.stream.write(f"\r[{'#' * WIDTH}] 100% done in {time.monotonic() - self.started:.1f} s{' ' * 40}\n")
            self.stream.flush()
