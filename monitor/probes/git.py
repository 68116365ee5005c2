"""git probe: can this vantage fetch from a Git host over smart HTTP, and reach its SSH
service? Both parts in one result, so that "SSH refused while HTTPS works" is one line.

Smart HTTP: GET <url>/info/refs?service=git-upload-pack, as `git clone` begins (protocol v0:
no Git-Protocol header), following redirects as git does. The answer must be 200 with
Content-Type application/x-git-upload-pack-advertisement, open with the pkt-line
"# service=git-upload-pack" and a flush, and advertise at least one ref. Reading stops at
the first ref: a large host advertises megabytes of them.

SSH: TCP connect and the server's identification line (RFC 4253 §4.2: "SSH-2.0-…", or
"SSH-1.99-…", which speaks 2.0 too), which the server sends unasked; other lines may come
before it. No key exchange, no login. The wait for it is timed as ttfb.

The parts run concurrently, each with its own Measurement; the result's phases are the HTTP
part's (the SSH part's when there is no url), and facts.http / facts.ssh hold each part's
outcome with its phases and facts. The result fails if either part fails, with the HTTP
part's failure first. A peer that answers, but not as a git server or an SSH server would,
is http_protocol_error: the closed vocabulary has no SSH-specific class.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
import zlib
from typing import Awaitable, Callable, Iterator

import httpx

from monitor.config import GitCheck, split_host_port
from monitor.model import Failure, FailureClass, Operation, Phase, ProbeResult
from monitor.probes import http as _http
from monitor.probes._classify import classify
from monitor.probes._decoded import ACCEPT_ENCODING, BodyTooLarge, UnsupportedEncoding, decoded_chunks
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.vantage import Vantage

F = FailureClass

ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
_SERVICE_LINE = b"# service=git-upload-pack"
_ZERO_OID = (b"0" * 40, b"0" * 64)  # an empty repository advertises its capabilities on a zero id
_MAX_ADVERTISEMENT = 1 << 20  # read at most this much looking for the first ref
_USER_AGENT = "git/2.0 (monitor/0.1)"  # some hosts serve smart HTTP to git's agent only

_MAX_BANNER_BYTES = 8192  # lines before the identification line are allowed; not forever
_MAX_LINE = 255  # RFC 4253 §4.2, CR LF included
_RECV_SIZE = 4096

Part = Callable[[GitCheck, Measurement], Awaitable["Failure | None"]]


async def probe_git(check: GitCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    m = Measurement(check, vantage, deadline)
    parts: list[tuple[str, Part]] = []
    if check.url:
        parts.append(("http", _smart_http))
    if check.ssh:
        parts.append(("ssh", _ssh))
    measurements = [Measurement(check, vantage, deadline) for _ in parts]
    failures = await asyncio.gather(*(part(check, pm) for (_, part), pm in zip(parts, measurements)))
    for (name, _), pm, failure in zip(parts, measurements, failures):
        m.facts[name] = {
            "ok": failure is None,
            "failure": failure.to_json() if failure else None,
            "phases": {k: round(v, 6) for k, v in pm.phases.items()},
            **pm.facts,
        }
    m.phases.update(measurements[0].phases)
    return m.result(next((f for f in failures if f is not None), None))


# --- smart HTTP -------------------------------------------------------------------------------


async def _smart_http(check: GitCheck, m: Measurement) -> Failure | None:
    assert check.url is not None
    request = _http.request_for(
        check,
        check.url.rstrip("/") + "/info/refs?service=git-upload-pack",
        headers={"User-Agent": _USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
        auth=check.auth,
        expect_status=[200],
        max_body_bytes=_MAX_ADVERTISEMENT,
    )
    timing = _http.Timing(m)
    async with _http.open_client(m, timing, pinned_url=request.url) as client:
        try:
            response, redirects = await _http.follow(client, request, timing)
        except NetError as e:
            if e.tls is not None:
                m.facts.update(e.tls.facts())
            return e.failure
        except _http.EXCHANGE_ERRORS as exc:
            timing.end(complete=False)
            return _failed(exc, Operation.HTTP_ROUND_TRIP)
        try:
            _http.describe(response, redirects, m)
            failure = _http.unexpected_status(request, response.status_code)
            if failure is None:
                failure = _advertised_type(response, m)
            if failure is None:
                try:
                    failure = await _first_ref(response, m)
                except _http.EXCHANGE_ERRORS as exc:
                    failure = _failed(exc, Operation.READ)
                timing.end(complete=failure is None)
            return failure
        finally:
            await response.aclose()


def _advertised_type(response: httpx.Response, m: Measurement) -> Failure | None:
    content_type = response.headers.get("content-type", "")
    m.facts["content_type"] = content_type
    if content_type.split(";")[0].strip().lower() == ADVERTISEMENT_TYPE:
        return None
    return Failure(
        F.HTTP_PROTOCOL_ERROR,
        Operation.VERIFY,
        f"Content-Type {content_type or '(none)'!r}, not {ADVERTISEMENT_TYPE}: not a smart-HTTP git server (a dumb server, a login page, a portal?)",
    )


async def _first_ref(response: httpx.Response, m: Measurement) -> Failure | None:
    """Read the advertisement until its first ref is in (decoded — a host may gzip it — with
    the cap on the decoded bytes)."""
    body = bytearray()  # appended in place: a server sending tiny chunks costs no copies
    try:
        async with contextlib.aclosing(decoded_chunks(response, _MAX_ADVERTISEMENT)) as chunks:
            async for chunk in chunks:
                body += chunk
                found = _parse_advertisement(body, complete=False)
                if found is not None:
                    return _describe_ref(found, m)
    except BodyTooLarge:
        return _not_git(f"no ref advertised in the first {_MAX_ADVERTISEMENT} bytes")
    except (UnsupportedEncoding, zlib.error) as e:
        return Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"undecodable advertisement: {e}")
    return _describe_ref(_parse_advertisement(body, complete=True), m)


class _Malformed(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.failure = _not_git(detail)


def _not_git(detail: str) -> Failure:
    return Failure(F.HTTP_PROTOCOL_ERROR, Operation.VERIFY, detail)


def _describe_ref(found: tuple[str, str | None] | Failure | None, m: Measurement) -> Failure | None:
    if isinstance(found, tuple):
        m.facts["first_ref"], m.facts["git_agent"] = found
        return None
    return found


def _parse_advertisement(body: bytes | bytearray, *, complete: bool) -> tuple[str, str | None] | Failure | None:
    """(first ref name, server agent) once a ref is in; a Failure if the body is not a ref
    advertisement or advertises none; None if more must be read (only while not `complete`)."""
    # Only the first lines matter: the service line, a flush, perhaps "version 1", the first
    # ref. Parsing no further keeps each call short however much has come in: it is called
    # once per chunk.
    try:
        lines = list(itertools.islice(_pkt_lines(body), 4))
    except _Malformed as e:
        return e.failure
    if lines and (lines[0] is None or lines[0].rstrip(b"\n") != _SERVICE_LINE):
        return _not_git(f"advertisement does not open with '# service=git-upload-pack': {(lines[0] or b'0000')[:60]!r}")
    if len(lines) >= 2 and lines[1] is not None:
        return _not_git("no flush-pkt after the service line")
    for i, line in enumerate(lines[2:], start=2):
        if line is None:  # the flush that ends the list, before any ref
            return _not_git("no refs advertised (an empty repository?)")
        if i == 2 and line.startswith(b"version "):  # protocol v1 announces itself (once), then advertises as v0
            continue
        return _ref(line)
    return _not_git("advertisement ended before any ref") if complete else None


def _ref(line: bytes) -> tuple[str, str | None] | Failure:
    """'<oid> <name>\\0<capabilities>' (capabilities on the first ref only)."""
    ref, _, capabilities = line.rstrip(b"\n").partition(b"\0")
    oid, _, name = ref.partition(b" ")
    if oid in _ZERO_OID and name == b"capabilities^{}":
        return _not_git("no refs advertised (an empty repository)")
    if len(oid) not in (40, 64) or not name:
        return _not_git(f"not a ref line: {line[:60]!r}")
    agent = next((c[len(b"agent="):].decode("ascii", "replace") for c in capabilities.split() if c.startswith(b"agent=")), None)
    return name.decode("utf-8", "replace"), agent


def _pkt_lines(body: bytes | bytearray) -> Iterator[bytes | None]:
    """The complete pkt-lines at the start of `body`; None stands for a flush-pkt."""
    pos = 0
    while pos + 4 <= len(body):  # each turn advances at least 4 bytes
        try:
            size = int(body[pos : pos + 4].decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            raise _Malformed(f"not a pkt-line length: {body[pos:pos + 4]!r}") from None
        if size == 0:
            yield None
            pos += 4
            continue
        if size < 4:
            raise _Malformed(f"unexpected special pkt-line {size:04x} in a v0 advertisement")
        if pos + size > len(body):
            return
        yield bytes(body[pos + 4 : pos + size])
        pos += size


# --- SSH ----------------------------------------------------------------------------------------


async def _ssh(check: GitCheck, m: Measurement) -> Failure | None:
    assert check.ssh is not None
    host, port = split_host_port(check.ssh)
    try:
        sock, _ = await m.open(host, port, None, then=Operation.READ)
    except NetError as e:
        return e.failure
    try:
        return await _identification(sock, m)
    finally:
        sock.close()


async def _identification(sock: socket.socket, m: Measurement) -> Failure | None:
    loop = asyncio.get_running_loop()
    limit = m.limit("read")
    received = b""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            started = time.perf_counter()
            # Each read brings at least one byte (or ends the loop), and the loop ends past the cap.
            while len(received) <= _MAX_BANNER_BYTES:
                data = await loop.sock_recv(sock, _RECV_SIZE)
                if not data:
                    m.add(Phase.TTFB, time.perf_counter() - started)
                    return Failure(F.EOF_ERROR, Operation.READ, f"connection closed before the SSH identification line{_got(received)}")
                received += data
                found = _banner(received)
                if found is not None:
                    m.add(Phase.TTFB, time.perf_counter() - started)
                    return found if isinstance(found, Failure) else _describe_banner(found, m)
    except TimeoutError:
        m.add(Phase.TTFB, time.perf_counter() - started)
        return Failure(F.GENERIC_TIMEOUT_ERROR, Operation.READ, f"no SSH identification line within {limit:.3g}s{_got(received)}")
    except OSError as exc:
        m.add(Phase.TTFB, time.perf_counter() - started)
        return _failed(exc, Operation.READ)
    m.add(Phase.TTFB, time.perf_counter() - started)
    return Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"no SSH identification line in the first {_MAX_BANNER_BYTES} bytes: not an SSH server{_got(received)}")


def _banner(received: bytes) -> str | Failure | None:
    """The identification line once a complete one is in; a Failure if what came is not SSH."""
    *lines, partial = received.split(b"\n")
    for line in lines:
        if len(line) + 1 > _MAX_LINE:
            return Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"line of {len(line) + 1} bytes before any SSH identification: not an SSH server{_got(received)}")
        if line.startswith(b"SSH-"):
            text = line.rstrip(b"\r").decode("latin-1")
            if not text.startswith(("SSH-2.0-", "SSH-1.99-")):
                return Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"server does not speak SSH 2.0: {text[:80]!r}")
            return text
    if len(partial) + 1 > _MAX_LINE:
        return Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"no line end within {_MAX_LINE} bytes: not an SSH server{_got(received)}")
    return None


def _describe_banner(banner: str, m: Measurement) -> None:
    m.facts["banner"] = banner


def _got(received: bytes) -> str:
    return f" (got {received[:60]!r})" if received else ""


def _failed(exc: BaseException, operation: Operation) -> Failure:
    cls, detail = classify(exc)
    return Failure(cls, operation, detail)
