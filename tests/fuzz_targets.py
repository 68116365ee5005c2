"""Fuzz targets: the parsers that take bytes from a hostile network (or text from an
operator), each wrapped the way its caller in monitor uses it, with the exceptions that
caller handles. Whatever else escapes is a crash: in a probe, the runner's internal_error.

One definition, two users: tests/test_fuzz.py (hypothesis, a short run in CI) and
bench/fuzz.py (the long run: random mutation, and atheris when installed). A target takes
bytes — what a network gives, what a mutation engine makes — and returns normally for
every outcome its caller expects.

    config            YAML text -> Config or ConfigError             (load_config_text)
    dns_reply         a reply's wire bytes -> the accepted Message and its facts, or a
                      DNSException that _classify names (never internal_error)
                                                                      (dns_exchange.accept_reply)
    sumdb_lookup      a /lookup answer -> Lookup or SumdbError        (_sumdb.parse_lookup)
    sumdb_tiles       a lookup's tree, a known tree and tile data (honest tiles of a real
                      log, mutated) -> the verified tree, or SumdbError / InconsistentTiles
                                                                      (plan_proof, check_proof)
    module_zip        a zip -> ModuleZip or BadModuleZip              (_modzip.check_and_hash)
    goproxy_answers   an @v/list or .info body -> a version or the probe's _Stop
    git_advertisement a ref advertisement -> a ref, a Failure, or "read more"

`Target.seeds` are real inputs to mutate from (valid ones and the repository's invalid
examples); `Target.tokens` are fragments of the format a mutation may insert (as a
libFuzzer dictionary does). `mutate` applies mutation operations; both engines share it.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import dns.rrset

from monitor.config import ConfigError, load_config_text
from monitor.model import FailureClass
from monitor.probes import goproxy as _goproxy
from monitor.probes._classify import classify
from monitor.probes._gomod import pick_latest
from monitor.probes._modzip import BadModuleZip, check_and_hash
from monitor.probes._sumdb import Lookup, SumdbError, check_proof, parse_lookup, parse_verifier_key, plan_proof
from monitor.probes._tlog import InconsistentTiles, Tree
from monitor.probes.dns_exchange import accept_reply, make_query, reply_facts, reply_failure
from monitor.probes.dns_udp import _meaning
from monitor.probes.git import _parse_advertisement
from tests.servers.goproxy import Module, make_zip, with_declared_size
from tests.servers.goproxy_sumdb import SigningKey, TestLog

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    tokens: tuple[bytes, ...] = ()


# Text that trips naive text handling: unicode digits (str.isdigit says yes, int() may say
# no), line and paragraph separators, a BOM, NUL, a surrogate-free astral character.
UNICODE_ODDITIES = tuple(s.encode() for s in ("²", "١٢", "\u2028", "\u0085", "\ufeff", "\x00", "𝟙", "\u00a0", "ǅ"))


# --- config ----------------------------------------------------------------------------------------

_SMALL_CONFIG = """\
agent: fuzz
storage: {url: "sqlite:///fuzz.db", retention_raw: 30d}
defaults: &d {interval: 60s, timeout: 10s, vantages: [local]}
vantages:
  - {name: local}
  - {name: corp, via: "http://127.0.0.1:3128"}
checks:
  - {name: t, kind: tcp, target: "127.0.0.1:443", connect_to: 127.0.0.1}
  - {name: s, kind: tls, target: "example.com:443", control_sni: example.org}
  - {name: h, kind: http, url: "https://example.com/", expect_status: [200, 301], max_redirects: 3}
  - name: d
    kind: dns
    query: example.com
    type: AAAA
    resolvers: ["udp://127.0.0.1", "tls://127.0.0.1#dns.example", "https://127.0.0.1/dns-query", system]
  - {name: g, kind: goproxy, proxy: "https://proxy.example,direct", module: golang.org/x/text, version: v0.3.2}
  - {name: p, kind: proxy, proxy: "socks5h://127.0.0.1:1080", target: "example.com:443"}
  - {name: git, kind: git, url: "https://example.com/r.git", ssh: "example.com:22", <<: *d}
  - {name: site, kind: site, domain: example.com, control_sni: example.org, references: ["tls://127.0.0.1#a.example", "https://127.0.0.1/dns-query"]}
"""


def _config_seeds() -> list[bytes]:
    invalid = sorted((ROOT / "tests" / "configs" / "invalid").glob("*.yaml"))
    return [_SMALL_CONFIG.encode()] + [p.read_bytes() for p in invalid]


def run_config(data: bytes) -> None:
    try:
        load_config_text(data.decode("utf-8", "replace"), "fuzz.yaml")
    except ConfigError as e:
        assert e.problems and all(p.startswith("fuzz.yaml") for p in e.problems), e.problems


CONFIG_TOKENS = (
    b"&a ", b"*a", b"<<: *a", b"[", b"]", b"{", b"}", b"? ", b": ", b"- ", b"'", b'"', b"\t", b"\n  ",
    b"!!binary ", b"!!python/object:os.system ", b"%YAML 1.1\n", b"---\n", b"...\n", b"|\n  ", b">-\n",
    b"kind: ", b"checks:\n  - ", b"name: ", b"interval: ", b"timeout: 0", b"1e309", b"-1", b"0x10",
    b"null", b"~", b"yes", b"on", b"2026-01-01", b"127.0.0.1:99999", b"udp://", b"https://", b"tls://", b"system",
) + UNICODE_ODDITIES


# --- DNS replies -----------------------------------------------------------------------------------

QUERY_NAME = "www.example.test"
QTYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "SOA", "HTTPS")  # what a dns check may ask
_QUERY_ID = 0x4D4F


@functools.cache
def _query(qtype: str) -> dns.message.Message:
    query = make_query(QUERY_NAME, qtype)
    query.id = _QUERY_ID
    return query


_ANSWERS = {
    "A": ["93.184.216.34", "31.13.94.37"],
    "AAAA": ["2606:2800:220:1:248:1893:25c8:1946"],
    "CNAME": ["alias.example.test."],
    "TXT": ['"v=spf1 -all"', '"a" "b"'],
    "MX": ["10 mx.example.test."],
    "NS": ["ns1.example.test."],
    "SOA": ["ns1.example.test. hostmaster.example.test. 1 7200 3600 1209600 300"],
    "HTTPS": ['1 . alpn="h2,h3" ipv4hint=93.184.216.34 port=443', "0 svc.example.test."],
}


def _dns_seeds() -> list[bytes]:
    seeds = []
    for i, qtype in enumerate(QTYPES):
        query = _query(qtype)
        reply = dns.message.make_response(query)
        reply.answer.append(dns.rrset.from_text(QUERY_NAME + ".", 300, "IN", qtype, *_ANSWERS[qtype]))
        if qtype == "A":  # a CNAME chain before the addresses
            reply.answer.insert(0, dns.rrset.from_text(QUERY_NAME + ".", 60, "IN", "CNAME", QUERY_NAME + "."))
        seeds.append(bytes([i]) + reply.to_wire())
        nx = dns.message.make_response(query)
        nx.set_rcode(dns.rcode.NXDOMAIN)
        nx.authority.append(dns.rrset.from_text("example.test.", 300, "IN", "SOA", _ANSWERS["SOA"][0]))
        seeds.append(bytes([i]) + nx.to_wire())
    return seeds


def run_dns_reply(data: bytes) -> None:
    """As dns_udp._listen and dns_exchange.finish take a reply (the first byte picks the
    question asked, among the types a dns check may ask)."""
    if not data:
        return
    qtype = QTYPES[data[0] % len(QTYPES)]
    try:
        reply = accept_reply(_query(qtype), data[1:])
    except dns.exception.DNSException as e:  # what the transports catch, and _classify names
        cls, _ = classify(e)
        assert cls is not FailureClass.INTERNAL_ERROR, f"{type(e).__name__} is not classified"
        return
    facts = reply_facts(reply)
    json.dumps(facts)  # stored as is
    reply_failure(reply, qtype)
    _meaning(reply)


DNS_TOKENS = (
    b"\xc0\x0c", b"\xc0\x00", b"\xc0\xff", b"\x3f" + b"a" * 63, b"\x00\x29\x10\x00", b"\x00\x01\x00\x01",
    b"\x00\x41\x00\x01", b"\x00\xfa\x00\xff", b"\xff\xff", b"\x00\x00", b"\x81\x80", b"\x83\x80",
)


# --- the checksum database ----------------------------------------------------------------------

SUMDB_NAME = "sum.fuzz.example"
MODULE, VERSION = "example.com/fuzz", "v1.0.0"
_KEY_SEED = bytes(range(32))  # a fixed key: seeds and saved reproducers stay valid across runs


@functools.cache
def _signing_key() -> SigningKey:
    return SigningKey(SUMDB_NAME, seed=_KEY_SEED)


@functools.cache
def _verifier():
    return parse_verifier_key(_signing_key().vkey)


@functools.cache
def _log() -> TestLog:
    """A real log of 1000 records with MOD's at 300: deep enough for two tile levels and a
    partial tile on each."""
    log = TestLog(_signing_key())
    for i in range(300):
        log.add(f"example.com/filler{i} v1.0.0 h1:{base64.b64encode(bytes([i % 256]) * 32).decode()}\n".encode())
    log.add_module(MODULE, VERSION, "h1:" + "A" * 43 + "=", "h1:" + "B" * 43 + "=")
    for i in range(699):
        log.add(f"example.com/late{i} v1.0.0 h1:x\n".encode())
    return log


def _sumdb_seeds() -> list[bytes]:
    log, key = _log(), _signing_key()
    other = SigningKey("sum.other.example", seed=bytes(32))
    return [
        log.lookup(300),
        log.lookup(300, note=log.signed_tree(signers=(other, key))),  # an unknown signer too
        log.lookup(300, note=log.signed_tree(signers=(other,))),  # no known signature
        log.lookup(300, note=log.signed_tree(500)),  # a smaller tree
        log.lookup(5),  # another module's record
    ]


def run_sumdb_lookup(data: bytes) -> None:
    try:
        lookup = parse_lookup(data, _verifier(), MODULE, VERSION)
    except SumdbError:
        return
    lookup.note.decode()  # goproxy keeps the note in facts as text


SUMDB_TOKENS = (
    b"\n\n", "— ".encode(), b"go.sum database tree\n", b"\n300\n", SUMDB_NAME.encode(), b"+", b" h1:",
    f"{MODULE} {VERSION}".encode(), b"/go.mod", b"=", b"9223372036854775807", b"18446744073709551616",
) + UNICODE_ODDITIES


def _u(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at : at + size].ljust(size, b"\0"), "big")


def run_sumdb_tiles(data: bytes) -> None:
    """Bytes read as: the tree the lookup claims (4 bytes: a size up to the log's, or with the
    top bit set a 63-bit size, honest root when the log has one), the record id (4), the
    known tree (1 byte: none, honest smaller, honest larger, forged; 4 bytes: size), then
    edits to the honest tiles (each 5 bytes: tile, offset (2), xor, truncate?)."""
    log = _log()
    raw = _u(data, 0, 4)
    size = (raw & 0x7FFFFFFF) * 0x100000001 % (1 << 63) if raw & 0x80000000 else 1 + raw % log.size
    record_id = _u(data, 4, 4) % (size + 2)
    tree = Tree(size, log.root(size) if size <= log.size else bytes(32))
    record = log.records[record_id] if record_id < log.size else b"example.com/none v1.0.0 h1:x\n"
    lookup = Lookup(record_id, record, tree, b"", (), "", "")
    known_kind, known_size = data[8] % 4 if len(data) > 8 else 0, 1 + _u(data, 9, 4) % log.size
    known = None
    if known_kind in (1, 2):
        known = Tree(known_size, log.root(known_size))
    elif known_kind == 3:
        known = Tree(known_size, bytes(data[13:45].ljust(32, b"\x07")))
    try:
        proof = plan_proof(lookup, known)
        tiles = [bytearray(log.tile(t.path, proof.latest.size) or b"") for t in proof.plan.tiles]
        for at in range(13, len(data) - 4, 5):  # edits
            if not tiles:
                break
            tile = tiles[data[at] % len(tiles)]
            if data[at + 4] & 1:
                del tile[_u(data, at + 1, 2) % (len(tile) + 1) :]
            elif tile:
                tile[_u(data, at + 1, 2) % len(tile)] ^= data[at + 3] or 1
        check_proof(lookup, proof, [bytes(t) for t in tiles])
    except (SumdbError, InconsistentTiles):  # what goproxy's _verify_with_sumdb catches
        return


# --- module zips ---------------------------------------------------------------------------------

_MOD = Module(MODULE, VERSION, {"fuzz.go": b"package fuzz\n\nfunc F() int { return 1 }\n", "LICENSE": b"MIT\n", "sub/dir/x.txt": b"x" * 300})


def _zip_seeds() -> list[bytes]:
    prefix = _MOD.prefix
    entries = {prefix + n: d for n, d in _MOD.files.items()}
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        for name, content in entries.items():
            z.writestr(name, content)
        z.writestr(prefix + "sub/", b"")  # a directory entry
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in entries.items():
            with z.open(name, "w", force_zip64=True) as f:
                f.write(content)
    return [
        _MOD.zip_bytes(),
        stored.getvalue(),
        zip64.getvalue(),
        with_declared_size(make_zip({prefix + "bomb": bytes(1 << 16)}), prefix + "bomb", 10),
        make_zip({prefix + "go.mod": b"module x\n", prefix + "a/go.mod": b"module y\n"}),
    ]


def run_module_zip(data: bytes) -> None:
    try:
        check_and_hash(io.BytesIO(data), len(data), MODULE, VERSION, deadline=time.monotonic() + 30)
    except (BadModuleZip, TimeoutError):  # what goproxy names (bad_module_zip, response_too_large, a timeout)
        return


ZIP_TOKENS = (
    b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"\xff\xff\xff\xff",
    b"\xff\xff", b"\x01\x00\x10\x00", b"\x08\x00", b"\x00\x00", MODULE.encode() + b"@" + VERSION.encode() + b"/",
    b"../", b"go.mod", b"GO.MOD", b"LICENSE",
)


# --- module proxy answers and git ------------------------------------------------------------------


def _goproxy_seeds() -> list[bytes]:
    return [
        b"v1.0.0\nv1.1.0\nv1.2.0-rc.1\nv0.0.0-20260102030405-abcdefabcdef\n",
        b'{"Version": "v1.0.0", "Time": "2026-01-02T03:04:05Z"}',
        b'{"Version": "v2.0.0+incompatible", "Origin": {"VCS": "git"}}',
    ]


def run_goproxy_answers(data: bytes) -> None:
    """As goproxy's _latest reads an @v/list, then .info (or @latest)."""
    pick_latest(data.decode("utf-8", "replace").splitlines(), MODULE)
    try:
        _goproxy._info_version(data)
    except _goproxy._Stop:
        return


GOPROXY_TOKENS = (b"v1.", b"-rc.", b"+incompatible", b"v0.0.0-20260102030405-", b'"Version"', b"[" * 64, b"{", b'"\\u0000"', b"\n") + UNICODE_ODDITIES


def _pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def _git_seeds() -> list[bytes]:
    opening = _pkt(b"# service=git-upload-pack\n") + b"0000"
    return [
        opening + _pkt(b"a" * 40 + b" HEAD\0multi_ack agent=git/2.43\n") + _pkt(b"a" * 40 + b" refs/heads/main\n") + b"0000",
        opening + _pkt(b"version 1\n") + _pkt(b"b" * 64 + b" refs/heads/main\0agent=x\n"),
        opening + _pkt(b"0" * 40 + b" capabilities^{}\0agent=x\n") + b"0000",
    ]


def run_git_advertisement(data: bytes) -> None:
    for complete in (False, True):
        _parse_advertisement(data, complete=complete)


GIT_TOKENS = (b"0000", b"0001", b"0004", b"ffff", b"# service=git-upload-pack\n", b"version 1\n", b"\0", b"agent=", b" HEAD")


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("config", run_config, _config_seeds, CONFIG_TOKENS),
        Target("dns_reply", run_dns_reply, _dns_seeds, DNS_TOKENS),
        Target("sumdb_lookup", run_sumdb_lookup, _sumdb_seeds, SUMDB_TOKENS),
        Target("sumdb_tiles", run_sumdb_tiles, lambda: [bytes(13), b"\x00\x00\x01\x2c\x00\x00\x01\x2c\x01\x00\x00\x00\xc8", b"\x80\x00\x00\x05" + bytes(9)]),
        Target("module_zip", run_module_zip, _zip_seeds, ZIP_TOKENS),
        Target("goproxy_answers", run_goproxy_answers, _goproxy_seeds, GOPROXY_TOKENS),
        Target("git_advertisement", run_git_advertisement, _git_seeds, GIT_TOKENS),
    )
}


# --- mutation -----------------------------------------------------------------------------------

# One operation: (kind, position, value). Positions wrap around the data; values are bytes.
Operation = tuple[str, int, bytes]
KINDS = ("flip", "set", "insert", "delete", "duplicate", "integer", "truncate", "token", "splice")
_INTEGERS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def mutate(data: bytes, operations: Sequence[Operation], tokens: Sequence[bytes] = (), others: Sequence[bytes] = ()) -> bytes:
    """`data` with the operations applied in order: bit flip, byte set, insertion, deletion of
    a range, a range duplicated, an interesting integer (1, 2 or 4 bytes, either byte order)
    written, truncation, a format token inserted, a splice with another input."""
    out = bytearray(data)
    for kind, position, value in operations:
        n = len(out)
        at = position % (n + 1)
        v = value or b"\x01"
        if kind == "flip" and n:
            out[at % n] ^= 1 << (v[0] % 8)
        elif kind == "set" and n:
            out[at % n] = v[0]
        elif kind == "insert":
            out[at:at] = value
        elif kind == "delete":
            del out[at : at + 1 + v[0] % 64]
        elif kind == "duplicate" and n:
            start = v[0] * 256 % n if len(v) < 2 else int.from_bytes(v[:2], "big") % n
            out[at:at] = out[start : start + 1 + v[-1] % 128]
        elif kind == "integer":
            number = _INTEGERS[v[0] % len(_INTEGERS)]
            size = (1, 2, 4)[v[-1] % 3]
            packed = (number & ((1 << (8 * size)) - 1)).to_bytes(size, "little" if v[-1] & 4 else "big")
            out[at : at + size] = packed
        elif kind == "truncate":
            del out[at:]
        elif kind == "token" and tokens:
            out[at:at] = tokens[v[0] % len(tokens)]
        elif kind == "splice" and others:
            other = others[v[0] % len(others)]
            cut = (v[-1] * len(other)) // 256
            out[at:] = other[cut:]
    return bytes(out)


def random_operations(rng: random.Random, count: int) -> list[Operation]:
    return [(rng.choice(KINDS), rng.getrandbits(16), rng.randbytes(rng.randint(1, 8))) for _ in range(count)]


def random_input(target: Target, seeds: Sequence[bytes], rng: random.Random) -> bytes:
    """One input for the mutation engine: mostly a seed under 1 to 8 mutations (sometimes
    mutated again, stacking up), now and then random bytes."""
    if rng.random() < 0.05:
        return rng.randbytes(rng.randint(0, 512))
    data = rng.choice(seeds)
    for _ in range(1 + (rng.random() < 0.25)):
        data = mutate(data, random_operations(rng, rng.randint(1, 8)), target.tokens, seeds)
    return data
