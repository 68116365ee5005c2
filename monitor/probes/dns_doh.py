"""DNS over HTTPS (RFC 8484): the query as an application/dns-message body (POST) or as the
base64url `dns` parameter (GET), over HTTP/2 when the server offers it in ALPN.

httpx speaks HTTP; the connection under it is opened through the Measurement with the _net
primitives, so resolve (the DoH server's own name), connect and tls are timed and verified
like every other probe's, and a proxy vantage applies once vantages have them. dnspython's
https() is not used: it hides those phases, and turns a non-2xx status into a bare
ValueError; here the status is data (http_status).
"""

from __future__ import annotations

import base64
import contextlib
import time
import zlib
from typing import Any

import dns.exception
import dns.message
import httpx

from monitor.model import Failure, FailureClass, Operation, Phase
from monitor.probes._decoded import ACCEPT_ENCODING, BodyTooLarge, UnsupportedEncoding, decoded_chunks
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.probes.dns_exchange import MAX_MESSAGE, Options, endpoint, failed, finish
from monitor.probes.dns_resolvers import Resolver
from monitor.probes.http import Stream, open_client

DNS_MESSAGE = "application/dns-message"


class _RoundTrip:
    """httpcore `trace` callback: the DNS round trip starts when the request headers go out,
    after any resolve/connect/TLS of the connection that carries it."""

    def __init__(self) -> None:
        self.sent_at: float | None = None

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith(".send_request_headers.started") and self.sent_at is None:
            self.sent_at = time.perf_counter()

    def elapsed(self) -> float:
        return 0.0 if self.sent_at is None else time.perf_counter() - self.sent_at


def _request(client: httpx.AsyncClient, url: str, wire: bytes, method: str, timing: _RoundTrip) -> httpx.Request:
    headers = {"accept": DNS_MESSAGE, "accept-encoding": ACCEPT_ENCODING}
    extensions = {"trace": timing}
    if method == "GET":
        encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")
        return client.build_request("GET", url, params={"dns": encoded}, headers=headers, extensions=extensions)
    headers["content-type"] = DNS_MESSAGE
    return client.build_request("POST", url, content=wire, headers=headers, extensions=extensions)


async def exchange_doh(query: dns.message.Message, resolver: Resolver, m: Measurement, *, options: Options) -> dns.message.Message:
    query.id = 0  # RFC 8484 §4.1: clients SHOULD use id 0, so that GET answers are cacheable
    m.facts.update(doh_method=options.doh_method, sni=resolver.auth_name)
    timing = _RoundTrip()
    async with open_client(m, http2=True) as client:
        try:
            response = await client.send(_request(client, resolver.url, query.to_wire(), options.doh_method, timing), stream=True)
        except NetError as e:  # resolve, connect or TLS, from the http Backend, through httpx untouched
            if e.tls is not None:
                m.facts.update(e.tls.facts())
            raise
        except (httpx.HTTPError, OSError) as e:
            m.add(Phase.DNS_ROUND_TRIP, timing.elapsed())
            raise failed(e, Operation.HTTP_ROUND_TRIP, timing.elapsed()) from e
        try:
            _describe(response, resolver, m)
            body = await _body(response, timing, m)
        finally:
            await response.aclose()
    return finish(query, body, m, timing.elapsed())


def _describe(response: httpx.Response, resolver: Resolver, m: Measurement) -> None:
    m.facts.update(
        http_status=response.status_code,
        http_version=response.http_version,
        content_type=response.headers.get("content-type"),
    )
    if "ip" in m.facts:
        m.facts["resolver_address"] = endpoint(str(m.facts["ip"]), resolver.port)
    stream = response.extensions.get("network_stream")
    if isinstance(stream, Stream) and stream.tls is not None:  # the connection that answered
        m.facts.update(stream.tls.info.facts())


async def _body(response: httpx.Response, timing: _RoundTrip, m: Measurement) -> bytes:
    """The DNS message in a 2xx response; anything else is a failure, said as data."""
    if not 200 <= response.status_code <= 299:  # RFC 8484 §4.2.1: only 2xx carries an answer
        m.add(Phase.DNS_ROUND_TRIP, timing.elapsed())
        raise NetError(Failure(FailureClass.HTTP_STATUS, Operation.HTTP_ROUND_TRIP, f"status {response.status_code}, expected 2xx"), timing.elapsed())
    body = bytearray()  # appended in place: a body in tiny chunks (1-byte DATA frames) is not copied over and over
    try:
        # Decoded (a server may gzip) with the cap on the decoded bytes.
        async with contextlib.aclosing(decoded_chunks(response, MAX_MESSAGE)) as chunks:
            async for chunk in chunks:
                body += chunk
    except BodyTooLarge:
        m.add(Phase.DNS_ROUND_TRIP, timing.elapsed())
        raise NetError(Failure(FailureClass.RESPONSE_TOO_LARGE, Operation.READ, f"body exceeds {MAX_MESSAGE} bytes, the largest DNS message"), timing.elapsed()) from None
    except (UnsupportedEncoding, zlib.error) as e:
        m.add(Phase.DNS_ROUND_TRIP, timing.elapsed())
        raise NetError(Failure(FailureClass.HTTP_PROTOCOL_ERROR, Operation.READ, f"undecodable body: {e}"), timing.elapsed()) from None
    except (httpx.HTTPError, OSError) as e:
        m.add(Phase.DNS_ROUND_TRIP, timing.elapsed())
        raise failed(e, Operation.READ, timing.elapsed()) from e
    return bytes(body)
