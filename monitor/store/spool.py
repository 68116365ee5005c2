"""Results the store could not take yet, kept on local disk in the order they came.

While the database is unreachable the writer appends results here instead of holding them
in memory, and replays them, oldest first, once it answers again. A replay may safely be
repeated: results keep their ids and the insert skips ids already stored, so a replay cut
short by a crash or by a new outage stores nothing twice.

On disk: a directory of segments `NNNNNNNNNNNN.jsonl`, each up to `segment_results` lines of
ProbeResult.to_json() (which carries `id` and `agent`). `append` writes to the newest segment
and fsyncs before it returns. Replay reads the oldest segment whole and removes it once it is
stored. A segment left by an earlier run is never appended to — a crash may have torn its
last line, which is then skipped — only replayed. At most `max_results` are kept: beyond that
the oldest segments are deleted, counted and logged, so the disk is bounded as memory is.

One process per directory: an exclusive flock on `.lock`, released by the kernel when the
process ends, stops two agents from replaying and deleting each other's segments.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from monitor.model import ProbeResult

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"


class SpoolInUse(RuntimeError):
    """Another process holds the spool directory."""


@dataclass
class _Segment:
    path: Path
    count: int  # lines in it (results, or torn lines that replay will skip)


class Spool:
    def __init__(self, directory: str | Path, *, max_results: int, segment_results: int = 500):
        if max_results < 1 or segment_results < 1:
            raise ValueError("max_results and segment_results must be >= 1")
        self.directory = Path(directory)
        self.max_results = max_results
        self.segment_results = segment_results
        self.dropped = 0  # results deleted to stay within max_results, or unreadable on replay
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolInUse(f"spool directory {self.directory} is in use by another process (give each agent its own storage.spool_dir)") from None
        self._segments: deque[_Segment] = deque(
            _Segment(path, _count_lines(path))
            for path in sorted(self.directory.glob("*" + _SUFFIX))
            if path.stem.isdigit()  # ours; anything else in the directory is left alone
        )
        self._next = int(self._segments[-1].path.stem) + 1 if self._segments else 0
        self.pending = sum(s.count for s in self._segments)
        self._tail_fd: int | None = None  # the segment this run appends to, while it has room
        self._head: list[ProbeResult] | None = None  # the oldest segment, parsed, while it is replayed

    def append(self, results: list[ProbeResult]) -> None:
        """Add results after those already spooled; they are on disk when this returns.

        Raises OSError if the disk refuses (full, read-only): the caller still holds the results.
        """
        lines = []
        for r in results:
            try:
                lines.append(json.dumps(r.to_json(), separators=(",", ":")).encode() + b"\n")
            except (TypeError, ValueError) as exc:  # facts that are not JSON: a probe bug, costs only itself
                self._lose(1, f"cannot spool result {r.id} of check {r.check!r} ({exc})")
        if len(lines) > self.max_results:
            self._lose(len(lines) - self.max_results, f"more results at once than the spool holds ({self.max_results}); the oldest")
            lines = lines[-self.max_results :]
        self._make_room(len(lines))
        while lines:
            fd = self._tail()
            room = self.segment_results - self._segments[-1].count
            chunk, lines = lines[:room], lines[room:]
            try:
                _write_all(fd, b"".join(chunk))
                os.fsync(fd)
            except OSError:
                # What reached the file is counted from the file; the rest stays with the caller.
                self._seal()
                tail = self._segments[-1]
                self.pending += _count_lines(tail.path) - tail.count
                tail.count = _count_lines(tail.path)
                raise
            self._segments[-1].count += len(chunk)
            self.pending += len(chunk)

    def oldest(self) -> list[ProbeResult]:
        """The oldest segment's results, in order ([] if none is readable). The segment stays
        spooled until `remove_oldest`; asking again before that returns the same results."""
        if self._head is None:
            if not self._segments:
                return []
            if len(self._segments) == 1:
                self._seal()  # appends from now on go to a new segment, after this one
            self._head = self._read(self._segments[0])
        return self._head

    def remove_oldest(self) -> None:
        """Forget the oldest segment: its results are stored."""
        segment = self._segments.popleft()
        segment.path.unlink(missing_ok=True)
        self.pending -= segment.count
        self._head = None

    def close(self) -> None:
        self._seal()
        os.close(self._lock_fd)  # releases the flock

    # -----------------------------------------------------------------------------------------

    def _tail(self) -> int:
        """The fd of a segment of this run with room left, starting a new one if needed."""
        if self._tail_fd is not None and self._segments[-1].count >= self.segment_results:
            self._seal()
        if self._tail_fd is None:
            path = self.directory / f"{self._next:012d}{_SUFFIX}"
            self._next += 1
            self._tail_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._segments.append(_Segment(path, 0))
            _fsync_dir(self.directory)  # the new file's name must survive a crash too
        return self._tail_fd

    def _seal(self) -> None:
        if self._tail_fd is not None:
            os.close(self._tail_fd)
            self._tail_fd = None

    def _make_room(self, incoming: int) -> None:
        while self._segments and self.pending + incoming > self.max_results:
            if len(self._segments) == 1:
                self._seal()
            segment = self._segments[0]
            self._lose(segment.count, f"spool full ({self.max_results} results): the oldest segment")
            self.remove_oldest()

    def _lose(self, n: int, why: str) -> None:
        self.dropped += n
        log.error("%s: %d spooled results lost (%d so far)", why, n, self.dropped)

    def _read(self, segment: _Segment) -> list[ProbeResult]:
        try:
            data = segment.path.read_bytes()
        except OSError as exc:
            self._lose(segment.count, f"cannot read {segment.path} ({exc.strerror})")
            return []
        results = []
        for number, line in enumerate(data.splitlines(), 1):
            try:
                results.append(ProbeResult.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:  # a line torn by a crash, or edited
                self._lose(1, f"{segment.path}:{number}: unreadable result ({exc})")
        return results


def _count_lines(path: Path) -> int:
    """Lines in a segment, a last line without its newline (torn) included."""
    data = path.read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
