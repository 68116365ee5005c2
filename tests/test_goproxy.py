"""goproxy probe against a real module proxy and checksum database on loopback (TLS):
honest fetches verify end to end; tampering, forged notes, forked trees, hostile zips and
GOPROXY fall-through come out as the right class, operation and verdict (the judge step's
rules, monitor/analysis/single.py, applied to the probe's result)."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from monitor.config import GoproxyCheck
from monitor.analysis.single import judge_result
from monitor.probes.goproxy import VerifiedTrees, probe_goproxy
from tests.servers.goproxy import GoproxyServer, Module, Response, escape, make_zip, with_declared_size
from tests.servers.goproxy_sumdb import SigningKey, TestLog
from tests.servers.tcp import closed_port, server_context

KEY = SigningKey("sum.test.example")
# Upper case in the path and the version exercises the proxy protocol's case encoding.
MOD = Module("example.com/Hello", "v1.2.3-RC1", {"hello.go": b"package hello\n\nfunc Hi() string { return \"hi\" }\n", "LICENSE": b"MIT\n"})
BASE = f"/{escape(MOD.path)}/@v/{escape(MOD.version)}"


def make_log(*modules: Module, before: int = 300, after: int = 40) -> TestLog:
    """A log where the modules' records sit among others, deep enough for two tile levels."""
    log = TestLog(KEY)
    log.fill(before)
    for mod in modules:
        log.add_module(mod.path, mod.version, mod.zip_h1, mod.gomod_h1)
    log.fill(after)
    return log


@pytest.fixture
async def start(serve, pki):
    async def start_server() -> GoproxyServer:
        return await serve(GoproxyServer(ssl_context=server_context(pki.valid, alpn=["http/1.1"])))

    return start_server


@pytest.fixture
async def proxy(start) -> GoproxyServer:
    server = await start()
    server.serve_module(MOD)
    return server


@pytest.fixture
async def sumdb(start) -> GoproxyServer:
    server = await start()
    server.log = make_log(MOD)
    return server


def goproxy_check(proxy: str, db: GoproxyServer | None = None, **kw) -> GoproxyCheck:
    """A check of MOD through `proxy`, asking the database at `db` directly if given."""
    fields = dict(
        name="gp", kind="goproxy", proxy=proxy, module=MOD.path, version=MOD.version,
        sumdb=KEY.name, sumdb_key=KEY.vkey, interval=60, timeout=5, read_timeout=1, vantages=["local"],
    )
    if db is not None:
        fields["sumdb_url"] = db.url
    return GoproxyCheck(**(fields | kw))


async def run(check: GoproxyCheck, vantage, trees: VerifiedTrees | None = None):
    return await probe_goproxy(check, vantage, deadline=time.monotonic() + check.timeout, trees=trees or VerifiedTrees())


def failure_of(result) -> tuple[str, str]:
    assert result.failure is not None, result.facts
    return result.failure.cls.value, result.failure.operation.value


# --- honest ------------------------------------------------------------------------------------


async def test_honest_proxy_verifies_end_to_end(proxy, sumdb, vantage):
    trees = VerifiedTrees()
    result = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert result.ok, result.failure
    f = result.facts
    assert (f["h1"], f["gomod_h1"], f["version"]) == (MOD.zip_h1, MOD.gomod_h1, MOD.version)
    assert f["checksum_ok"] is True
    assert f["served_by"] == {"info": proxy.url, "mod": proxy.url, "zip": proxy.url}
    log = sumdb.log
    assert f["sumdb"]["verified"] is True and f["sumdb"]["record_id"] == 300
    assert f["sumdb_tree"] == {"name": KEY.name, "size": log.size, "hash": base64.b64encode(log.root()).decode()}
    assert trees.get(KEY.name).size == log.size
    assert result.verdict is None  # the probe measures; the judge step gives verdicts
    verdict = judge_result(result)
    assert verdict.name.value == "ok"
    assert any(MOD.zip_h1 in e for e in verdict.evidence)
    # The proxy protocol as the go command speaks it, case-encoded.
    assert proxy.requests == [f"{BASE}.info", f"{BASE}.mod", f"{BASE}.zip"]
    assert "/example.com/!hello/@v/v1.2.3-!r!c1.zip" in proxy.requests
    assert sumdb.requests[0] == "/lookup/example.com/!hello@v1.2.3-!r!c1"
    assert all(r.startswith("/tile/8/") for r in sumdb.requests[1:])
    # Phases per request: the first to each server connects and shakes hands, later ones reuse.
    info, mod, zip_ = f["requests"][:3]
    # (a small answer read with its headers in one socket read has no transfer time to record)
    assert {"connect", "tls", "ttfb"} <= set(info["phases"])
    assert "connect" not in mod["phases"] and "ttfb" in mod["phases"]
    assert zip_["bytes"] == len(MOD.zip_bytes()) == f["zip_bytes"]
    assert {"connect", "tls", "ttfb", "transfer"} <= set(result.phases)


async def test_checksum_database_reached_through_the_proxy(proxy, vantage):
    log = make_log(MOD)
    proxy.proxied_logs[KEY.name] = log
    result = await run(goproxy_check(proxy.url), vantage)  # no sumdb_url: ask the proxies first
    assert result.ok, result.failure
    name = KEY.name
    assert f"/sumdb/{name}/supported" in proxy.requests
    assert f"/sumdb/{name}/lookup/example.com/!hello@v1.2.3-!r!c1" in proxy.requests
    assert result.facts["sumdb"]["url"] == f"{proxy.url}/sumdb/{name}"
    assert result.facts["served_by"]["sumdb_supported"] == proxy.url


async def test_pins_alone_verify_when_the_database_is_off(proxy, vantage):
    check = goproxy_check(proxy.url, sumdb="off", sumdb_key=None, expect_h1=MOD.zip_h1, expect_gomod_h1=MOD.gomod_h1)
    result = await run(check, vantage)
    assert result.ok, result.failure
    assert result.facts["checked_against"] == ["expect_gomod_h1 in the config", "expect_h1 in the config"]


async def test_latest_is_picked_from_the_list(proxy, sumdb, vantage):
    # The highest release wins over a higher pre-release and a pseudo-version.
    newest = Module(MOD.path, "v1.2.2", dict(MOD.files))
    proxy.serve_module(newest, listed=["v1.0.0", "v1.2.2", "v1.3.0-rc.1", "v0.0.0-20260101000000-abcdefabcdef"])
    sumdb.log = make_log(newest)
    result = await run(goproxy_check(proxy.url, sumdb, version="latest"), vantage)
    assert result.ok, result.failure
    assert result.facts["version"] == "v1.2.2"
    assert proxy.requests[0] == f"/{escape(MOD.path)}/@v/list"


async def test_latest_falls_back_to_at_latest_when_the_list_is_empty(proxy, sumdb, vantage):
    proxy.routes[f"/{escape(MOD.path)}/@v/list"] = Response(200, b"")
    result = await run(goproxy_check(proxy.url, sumdb, version="latest"), vantage)
    assert result.ok, result.failure
    assert proxy.requests[:2] == [f"/{escape(MOD.path)}/@v/list", f"/{escape(MOD.path)}/@latest"]


async def test_tree_grows_consistently_across_runs(proxy, sumdb, vantage):
    trees = VerifiedTrees()
    first = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert first.ok, first.failure
    sumdb.log.fill(700)  # the log grows; the next run proves the old tree a prefix of the new
    second = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert second.ok, second.failure
    assert second.facts["sumdb"]["known_tree"] == first.facts["sumdb"]["tree"]
    assert second.facts["sumdb_tree"]["size"] == sumdb.log.size == first.facts["sumdb_tree"]["size"] + 700


async def test_a_stored_tree_seeds_the_check(proxy, sumdb, vantage):
    trees = VerifiedTrees()
    log = sumdb.log
    trees.seed(KEY.name, 10, base64.b64encode(log.root(10)).decode())
    result = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert result.ok, result.failure
    assert result.facts["sumdb"]["known_tree"].startswith("10 ")


async def test_partial_tile_gone_is_read_from_the_full_tile(proxy, sumdb, vantage):
    # A lookup signed for tree 300+1+40 = 341 after the log reached 600: its partial tile
    # tile/8/0/001.p/85 was replaced by the full one, as sumdb.Client expects.
    log = sumdb.log
    note_size = log.size
    note = log.signed_tree(note_size)
    log.fill(600 - note_size)
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(200, log.lookup(300, note=note))
    sumdb.routes["/tile/8/0/001.p/85"] = Response(404, b"gone\n")
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert result.ok, result.failure
    assert "/tile/8/0/001" in sumdb.requests


# --- tampering -----------------------------------------------------------------------------------


def tampered(mod: Module) -> Module:
    return Module(mod.path, mod.version, dict(mod.files, **{"hello.go": b"package hello\n\nfunc Hi() string { return \"pwned\" }\n"}))


async def test_tampered_zip_is_module_tampered_with_both_hashes(proxy, sumdb, vantage):
    evil = tampered(MOD)
    proxy.routes[f"{BASE}.zip"] = Response(200, evil.zip_bytes())
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("checksum_mismatch", "verify")
    verdict = judge_result(result)
    assert verdict.name.value == "module_tampered" and verdict.confidence.value == "high"
    evidence = " ".join(verdict.evidence)
    assert evil.zip_h1 in evidence and MOD.zip_h1 in evidence and proxy.url in evidence
    assert result.facts["checksum_ok"] is False
    assert result.facts["sumdb"]["verified"] is True  # the database itself was honest


async def test_tampered_zip_against_pins_only(proxy, vantage):
    proxy.routes[f"{BASE}.zip"] = Response(200, tampered(MOD).zip_bytes())
    check = goproxy_check(proxy.url, sumdb="off", sumdb_key=None, expect_h1=MOD.zip_h1)
    result = await run(check, vantage)
    assert failure_of(result) == ("checksum_mismatch", "verify")
    assert MOD.zip_h1 in " ".join(judge_result(result).evidence)


async def test_tampered_go_mod(proxy, sumdb, vantage):
    proxy.routes[f"{BASE}.mod"] = Response(200, b"module example.com/Hello\n\nrequire evil.example/x v1.0.0\n")
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("checksum_mismatch", "verify")
    assert MOD.gomod_h1 in " ".join(judge_result(result).evidence)


async def test_forged_record_with_forged_tiles_is_refused(proxy, sumdb, vantage):
    # CVE-2026-56865: a proxy forges the record (to match its tampered zip) and the level-0
    # tile holding it. Only authenticating every tile against its parent catches this.
    # The record (300) sits in a full tile, authenticated by its parent, not by the root.
    evil = tampered(MOD)
    proxy.routes[f"{BASE}.zip"] = Response(200, evil.zip_bytes())
    log = sumdb.log = make_log(MOD, after=300)
    forged_record = f"{MOD.path} {MOD.version} {evil.zip_h1}\n{MOD.path} {MOD.version}/go.mod {MOD.gomod_h1}\n".encode()
    tile = bytearray(log.tile("tile/8/0/001"))
    leaf = 300 - 256
    tile[leaf * 32 : leaf * 32 + 32] = hashlib.sha256(b"\x00" + forged_record).digest()
    sumdb.routes["/tile/8/0/001"] = Response(200, bytes(tile))
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(200, b"300\n" + forged_record + b"\n" + log.signed_tree())
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")
    assert judge_result(result).name.value == "module_tampered"


async def test_hashes_outside_the_record_are_ignored(proxy, sumdb, vantage):
    # CVE-2026-56864: lines after the signed tree's three are not the record; a tampered zip
    # must not be "verified" by a hash slipped in there.
    evil = tampered(MOD)
    proxy.routes[f"{BASE}.zip"] = Response(200, evil.zip_bytes())
    log = sumdb.log
    text = log.tree_text() + f"{MOD.path} {MOD.version} {evil.zip_h1}\n".encode()
    note = text + b"\n" + KEY.signature_line(text)
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(200, log.lookup(300, note=note))
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("checksum_mismatch", "verify")


# --- the checksum database misbehaving --------------------------------------------------------


async def test_forged_note_is_refused(proxy, sumdb, vantage):
    log = sumdb.log
    honest = log.signed_tree()
    forged = honest.replace(f"\n{log.size}\n".encode(), f"\n{log.size + 1}\n".encode())  # signature kept
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(200, log.lookup(300, note=forged))
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")
    assert "invalid signature" in result.failure.detail
    assert "sumdb_tree" not in result.facts


async def test_note_signed_by_another_key_is_refused(proxy, sumdb, vantage):
    impostor = SigningKey(KEY.name)  # same name, its own key
    log = sumdb.log
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(200, log.lookup(300, note=log.signed_tree(signers=(impostor,))))
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")
    assert "no verifiable signature" in result.failure.detail


async def test_forked_tree_is_refused(proxy, sumdb, vantage):
    trees = VerifiedTrees()
    assert (await run(goproxy_check(proxy.url, sumdb), vantage, trees)).ok
    # The database now shows another history: record 5 rewritten, signed with the real key.
    honest = sumdb.log
    fork = TestLog(KEY)
    for i, text in enumerate(honest.records):
        fork.add(text if i != 5 else b"example.com/other v1.0.0 h1:rewritten\n")
    fork.fill(100)
    sumdb.log = fork
    result = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")
    assert "is not a prefix of" in result.failure.detail
    assert result.facts["sumdb"]["known_tree"].startswith(f"{honest.size} ")
    assert trees.get(KEY.name).size == honest.size  # the fork is not adopted


async def test_fork_at_the_same_size_is_refused(proxy, sumdb, vantage):
    trees = VerifiedTrees()
    size = sumdb.log.size
    trees.seed(KEY.name, size, base64.b64encode(b"\x07" * 32).decode())
    result = await run(goproxy_check(proxy.url, sumdb), vantage, trees)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")


async def test_tampered_tile_is_refused(proxy, sumdb, vantage):
    data = bytearray(sumdb.log.tile("tile/8/1/000.p/1"))
    data[0] ^= 1
    sumdb.routes["/tile/8/1/000.p/1"] = Response(200, bytes(data))
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("sumdb_verification_failed", "verify")


async def test_unknown_module_in_the_database(proxy, sumdb, vantage):
    sumdb.log = make_log()  # holds no record of the module
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("module_not_found", "http_round_trip")
    assert "lookup" in result.failure.detail


async def test_pins_decide_when_the_database_fails(proxy, sumdb, vantage):
    sumdb.routes["/lookup/example.com/!hello@v1.2.3-!r!c1"] = Response(500, b"down\n")
    result = await run(goproxy_check(proxy.url, sumdb, expect_h1=MOD.zip_h1), vantage)
    assert failure_of(result) == ("http_status", "http_round_trip")
    assert result.facts["checksum_ok"] is True  # the pin matched; the database could not say


# --- hostile proxies --------------------------------------------------------------------------


async def test_wrong_version_info_is_refused(proxy, sumdb, vantage):
    proxy.routes[f"{BASE}.info"] = Response(200, MOD.info("v1.2.4"))
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == ("http_protocol_error", "verify")
    assert "instead of requested version" in result.failure.detail


P = f"{MOD.path}@{MOD.version}/"


@pytest.mark.parametrize(
    "zip_data, cls, detail",
    [
        (with_declared_size(make_zip({P + "go.mod": MOD.gomod, P + "big": b"\0" * 100}), P + "big", 600 << 20),
         "bad_module_zip", "total uncompressed size"),
        (with_declared_size(make_zip({P + "bomb": b"\0" * (4 << 20)}), P + "bomb", 10), "bad_module_zip", "larger than declared"),
        (make_zip({P + "go.mod": MOD.gomod, P + "../../etc/cron.d/evil": b"x"}), "bad_module_zip", "not clean"),
        (make_zip({P + "go.mod": MOD.gomod, P + "README": b"a", P + "readme": b"b"}), "bad_module_zip", "case-insensitive"),
        (b"<html>not a zip</html>", "bad_module_zip", "not a valid zip"),
    ],
    ids=["bomb-declared", "bomb-lying", "dotdot", "case-fold", "junk"],
)
async def test_hostile_zips(proxy, sumdb, vantage, zip_data, cls, detail):
    proxy.routes[f"{BASE}.zip"] = Response(200, zip_data)
    result = await run(goproxy_check(proxy.url, sumdb), vantage)
    assert failure_of(result) == (cls, "verify")
    assert detail in result.failure.detail


async def test_zip_over_the_limit_is_not_read(proxy, sumdb, vantage):
    result = await run(goproxy_check(proxy.url, sumdb, max_zip_bytes=100), vantage)
    assert failure_of(result) == ("response_too_large", "read")


async def test_slow_zip_times_out(proxy, sumdb, vantage):
    proxy.routes[f"{BASE}.zip"] = Response(200, MOD.zip_bytes(), delay=1.0)
    result = await run(goproxy_check(proxy.url, sumdb, read_timeout=0.3), vantage)
    assert failure_of(result) == ("generic_timeout_error", "read")


# --- GOPROXY lists -----------------------------------------------------------------------------


async def test_comma_falls_through_on_not_found(start, sumdb, vantage):
    a, b = await start(), await start()
    b.serve_module(MOD)
    result = await run(goproxy_check(f"{a.url},{b.url}", sumdb), vantage)
    assert result.ok, result.failure
    assert result.facts["served_by"] == {"info": b.url, "mod": b.url, "zip": b.url}
    assert [r["status"] for r in result.facts["requests"][:2]] == [404, 200]
    # Each request says how it failed, per proxy (the report's per-proxy record reads it).
    assert result.facts["requests"][0]["failure"] == {"class": "module_not_found", "operation": "http_round_trip"}
    assert "failure" not in result.facts["requests"][1]


async def test_each_request_walks_the_list(start, sumdb, vantage):
    a, b = await start(), await start()
    a.serve_module(MOD)
    b.serve_module(MOD)
    a.routes[f"{BASE}.zip"] = Response(410, b"gone\n")
    result = await run(goproxy_check(f"{a.url},{b.url}", sumdb), vantage)
    assert result.ok, result.failure
    assert result.facts["served_by"] == {"info": a.url, "mod": a.url, "zip": b.url}


async def test_comma_stops_on_other_errors(start, sumdb, vantage):
    a, b = await start(), await start()
    b.serve_module(MOD)
    a.routes[f"{BASE}.info"] = Response(500, b"oops\n")
    result = await run(goproxy_check(f"{a.url},{b.url}", sumdb), vantage)
    assert failure_of(result) == ("http_status", "http_round_trip")
    assert b.requests == []


async def test_pipe_falls_through_on_any_error(start, sumdb, vantage):
    b = await start()
    b.serve_module(MOD)
    down = f"https://127.0.0.1:{closed_port()}"
    result = await run(goproxy_check(f"{down}|{b.url}", sumdb), vantage)
    assert result.ok, result.failure
    assert result.facts["served_by"]["zip"] == b.url


async def test_unreachable_proxy_without_fallback(sumdb, vantage):
    down = f"https://127.0.0.1:{closed_port()}"
    result = await run(goproxy_check(f"{down},direct", sumdb), vantage)
    assert failure_of(result) == ("connection_refused", "connect")


async def test_not_found_everywhere_then_direct(start, sumdb, vantage):
    a = await start()
    result = await run(goproxy_check(f"{a.url},direct", sumdb), vantage)
    assert failure_of(result) == ("module_not_found", "http_round_trip")
    assert "direct" in result.failure.detail


async def test_not_found_then_off(start, sumdb, vantage):
    a = await start()
    result = await run(goproxy_check(f"{a.url},off", sumdb), vantage)
    assert failure_of(result) == ("module_not_found", "http_round_trip")
    assert "GOPROXY=off" in result.failure.detail


async def test_a_proxy_error_outranks_a_later_not_found(start, sumdb, vantage):
    a, b = await start(), await start()
    a.routes[f"{BASE}.info"] = Response(502, b"bad gateway\n")
    result = await run(goproxy_check(f"{a.url}|{b.url}", sumdb), vantage)
    assert failure_of(result) == ("http_status", "http_round_trip")
    assert "502" in result.failure.detail


async def test_sumdb_proxy_walk_stops_on_errors(start, vantage):
    a, b = await start(), await start()
    a.serve_module(MOD)
    b.proxied_logs[KEY.name] = make_log(MOD)
    a.routes[f"/sumdb/{KEY.name}/supported"] = Response(503, b"")
    result = await run(goproxy_check(f"{a.url},{b.url}"), vantage)
    assert failure_of(result) == ("http_status", "http_round_trip")
    assert not any("/sumdb/" in r for r in b.requests)
    # With '|' the next proxy is asked, and serves the database.
    result = await run(goproxy_check(f"{a.url}|{b.url}"), vantage)
    assert result.ok, result.failure
    assert result.facts["sumdb"]["url"] == f"{b.url}/sumdb/{KEY.name}"
