"""proxy probe: does this proxy carry traffic? (ProxyCheck in config.py)

mode connect: the checked proxy is appended to the vantage's own proxies, and the tunnel is
opened by the Measurement as every proxied connection is: proxy_connect (TCP to the proxy),
proxy_handshake (CONNECT's 2xx or the SOCKS5 reply; `proxy_status` / `proxy_reply` in facts).
Through the tunnel goes an HTTP request to `url` (the http probe's exchange: its phases,
statuses and body cap), or without url a TLS handshake with the target (`tls: false`: the
tunnel alone). A proxy is thus checked from any vantage, a proxied one included.

mode forward: `url` (plain http) is asked of the proxy by its absolute URI, as a browser
uses a forward proxy (httpcore's forward proxy over our connections). The only connection
is to the proxy, so its resolve and connect are reported as proxy_connect. What the proxy
says comes as a status: 407 is proxy_auth_required; 500, 502, 503 and 504 are proxy_error,
since squid and tinyproxy answer so for an origin they cannot reach (an origin's own 5xx
looks the same through a forward proxy; the detail says so).

Credentials come from auth_env / auth_file, read at use (Proxy.credentials) and never put
in facts, logs or errors.
"""

from __future__ import annotations


from monitor.config import HttpCheck, ProxyCheck, split_host_port
from monitor.model import Failure, FailureClass, Operation, Phase, ProbeResult
from monitor.probes import http as _http
from monitor.probes._measure import Measurement
from monitor.probes._net import NetError
from monitor.vantage import CredentialsUnavailable, Proxy, Vantage

_TLS_ALPN = ("h2", "http/1.1")  # offered in a bare tunnel handshake, as the tls check does
_GATEWAY_FAILURES = {500, 502, 503, 504}


async def probe_proxy(check: ProxyCheck, vantage: Vantage, *, deadline: float) -> ProbeResult:
    m = Measurement(check, vantage, deadline)
    proxy = Proxy.from_url(check.proxy, auth_env=check.auth_env, auth_file=check.auth_file)
    m.facts.update(proxy=proxy.url, mode=check.mode)
    if check.mode == "forward":
        return m.result(await _forward(check, proxy, m))
    m.via = m.via + (proxy,)
    failure = await (_request(check, m) if check.url else _tunnel(check, m))
    return m.result(failure)


async def _tunnel(check: ProxyCheck, m: Measurement) -> Failure | None:
    assert check.target is not None  # config: mode connect has a target or a url
    host, port = split_host_port(check.target)
    try:
        sock, _ = await m.open(host, port, check.connect_to, then=Operation.TLS_HANDSHAKE if check.tls else Operation.PROXY_CONNECT)
        try:
            if check.tls:
                conn = await m.handshake(sock, host, _TLS_ALPN, m.vantage.verify_context)
                m.facts.update(conn.info.facts())
        finally:
            sock.close()
    except NetError as e:
        if e.tls is not None:
            m.facts.update(e.tls.facts())
        return e.failure
    return None


async def _request(check: ProxyCheck, m: Measurement) -> Failure | None:
    request = _http_request(check)
    timing = _http.Timing(m)
    async with _http.open_client(m, timing, pinned_url=request.url) as client:
        return await _http.exchange(client, request, m, timing)


async def _forward(check: ProxyCheck, proxy: Proxy, m: Measurement) -> Failure | None:
    try:
        credentials = proxy.credentials()
    except CredentialsUnavailable as e:
        return Failure(FailureClass.PROXY_AUTH_REQUIRED, Operation.PROXY_CONNECT, str(e))
    request = _http_request(check)
    timing = _http.Timing(m)
    async with _http.open_client(m, timing, pinned_url=request.url, forward_proxy=(proxy.url, credentials)) as client:
        failure = await _http.exchange(client, request, m, timing)
    _connection_was_to_the_proxy(m)
    if failure is not None and failure.operation in (Operation.RESOLVE, Operation.CONNECT):
        return Failure(failure.cls, Operation.PROXY_CONNECT, failure.detail)
    return _proxy_status(failure, m)


def _connection_was_to_the_proxy(m: Measurement) -> None:
    for phase in (Phase.RESOLVE, Phase.CONNECT):
        seconds = m.phases.pop(phase.value, None)
        if seconds is not None:
            m.add(Phase.PROXY_CONNECT, seconds)
    if "ip" in m.facts:
        m.facts["proxy_ip"] = m.facts.pop("ip")


def _proxy_status(failure: Failure | None, m: Measurement) -> Failure | None:
    """A forward proxy's own refusals arrive as HTTP statuses: name them as the proxy's."""
    status = m.facts.get("status_code")
    if failure is None or failure.cls != FailureClass.HTTP_STATUS or not isinstance(status, int):
        return failure
    if status == 407:
        m.facts["proxy_status"] = status
        return Failure(FailureClass.PROXY_AUTH_REQUIRED, Operation.PROXY_CONNECT, f"proxy answered 407 ({failure.detail})")
    if status in _GATEWAY_FAILURES:
        m.facts["proxy_status"] = status
        return Failure(FailureClass.PROXY_ERROR, Operation.HTTP_ROUND_TRIP, f"{failure.detail} (from the proxy, or the origin behind it)")
    return failure


def _http_request(check: ProxyCheck) -> HttpCheck:
    """The request made through the proxy, as the http probe's exchange takes it."""
    assert check.url is not None
    return _http.request_for(
        check, check.url, connect_to=check.connect_to, expect_status=check.expect_status, max_body_bytes=check.max_body_bytes
    )
