"""A git smart-HTTP server: git's own `git http-backend` run as a CGI program behind a small
HTTP/1.1 front, one request per connection, serving the bare repositories under a root.
`/portal/...` answers 200 with an HTML page instead, as a captive portal or a login wall does;
`/bomb/...` answers a gzip-encoded "advertisement" of ~64 KB that inflates to 64 MiB of zeros;
`/versions/...` a service line, then "version 1" pkt-lines in a chunked body that never ends.

`make_repositories(directory)` creates `repo.git` (one commit on main) and `empty.git`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

from tests.servers.dns_doh_hostile import gzip_bomb
from tests.servers.http import Request, _parse
from tests.servers.tcp import HOLD_MAX, TcpServer

GIT = shutil.which("git")
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull,
}
_PORTAL = b"<html><body>Please log in to use this network.</body></html>"


def make_repositories(directory: Path) -> Path:
    assert GIT is not None
    env = {**os.environ, **_GIT_ENV}
    directory.mkdir(parents=True, exist_ok=True)
    work = directory / "work"

    def git(*args: str, cwd: Path = directory) -> None:
        subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)

    git("init", "-q", "-b", "main", str(work))
    git("commit", "-q", "--allow-empty", "-m", "first", cwd=work)
    git("clone", "-q", "--bare", str(work), str(directory / "repo.git"))
    git("init", "-q", "--bare", str(directory / "empty.git"))
    return directory


class GitHttpServer(TcpServer):
    def __init__(self, root: Path, **kw):
        super().__init__(self._one_request, **kw)
        self.root = root
        self.requests: list[Request] = []

    def url(self, path: str) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://localhost:{self.port}{path}"

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = _parse(await reader.readuntil(b"\r\n\r\n"))
        self.requests.append(request)
        path, _, query = request.target.partition("?")
        if path.startswith("/portal/"):
            status, headers, body = 200, [("Content-Type", "text/html")], _PORTAL
        elif path.startswith("/versions/"):
            return await _versions_forever(writer)
        elif path.startswith("/bomb/"):
            headers = [("Content-Type", "application/x-git-upload-pack-advertisement"), ("Content-Encoding", "gzip")]
            status, body = 200, gzip_bomb()
        else:
            status, headers, body = await self._cgi(request.method, path, query)
        head = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}", "Connection: close"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        writer.close()

    async def _cgi(self, method: str, path: str, query: str) -> tuple[int, list[tuple[str, str]], bytes]:
        assert GIT is not None
        env = {
            **_GIT_ENV, "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
            "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        }
        process = await asyncio.create_subprocess_exec(
            GIT, "http-backend", env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        output, _ = await asyncio.wait_for(process.communicate(), HOLD_MAX)
        raw_head, body = _split_cgi(output)
        status, headers = 200, []
        for line in raw_head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        return status, headers, body


async def _versions_forever(writer: asyncio.StreamWriter) -> None:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nTransfer-Encoding: chunked\r\n\r\n"
    opening = b"001e# service=git-upload-pack\n0000"
    writer.write(head.encode() + b"%x\r\n%s\r\n" % (len(opening), opening))
    version = b"000eversion 1\n"
    piece = b"%x\r\n%s\r\n" % (len(version), version) * 1000  # a chunk per pkt-line
    until = asyncio.get_running_loop().time() + HOLD_MAX
    while asyncio.get_running_loop().time() < until:  # or until the client goes (a reset ends the write)
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)


def _split_cgi(output: bytes) -> tuple[bytes, bytes]:
    """CGI output: header lines (CRLF or LF), the first blank line, the body."""
    ends = [(output.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in output]
    if not ends:
        return output, b""
    at, separator = min(ends)
    return output[:at], output[at + len(separator) :]
