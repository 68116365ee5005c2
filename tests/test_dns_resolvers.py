"""Resolver specs of a dns check, and the DnsCheck config rules that use them."""

from __future__ import annotations

import pytest

from monitor.config import ConfigError, load_config_text
from monitor.probes.dns_resolvers import Resolver, parse_resolver


@pytest.mark.parametrize("spec, expected", [
    ("udp://8.8.8.8", Resolver("udp://8.8.8.8", "udp", "8.8.8.8", 53)),
    ("udp://127.0.0.1:5353", Resolver("udp://127.0.0.1:5353", "udp", "127.0.0.1", 5353)),
    ("tcp://[2001:4860:4860::8888]", Resolver("tcp://[2001:4860:4860::8888]", "tcp", "2001:4860:4860::8888", 53)),
    ("tls://1.1.1.1", Resolver("tls://1.1.1.1", "tls", "1.1.1.1", 853, auth_name="1.1.1.1")),
    ("tls://dns.google", Resolver("tls://dns.google", "tls", "dns.google", 853, auth_name="dns.google")),
    ("tls://127.0.0.1:8853#dns.example", Resolver("tls://127.0.0.1:8853#dns.example", "tls", "127.0.0.1", 8853, auth_name="dns.example")),
    ("https://dns.google/dns-query", Resolver("https://dns.google/dns-query", "https", "dns.google", 443, auth_name="dns.google", path="/dns-query")),
    ("https://doh.example:8443", Resolver("https://doh.example:8443", "https", "doh.example", 8443, auth_name="doh.example", path="/dns-query")),
    ("https://doh.example/q?ct=1", Resolver("https://doh.example/q?ct=1", "https", "doh.example", 443, auth_name="doh.example", path="/q?ct=1")),
    ("system", Resolver("system", "system")),
])
def test_parse(spec, expected):
    assert parse_resolver(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("8.8.8.8", "expected udp://IP"),
    ("quic://dns.adguard.com", "expected udp://IP"),
    ("udp://dns.google", "needs an IP address, not a name"),
    ("udp://8.8.8.8/path", "unexpected path"),
    ("udp://8.8.8.8:70000", "Port out of range"),
    ("tls://1.1.1.1#not a name", "auth name 'not a name'"),
    ("tls://1.1.1.1/dns", "no path"),
    ("https://dns.google/dns-query#x", "no #fragment"),
    ("https://user:pw@dns.google/", "credentials"),
    ("https:///dns-query", "missing host"),
])
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_resolver(spec)


def test_doh_url_names_the_server_not_an_address():
    assert parse_resolver("https://dns.google/dns-query").url == "https://dns.google:443/dns-query"
    assert parse_resolver("https://[::1]:8443/q").url == "https://[::1]:8443/q"


def _config(check: str) -> str:
    return f"checks:\n  - {check}\n"


def test_config_accepts_every_transport():
    cfg = load_config_text(_config(
        '{name: d, kind: dns, query: github.com, doh_method: GET, resolvers: '
        '[udp://127.0.0.1, "tls://127.0.0.1:853#dns.example", "https://dns.google/dns-query", system]}'
    ))
    assert cfg.checks[0].doh_method == "GET" and cfg.checks[0].injection_window == 0.5


@pytest.mark.parametrize("check, message", [
    ('{name: d, kind: dns, query: x.org, resolvers: ["udp://dns.google"]}',
     "<config>:2: checks[0].resolvers: resolver 'udp://dns.google': udp:// needs an IP address, not a name"),
    ('{name: d, kind: dns, query: x.org, resolvers: [system, system]}',
     "<config>:2: checks[0].resolvers: resolver listed twice: system"),
    ('{name: d, kind: dns, query: x.org, type: MX, resolvers: [system]}',
     "<config>:2: checks[0]: the system resolver (getaddrinfo) answers only A and AAAA, not MX"),
    ('{name: d, kind: dns, query: x.org, timeout: 1s, injection_window: 2s, resolvers: [udp://1.1.1.1]}',
     "<config>:2: checks[0]: injection_window (2s) must be less than timeout (1s)"),
    ('{name: d, kind: dns, query: "a..b", resolvers: [udp://1.1.1.1]}',
     "<config>:2: checks[0].query: 'a..b' is not a valid DNS name: A DNS label is empty."),
    ('{name: d, kind: dns, query: x.org, doh_method: PUT, resolvers: [udp://1.1.1.1]}',
     "<config>:2: checks[0].doh_method: Input should be 'GET' or 'POST'"),
])
def test_config_errors_name_line_and_key(check, message):
    with pytest.raises(ConfigError) as e:
        load_config_text(_config(check))
    assert e.value.problems == [message]
