"""A PostgreSQL server of the test's own: `initdb` in a temporary directory, on a free port.

Outage tests stop, pause (SIGSTOP) and restart *this* server, never the machine's shared one
on 5432, which other tests and other people use. It runs as the `postgres` system user
(initdb refuses root), listens on 127.0.0.1 only, trusts local connections, and is stopped
and deleted when the context ends, whatever the test did to it.

    with private_postgres() as pg:
        url = pg.url            # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        pg.stop(); pg.start()   # a real outage
        pg.pause(); pg.resume() # a server that accepts nothing and answers nothing
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_WAIT = 60  # s: the longest start, stop or initdb may take


def _bin_dir() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "initdb").is_file()), key=lambda p: float(p.parent.name)) if root.is_dir() else []
    return versions[-1] if versions else None


def private_postgres_unavailable() -> str | None:
    """None if a private server can be made here, else why not (for `require`)."""
    if os.geteuid() != 0:
        return "a private PostgreSQL server needs root (to run initdb as the postgres user)"
    if _bin_dir() is None:
        return "a private PostgreSQL server needs the server binaries (Debian: postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "a private PostgreSQL server needs the postgres system user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivatePostgres:
    directory: Path
    port: int
    bin_dir: Path

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _as_postgres(self, *args: str, timeout: float = _WAIT + 15) -> subprocess.CompletedProcess[str]:
        # (longer than pg_ctl's own -t, so that pg_ctl says what it waited for)
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout, check=False)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        done = self._pg_ctl("-w", "-t", str(_WAIT), "-l", str(self.directory / "server.log"), "-o", options, "start")
        assert done.returncode == 0, f"pg_ctl start: {done.stdout}{done.stderr}\n{self.log()}"

    def stop(self) -> None:
        self.resume()  # a paused server cannot stop
        done = self._pg_ctl("-w", "-t", str(_WAIT), "-m", "fast", "stop")
        if done.returncode != 0 and self.running():
            # A fast stop waits for every backend to end; once, in a full parallel run, it waited
            # over a minute right after the torture test thawed its relay (cause not found). The
            # tests want the server gone (an outage), not a clean checkpoint: stop it outright.
            done = self._pg_ctl("-w", "-t", str(_WAIT), "-m", "immediate", "stop")
        assert done.returncode == 0, f"pg_ctl stop: {done.stdout}{done.stderr}\n{self.log()[-4000:]}"

    def running(self) -> bool:
        return self._pg_ctl("status").returncode == 0

    def pid(self) -> int | None:
        """The postmaster's pid, from its pid file (first line)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _signal_all(self, sig: signal.Signals) -> None:
        """`sig` to the postmaster and every backend it forked (the children of that pid)."""
        pid = self.pid()
        if pid is None:
            return
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
        for p in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def log(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running private server in a new directory; stopped and removed at the end.

    The directory is made directly under the system's temp dir: pytest's tmp_path lives in a
    root-only tree the postgres user cannot enter."""
    bin_dir = _bin_dir()
    assert bin_dir is not None, private_postgres_unavailable()
    directory = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    directory.chmod(0o700)
    pg = PrivatePostgres(directory, _free_port(), bin_dir)
    done = pg._as_postgres(str(bin_dir / "initdb"), "-D", str(pg.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    assert done.returncode == 0, f"initdb: {done.stdout}{done.stderr}"
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.resume()
            if pg.running():
                pg._pg_ctl("-w", "-t", str(_WAIT), "-m", "immediate", "stop")
        deadline = time.monotonic() + 10
        while pg.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)
