"""HTTP probe: one request, redirects followed up to max_redirects, timed by phase.

httpx and httpcore speak HTTP; the connections under them come from `Backend`, which opens
them with the _net primitives. So resolve/connect/TLS are timed as tightly as in the tcp and
tls probes, sockets come from the vantage, and `connect_to` pins the check's own host the way
curl --resolve does (a redirect to another host resolves that host normally).

Deadlines: connect_timeout and tls_timeout bound those steps; read_timeout bounds every wait
for the server (no byte of the response for that long is a timeout), as httpx's read timeout
does; the check's timeout caps all of it. A failure's operation is the stage it happened in:
`http_round_trip` until the response headers are in, `read` while the body is read.
Bodies are counted as they cross the wire, never decoded, never read past max_body_bytes;
a redirect's body is drained up to the same cap so its connection can carry the next hop.
Phases of several hops add up (blackbox_exporter sums them the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import socket
import ssl
import time
from typing import Any, Sequence

import httpcore
import httpx

from monitor.config import Check, HttpCheck
from monitor.credentials import CredentialsUnavailable
from monitor.model import Failure, FailureClass, Operation, Phase, ProbeResult
from monitor.probes._classify import classify
from monitor.probes._measure import Measurement, reset_after_connect
from monitor.probes._net import NetError, TLSConn, is_ip
from monitor.redact import redact_url
from monitor.vantage import Vantage

USER_AGENT = "monitor/0.1"

# What the network or the server can make httpx raise; anything else is a bug of ours.
EXCHANGE_ERRORS = (httpx.HTTPError, OSError)


def request_for(check: Check, url: str, **fields: Any) -> HttpCheck:
    """The HttpCheck that `exchange` takes, for a request another kind makes (git's ref
    advertisement, a request through a proxy): it shares `check`'s name and deadlines."""
    return HttpCheck(
        name=check.name,
        kind="http",
        url=url,
        interval=check.interval,
        timeout=check.timeout,
        vantages=check.vantages,
        connect_timeout=check.connect_timeout,
        tls_timeout=check.tls_timeout,
        read_timeout=check.read_timeout,
        **fields,
    )


async def probe_http(check: HttpCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    m = Measurement(check, vantage, deadline)
    timing = Timing(m)
    async with open_client(m, timing, pinned_url=check.url, connect_to=check.connect_to, http2=check.http2) as client:
        failure = await exchange(client, check, m, timing)
    return m.result(failure)


def request_headers(check: HttpCheck) -> dict[str, str]:
    """The check's headers plus its credentials, read now (CredentialsUnavailable if they cannot be)."""
    if check.auth is None:
        return check.headers
    name, value = check.auth.header()
    return {**check.headers, name: value}


def credentials_failure(e: CredentialsUnavailable) -> Failure:
    """Credentials the config names could not be read: this agent's own problem, not the network's."""
    return Failure(FailureClass.INTERNAL_ERROR, Operation.HTTP_ROUND_TRIP, f"{e} (this agent's configuration)")


async def exchange(client: httpx.AsyncClient, check: HttpCheck, m: Measurement, timing: Timing) -> Failure | None:
    try:
        response, redirects = await follow(client, check, timing)
    except CredentialsUnavailable as e:
        return credentials_failure(e)
    except NetError as e:  # connect or TLS, from our backend, passed through httpx untouched
        if e.tls is not None:
            m.facts.update(e.tls.facts())
        return e.failure
    except EXCHANGE_ERRORS as exc:
        timing.end(complete=False)
        return _failed(exc, Operation.HTTP_ROUND_TRIP)
    try:
        describe(response, redirects, m)
        failure = unexpected_status(check, response.status_code)
        if failure is None:  # the body of an unexpected status is not read
            try:
                failure = await _read_body(response, check, m)
            except EXCHANGE_ERRORS as exc:
                failure = _failed(exc, Operation.READ)
            timing.end(complete=failure is None)
        return failure
    finally:
        await response.aclose()


async def follow(client: httpx.AsyncClient, check: HttpCheck, timing: Timing) -> tuple[httpx.Response, int]:
    """The final response (headers read, body not yet) and how many redirects led to it."""
    # httpx drops Authorization on a redirect to another origin, as curl and browsers do.
    # Timing is httpcore's trace hook only over HTTP/2 (see Timing); over HTTP/1 our streams
    # time the exchange, and a hook httpcore would await a dozen times per request is not set.
    extensions = {"trace": timing} if check.http2 else {}
    request = client.build_request(check.method, check.url, headers=request_headers(check), extensions=extensions)
    response = await client.send(request, stream=True)
    redirects = 0
    while check.follow_redirects and response.next_request is not None:  # at most max_redirects turns
        await _drain(response, check.max_body_bytes)
        await response.aclose()
        if redirects == check.max_redirects:
            raise httpx.TooManyRedirects(f"too many redirects (more than {check.max_redirects})", request=request)
        redirects += 1
        timing.next_hop()
        response = await client.send(response.next_request, stream=True)
    return response, redirects


async def _drain(response: httpx.Response, cap: int) -> None:
    """Read a redirect's (usually empty) body, up to the cap, so that its connection can be
    reused for the next hop as curl and browsers do; past the cap it is simply closed."""
    drained = 0
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:  # each chunk >= 1 byte, so at most cap + 1 turns
            drained += len(chunk)
            if drained > cap:
                return


def describe(response: httpx.Response, redirects: int, m: Measurement) -> None:
    m.facts.update(
        status_code=response.status_code,
        http_version=response.http_version,
        final_url=redact_url(str(response.url)),
        redirects=redirects,
    )
    stream = response.extensions.get("network_stream")
    if isinstance(stream, Stream):  # the connection that carried the final response
        if is_ip(stream.ip):  # through a proxy that resolved the name, the address is unknown here
            m.facts["ip"] = stream.ip
        if stream.tls is not None:
            m.facts.update(tls_version=stream.tls.info.version, cert_not_after=stream.tls.info.not_after)


def unexpected_status(check: HttpCheck, status: int) -> Failure | None:
    expected = (status in check.expect_status) if check.expect_status else (200 <= status < 300)
    if expected:
        return None
    wanted = ", ".join(map(str, check.expect_status)) or "2xx"
    return Failure(FailureClass.HTTP_STATUS, Operation.HTTP_ROUND_TRIP, f"status {status}, expected {wanted}")


async def _read_body(response: httpx.Response, check: HttpCheck, m: Measurement) -> Failure | None:
    cap = check.max_body_bytes
    m.facts["body_bytes"] = 0
    declared = response.headers.get("content-length", "")
    if check.method != "HEAD" and declared.isdigit() and int(declared) > cap:
        return _too_large(f"Content-Length {declared} exceeds max_body_bytes {cap}")
    received = 0
    # Raw, not decoded: we count what crossed the wire and never inflate a compressed body.
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:  # each chunk >= 1 byte, so at most cap + 1 turns
            received += len(chunk)
            m.facts["body_bytes"] = received
            if received > cap:
                return _too_large(f"body exceeds max_body_bytes {cap}")
    return None


def _failed(exc: BaseException, operation: Operation) -> Failure:
    cls, detail = classify(exc)
    return Failure(cls, operation, detail)


def _too_large(detail: str) -> Failure:
    return Failure(FailureClass.RESPONSE_TOO_LARGE, Operation.READ, detail)


class Timing:
    """Times each hop as curl does, from the socket's side: ttfb from the request's first byte
    going out to the response's first byte coming in; transfer from there to the body's last
    byte coming in. Our streams report these moments as they read and write, so the time
    Python spends parsing after the last byte is not counted as transfer.

    Over HTTP/2 the first bytes in are the server's SETTINGS, not the response, and a read
    may carry several streams: there the response's start comes from httpcore's `trace` hook
    (this object is that hook) and the body's end is when we finish reading it.
    """

    def __init__(self, m: Measurement):
        self._m = m
        self._sent_at: float | None = None
        self._first_byte_at: float | None = None
        self._last_byte_at: float | None = None

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "http2.receive_response_headers.complete":
            self._response_started(time.perf_counter())

    def sending(self) -> None:
        if self._sent_at is None:  # the hop's first write; a request body may follow
            self._sent_at = time.perf_counter()

    def received(self, at: float) -> None:
        """An HTTP/1 stream read bytes at `at`."""
        self._response_started(at)
        if self._first_byte_at is not None:
            self._last_byte_at = at

    def _response_started(self, at: float) -> None:
        if self._sent_at is not None and self._first_byte_at is None:
            self._first_byte_at = at
            self._m.add(Phase.TTFB, at - self._sent_at)

    def next_hop(self) -> None:
        """A redirect: its body is not timed, the next request starts a new hop."""
        self._sent_at = self._first_byte_at = self._last_byte_at = None

    def end(self, *, complete: bool) -> None:
        """The exchange stopped: the body is complete, or the attempt failed or was cut (then
        the open phase runs until now)."""
        now = time.perf_counter()
        if self._first_byte_at is not None:
            last = self._last_byte_at if complete and self._last_byte_at is not None else now
            self._m.add(Phase.TRANSFER, last - self._first_byte_at)
        elif self._sent_at is not None:
            self._m.add(Phase.TTFB, now - self._sent_at)
        self.next_hop()


# ---------------------------------------------------------------------------------------------
# httpcore plumbing: our connections under httpx.


def open_client(
    m: Measurement,
    timing: Timing | None = None,
    *,
    pinned_url: str | None = None,
    connect_to: str | None = None,
    http2: bool = False,
    forward_proxy: tuple[str, tuple[str, str] | None] | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose connections are ours: opened by `m` (vantage, proxies, timed
    resolve/connect/TLS), with ttfb/transfer reported to `timing` when given. This is the one
    HTTP stack of monitor: the http, goproxy, git and proxy probes and DoH all use it.

    `connect_to` pins `pinned_url`'s host to an address (curl --resolve); `forward_proxy`
    (proxy URL, credentials or None) sends requests through a plain forward proxy."""
    context = m.vantage.verify_context
    backend = Backend(m, timing, pinned_url=pinned_url, connect_to=connect_to, http2=http2)
    transport = httpx.AsyncHTTPTransport(verify=context, http2=http2, trust_env=False)
    # httpx.AsyncHTTPTransport takes no network backend; its httpcore pool is what takes one.
    if forward_proxy is not None:
        proxy_url, credentials = forward_proxy
        transport._pool = httpcore.AsyncHTTPProxy(proxy_url=proxy_url, proxy_auth=credentials, ssl_context=context, network_backend=backend)
    else:
        transport._pool = httpcore.AsyncConnectionPool(ssl_context=context, http2=http2, network_backend=backend)
    # No httpx timeouts: our streams enforce the check's (Measurement.limit). No env proxies or
    # netrc: the vantage decides the path.
    return httpx.AsyncClient(transport=transport, headers={"User-Agent": USER_AGENT}, timeout=None, trust_env=False)


class Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, m: Measurement, timing: Timing | None, *, pinned_url: str | None, connect_to: str | None, http2: bool):
        self._m = m
        self._timing = timing
        self._pinned_host = _raw_host(pinned_url) if pinned_url else None
        self._connect_to = connect_to
        self._alpn = ["h2", "http/1.1"] if http2 else ["http/1.1"]  # what httpcore offers

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        connect_to = self._connect_to if host == self._pinned_host else None
        try:
            # Whether TLS or the request comes next is httpcore's to say: a reset that followed
            # the handshake is reported by the stream, under the operation that uses it first.
            sock, ip = await self._m.open(host, port, connect_to, then=Operation.CONNECT)
        except NetError as e:
            if reset_after_connect(e):
                return _ResetStream(e)
            raise
        return Stream(sock, ip, self._m, self._timing, self._alpn)


@functools.lru_cache(maxsize=1024)
def _raw_host(url: str) -> str:
    """The URL's host as httpcore names it to connect_tcp (IDNA-encoded); a check's URL is
    parsed once, not on every run."""
    return httpx.URL(url).raw_host.decode("ascii")


class _ResetStream(httpcore.AsyncNetworkStream):
    """A connection reset as soon as it was made: the first use fails with that reset, named
    by what it was used for (the TLS handshake, or the HTTP exchange)."""

    def __init__(self, reset: NetError):
        self._reset = reset

    def _fail(self, operation: Operation) -> NetError:
        return NetError(Failure(self._reset.failure.cls, operation, self._reset.failure.detail), self._reset.elapsed)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        raise self._fail(Operation.HTTP_ROUND_TRIP)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        raise self._fail(Operation.HTTP_ROUND_TRIP)

    async def aclose(self) -> None:
        pass

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise self._fail(Operation.TLS_HANDSHAKE)

    def get_extra_info(self, info: str) -> Any:
        return None


class Stream(httpcore.AsyncNetworkStream):
    """One of our connections as httpcore sees it: plain, or TLS once start_tls is done.
    httpcore's timeout arguments are ignored: the Measurement's limits apply."""

    def __init__(self, sock: socket.socket, ip: str, m: Measurement, timing: Timing | None, alpn: Sequence[str], tls: TLSConn | None = None):
        self.sock = sock
        self.ip = ip
        self.tls = tls
        self._m = m
        self._timing = timing
        self._alpn = alpn
        self._frames_first = tls is not None and tls.info.alpn == "h2"  # see Timing
        # httpcore ignores a failed write to go on and read the response (a server may answer
        # and close early). If that read then finds only EOF, the write's error (a reset) is
        # the real story, and is what we raise.
        self._write_error: OSError | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limit = self._m.limit("read")
        try:
            async with asyncio.timeout(limit):
                # A read that finds data waiting returns without suspending, so a server that
                # sends faster than we parse (a flood of 100 Continue) would hold the event
                # loop — every other probe, and this deadline — for as long as it likes.
                # Yield once per read: the deadline can fire and the loop stays fair.
                await asyncio.sleep(0)
                if self.tls is not None:
                    data = await self.tls.recv(max_bytes)
                else:
                    data = await asyncio.get_running_loop().sock_recv(self.sock, max_bytes)
                received_at = time.perf_counter()
        except TimeoutError as exc:  # before OSError, of which it is one
            raise httpcore.ReadTimeout(f"no data within {limit:.3g}s") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc
        if not data and self._write_error is not None:
            raise httpcore.ReadError(str(self._write_error)) from self._write_error
        if data and not self._frames_first and self._timing is not None:
            self._timing.received(received_at)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limit = self._m.limit("read")
        try:
            async with asyncio.timeout(limit):
                if self._timing is not None:
                    self._timing.sending()
                if self.tls is not None:
                    await self.tls.send(buffer)
                else:
                    await asyncio.get_running_loop().sock_sendall(self.sock, buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not send within {limit:.3g}s") from exc
        except OSError as exc:
            self._write_error = exc
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self.sock.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None) -> Stream:
        try:
            tls = await self._m.handshake(self.sock, server_hostname, self._alpn, ssl_context)
        except BaseException:
            self.sock.close()  # httpcore does not close a stream whose start_tls failed
            raise
        return Stream(self.sock, self.ip, self._m, self._timing, self._alpn, tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":  # httpcore reads the negotiated ALPN from it
            return self.tls.ssl_object if self.tls is not None else None
        if info == "is_readable":  # asked of an idle kept-alive connection: readable = server closed it
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        return None
