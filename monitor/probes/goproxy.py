"""goproxy probe: fetch module@version through a Go module proxy as `go mod download` does,
and prove the bytes honest.

1. Resolve the version: as configured, or for "latest" the highest release in @v/list
   (else @latest). Then @v/V.info (its Version must be V), @v/V.mod, @v/V.zip. Each request
   walks the GOPROXY list as the go command does (',' falls through on 404/410 only, '|' on
   any error; direct and off end the list) and records which entry served it.
2. Check the zip as golang.org/x/mod/zip does and compute the go.sum hashes (`h1:`) of the
   zip and the .mod file.
3. Compare with the pinned hashes and/or the checksum database: /lookup/M@V at the database
   (through the first proxy whose /sumdb/<name>/supported answers 200, else directly),
   its signed note checked with the verifier key, its record proven to be in the signed
   tree, and that tree proven consistent with the largest tree verified before — all with
   tiles, as golang.org/x/mod/sumdb does (with the fix for CVE-2026-56865: every tile is
   authenticated; and, as for CVE-2026-56864, hashes are read from the record only).

A hash mismatch is `checksum_mismatch` (facts.expected holds each source's hash, facts.h1 and
gomod_h1 what the bytes hash to: the judge step names it `module_tampered` with both hashes
as evidence); a note, record or tree that fails verification is `sumdb_verification_failed`.

The largest verified tree of each database lives in a VerifiedTrees (the process-wide
VERIFIED_TREES by default): the daemon seeds it from the store, and reads the tree a probe
newly verified from its facts (`sumdb_tree`) to store it. The probe never touches the store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from monitor.config import GoproxyCheck
from monitor.credentials import CredentialsUnavailable
from monitor.model import Failure, FailureClass, Operation, ProbeResult
from monitor.probes import http as _http
from monitor.probes._classify import classify
from monitor.probes._gomod import check_module_version, escape_path, escape_version, gomod_h1, pick_latest
from monitor.probes._goproxy_list import DIRECT, OFF, ProxyEntry, parse_goproxy
from monitor.probes._measure import Measurement
from monitor.probes._modzip import MAX_GO_MOD, check_and_hash
from monitor.probes._net import NetError
from monitor.probes._sumdb import SumdbError, check_proof, format_tree, parse_lookup, plan_proof, verifier_for
from monitor.probes._tlog import HASH_SIZE, InconsistentTiles, Tile, Tree
from monitor.redact import redact_url
from monitor.vantage import Vantage

# Caps on what a proxy or database may send (the zip's is the check's max_zip_bytes).
_MAX_SMALL = 1 << 20  # @v/list, @latest, .info, /supported, /lookup
_MAX_REDIRECTS = 10  # as Go's net/http client
_WRITE_CHUNK = 1 << 16

F = FailureClass


class VerifiedTrees:
    """The largest tree each checksum database was proven to have, shared by the probes of a
    process. A probe holds the database's lock from reading the known tree until it has
    advanced it to the tree it verified, so two probes never both extend the same tree unseen
    by each other (a fork between their two trees would go unnoticed)."""

    def __init__(self) -> None:
        self._trees: dict[str, Tree] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def get(self, name: str) -> Tree | None:
        return self._trees.get(name)

    def seed(self, name: str, size: int, root_b64: str) -> None:
        """Start from a tree verified earlier (the store's; see monitor.store.sumdb)."""
        self.advance(name, Tree(size, base64.b64decode(root_b64)))

    def advance(self, name: str, tree: Tree) -> None:
        """Keep `tree` if it is larger than the known one (the caller proved it consistent)."""
        known = self._trees.get(name)
        if known is None or tree.size > known.size:
            self._trees[name] = tree

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


VERIFIED_TREES = VerifiedTrees()


async def probe_goproxy(check: GoproxyCheck, vantage: Vantage, *, deadline: float, trees: VerifiedTrees | None = None) -> ProbeResult:
    m = Measurement(check, vantage, deadline)
    run = _Run(check, m, VERIFIED_TREES if trees is None else trees)
    async with run.client:
        try:
            await run.measure()
        except _Stop as stop:
            return run.result(stop.failure)
    return run.result()


class _Stop(Exception):
    """Ends the probe with `failure`; `not_found` (a 404/410) lets a ',' GOPROXY entry fall through."""

    def __init__(self, failure: Failure, *, not_found: bool = False):
        super().__init__(failure.detail)
        self.failure = failure
        self.not_found = not_found


@dataclass
class _Comparison:
    what: str  # "zip" or "go.mod"
    source: str  # where the expected hash came from
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got


class _Run:
    def __init__(self, check: GoproxyCheck, m: Measurement, trees: VerifiedTrees):
        self.check = check
        self.m = m
        self.trees = trees
        self.entries = parse_goproxy(check.proxy)
        self.proxy_hosts = {urlsplit(e.url).netloc for e in self.entries}  # where check.auth is sent
        self.timing = _http.Timing(m)
        self.client = _http.open_client(m, self.timing)
        self.comparisons: list[_Comparison] = []
        self.sumdb_failure: Failure | None = None
        m.facts.update(module=check.module, requests=[], served_by={})

    # --- the measurement ---------------------------------------------------------------------

    async def measure(self) -> None:
        check, facts = self.check, self.m.facts
        version = check.version if check.version != "latest" else await self._latest()
        facts["version"] = version
        path, vers = escape_path(check.module), escape_version(version)

        info = await self._try_proxies("info", f"/{path}/@v/{vers}.info", cap=_MAX_SMALL)
        _check_info(info, version)
        gomod = await self._try_proxies("mod", f"/{path}/@v/{vers}.mod", cap=MAX_GO_MOD)
        facts["gomod_h1"] = gomod_h1(gomod)
        with tempfile.TemporaryFile() as zip_file:  # on disk, never whole in memory; gone on close
            size = await self._try_proxies("zip", f"/{path}/@v/{vers}.zip", cap=check.max_zip_bytes, sink=zip_file)
            try:
                zipped = await asyncio.to_thread(check_and_hash, zip_file, size, check.module, version, deadline=self.m.deadline)
            except Exception as exc:  # BadModuleZip, ZipTooLarge, TimeoutError: classify names them
                raise _Stop(_failure(exc, Operation.VERIFY)) from None
        facts.update(h1=zipped.h1, zip_files=zipped.files, zip_uncompressed_bytes=zipped.uncompressed_bytes)

        self._compare_pins(zipped.h1, facts["gomod_h1"])
        if check.sumdb != "off":
            try:
                await self._verify_with_sumdb(version, zipped.h1, facts["gomod_h1"])
            except _Stop as stop:  # the pins may still have spoken: decide in result()
                self.sumdb_failure = stop.failure

    async def _latest(self) -> str:
        """The version `go mod download M@latest` picks: from @v/list, else @latest."""
        path = escape_path(self.check.module)
        listed = await self._try_proxies("list", f"/{path}/@v/list", cap=_MAX_SMALL)
        version = pick_latest(listed.decode("utf-8", "replace").splitlines(), self.check.module)
        if version is None:
            body = await self._try_proxies("latest", f"/{path}/@latest", cap=_MAX_SMALL)
            version = _info_version(body)
            try:
                check_module_version(self.check.module, version)
            except ValueError as exc:
                raise _Stop(Failure(F.HTTP_PROTOCOL_ERROR, Operation.VERIFY, f"@latest: {exc}")) from None
        return version

    def _compare_pins(self, zip_h1: str, mod_h1: str) -> None:
        if self.check.expect_h1:
            self.comparisons.append(_Comparison("zip", "expect_h1 in the config", self.check.expect_h1, zip_h1))
        if self.check.expect_gomod_h1:
            self.comparisons.append(_Comparison("go.mod", "expect_gomod_h1 in the config", self.check.expect_gomod_h1, mod_h1))

    async def _verify_with_sumdb(self, version: str, zip_h1: str, mod_h1: str) -> None:
        key, explicit_url = verifier_for(self.check.sumdb, self.check.sumdb_key)
        base = self.check.sumdb_url or explicit_url or await self._sumdb_base(key.name)
        path = f"{escape_path(self.check.module)}@{escape_version(version)}"
        body = await self._get(f"{base.rstrip('/')}/lookup/{path}", "lookup", cap=_MAX_SMALL)
        try:
            lookup = parse_lookup(body, key, self.check.module, version)
        except SumdbError as exc:
            raise _Stop(_failure(exc, Operation.VERIFY)) from None
        sumdb = self.m.facts["sumdb"] = {
            "name": key.name,
            "url": base,
            "record_id": lookup.record_id,
            "tree": format_tree(lookup.tree),
            "note": lookup.note.decode(),
        }
        if lookup.unknown_signers:
            sumdb["unknown_signers"] = list(lookup.unknown_signers)
        async with self._locked(self.trees.lock(key.name)):  # held across the tile fetches; see VerifiedTrees
            known = self.trees.get(key.name)
            if known is not None:
                sumdb["known_tree"] = format_tree(known)
            try:
                proof = plan_proof(lookup, known)
                tiles = [await self._tile(base, tile) for tile in proof.plan.tiles]  # a handful: one per tile level, plus parents
                verified = check_proof(lookup, proof, tiles)
            except (SumdbError, InconsistentTiles) as exc:
                raise _Stop(_failure(exc, Operation.VERIFY)) from None
            self.trees.advance(key.name, verified)
        sumdb["verified"] = True
        self.m.facts["sumdb_tree"] = {"name": key.name, "size": verified.size, "hash": base64.b64encode(verified.hash).decode()}
        source = f"{key.name} record {lookup.record_id} (tree {lookup.tree.size})"
        self.comparisons.append(_Comparison("zip", source, lookup.zip_h1, zip_h1))
        self.comparisons.append(_Comparison("go.mod", source, lookup.gomod_h1, mod_h1))

    @contextlib.asynccontextmanager
    async def _locked(self, lock: asyncio.Lock):
        try:
            async with asyncio.timeout(self.m.deadline - time.monotonic()):
                await lock.acquire()
        except TimeoutError:
            raise _Stop(Failure(F.GENERIC_TIMEOUT_ERROR, Operation.VERIFY, "deadline passed waiting for another probe verifying the same checksum database")) from None
        try:
            yield
        finally:
            lock.release()

    async def _sumdb_base(self, name: str) -> str:
        """Where to ask the database (cmd/go's dbClient.initBase): through the first proxy whose
        /sumdb/<name>/supported answers 200, walking the list as for modules; if every proxy
        said not found (or direct/off was reached), the database itself at https://<name>.
        Any other error is the database's being unavailable."""
        try:
            await self._try_proxies("sumdb_supported", f"/sumdb/{name}/supported", cap=_MAX_SMALL)
        except _Stop as stop:
            if stop.not_found:
                return f"https://{name}"
            raise
        return f"{self.m.facts['served_by']['sumdb_supported']}/sumdb/{name}"

    async def _tile(self, base: str, tile: Tile) -> bytes:
        """A tile's data; a partial tile missing (404/410) is read from the full tile that
        replaced it once the tree grew, as sumdb.Client does."""
        want = tile.width * HASH_SIZE
        try:
            return await self._get(f"{base.rstrip('/')}/{tile.path}", "tile", cap=want)
        except _Stop as stop:
            if not stop.not_found or tile.full:
                raise
        full = await self._get(f"{base.rstrip('/')}/{tile.widened().path}", "tile", cap=(1 << tile.height) * HASH_SIZE)
        return full[:want]

    # --- HTTP ----------------------------------------------------------------------------------

    async def _try_proxies(self, what: str, path: str, *, cap: int, sink: IO[bytes] | None = None) -> Any:
        """GET `path` from the GOPROXY list with the go command's fall-through (TryProxies),
        keeping its choice of error to report: a proxy's error over a not-found."""
        best: _Stop | None = None
        for entry in self.entries:  # bounded by the list
            if entry.url in (DIRECT, OFF):
                stop = _end_of_list(entry, what)
            else:
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()
                try:
                    result = await self._get(entry.url + path, what, cap=cap, sink=sink, proxy=entry.url)
                except _Stop as failed:
                    stop = failed
                else:
                    self.m.facts["served_by"][what] = entry.url
                    return result
            if best is None or best.not_found or not stop.not_found:  # a later error of equal or higher rank wins
                best = stop
            if entry.url in (DIRECT, OFF) or (not stop.not_found and not entry.fall_back_on_error):
                break
        assert best is not None  # the list is never empty (parse_goproxy)
        raise best

    async def _get(self, url: str, what: str, *, cap: int, sink: IO[bytes] | None = None, proxy: str | None = None) -> Any:
        """GET `url`, redirects followed, and its body read within `cap`: the bytes, or the
        size written to `sink`. A status other than 200 raises _Stop (not_found for 404/410)."""
        record: dict[str, Any] = {"what": what, "url": redact_url(url)}
        if proxy is not None:
            record["proxy"] = proxy
        self.m.facts["requests"].append(record)
        before = dict(self.m.phases)
        started = time.perf_counter()
        try:
            return await self._exchange(url, what, cap, sink, record)
        except _Stop as stop:  # how this request failed, per proxy: the result's failure is one request's only
            record["failure"] = {"class": stop.failure.cls.value, "operation": stop.failure.operation.value}
            raise
        finally:
            record["seconds"] = round(time.perf_counter() - started, 6)
            record["phases"] = {k: round(v - before.get(k, 0.0), 6) for k, v in self.m.phases.items() if v != before.get(k, 0.0)}

    async def _exchange(self, url: str, what: str, cap: int, sink: IO[bytes] | None, record: dict[str, Any]) -> Any:
        response: httpx.Response | None = None
        try:
            try:
                response = await self._follow(url)
            except CredentialsUnavailable as e:
                raise _Stop(_http.credentials_failure(e)) from None
            except NetError as e:  # resolve, connect or TLS: the backend names the operation
                if e.tls is not None:  # what the handshake showed: the chain of a MITM, say
                    record["tls"] = e.tls.facts()
                raise _Stop(e.failure) from None
            except _http.EXCHANGE_ERRORS as exc:
                raise _Stop(_failure(exc, Operation.HTTP_ROUND_TRIP)) from None
            record["status"] = status = response.status_code
            if str(response.url) != url:
                record["final_url"] = redact_url(str(response.url))
            stream = response.extensions.get("network_stream")
            if isinstance(stream, _http.Stream):  # the connection that carried the answer
                record["ip"] = stream.ip
                if stream.tls is not None:
                    record["tls_version"] = stream.tls.info.version
            if status != 200:  # the go command accepts 200 only
                not_found = status in (404, 410)
                cls = F.MODULE_NOT_FOUND if not_found and what != "tile" else F.HTTP_STATUS
                raise _Stop(Failure(cls, Operation.HTTP_ROUND_TRIP, f"{what}: {redact_url(url)}: status {status}"), not_found=not_found)
            try:
                body = await _read(response, cap, sink, what, record)
            except _http.EXCHANGE_ERRORS as exc:
                raise _Stop(_failure(exc, Operation.READ)) from None
            self.timing.end(complete=True)
            return body
        except _Stop:
            self.timing.end(complete=False)
            raise
        finally:
            if response is not None:
                await response.aclose()

    async def _follow(self, url: str) -> httpx.Response:
        """The response to GET `url` after redirects (net/http follows up to 10), body unread."""
        headers = {"Accept-Encoding": "identity"}
        if self.check.auth is not None and urlsplit(url).netloc in self.proxy_hosts:  # never to another host
            name, value = self.check.auth.header()
            headers[name] = value
        request = self.client.build_request("GET", url, headers=headers)
        response = await self.client.send(request, stream=True)
        for _ in range(_MAX_REDIRECTS):
            if response.next_request is None:
                return response
            await response.aclose()
            self.timing.next_hop()
            response = await self.client.send(response.next_request, stream=True)
        if response.next_request is not None:
            await response.aclose()
            raise httpx.TooManyRedirects(f"stopped after {_MAX_REDIRECTS} redirects", request=request)
        return response

    # --- the result ----------------------------------------------------------------------------

    def result(self, failure: Failure | None = None) -> ProbeResult:
        """The result: `failure` if the measurement stopped short; else checksum_mismatch
        (module_tampered) if any hash differs, else the checksum database's failure if it
        failed, else ok."""
        facts = self.m.facts
        zip_request = next((r for r in facts["requests"] if r["what"] == "zip" and r.get("status") == 200), None)
        if zip_request is not None and "bytes" in zip_request:
            facts["zip_bytes"] = zip_request["bytes"]
            transfer = zip_request["phases"].get("transfer", 0.0)
            if transfer > 0:
                facts["zip_bytes_per_second"] = round(zip_request["bytes"] / transfer, 1)
        if failure is not None:
            return self.m.result(failure)
        mismatches = [c for c in self.comparisons if not c.ok]
        if self.comparisons:
            facts["checksum_ok"] = not mismatches
            facts["checked_against"] = sorted({c.source for c in self.comparisons})
        for c in self.comparisons:
            facts.setdefault("expected", {}).setdefault(c.what, {})[c.source] = c.expected
        if mismatches:
            detail = "; ".join(f"{c.what}: got {c.got}, {c.source} says {c.expected}" for c in mismatches)
            return self.m.result(Failure(F.CHECKSUM_MISMATCH, Operation.VERIFY, detail))
        if self.sumdb_failure is not None:
            return self.m.result(self.sumdb_failure)
        return self.m.result()


def _end_of_list(entry: ProxyEntry, what: str) -> _Stop:
    """What reaching `direct` or `off` means here: the go command would fetch from the origin
    (not measured by this check) or give up; both count as "not found" for the proxies."""
    if entry.url == OFF:
        detail = f"{what}: module lookup disabled by GOPROXY=off"
    else:
        detail = f"{what}: no proxy served it; the go command would now fetch from the origin (direct), which this check does not measure"
    return _Stop(Failure(F.MODULE_NOT_FOUND, Operation.HTTP_ROUND_TRIP, detail), not_found=True)


async def _read(response: httpx.Response, cap: int, sink: IO[bytes] | None, what: str, record: dict[str, Any]) -> Any:
    """The body as sent (never decoded), refused past `cap`: in memory, or written to `sink`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _Stop(Failure(F.RESPONSE_TOO_LARGE, Operation.READ, f"{what}: Content-Length {declared} exceeds the limit of {cap} bytes"))
    body = bytearray()  # appended in place: a body sent in tiny chunks costs its bytes, not an object per chunk
    received = 0
    async with contextlib.aclosing(response.aiter_raw()) as stream:
        async for chunk in stream:  # each chunk >= 1 byte, so at most cap + 1 turns
            received += len(chunk)
            record["bytes"] = received
            if received > cap:
                raise _Stop(Failure(F.RESPONSE_TOO_LARGE, Operation.READ, f"{what}: body exceeds the limit of {cap} bytes"))
            if sink is not None:
                sink.write(chunk)
            else:
                body += chunk
    record["bytes"] = received
    if sink is not None:
        sink.flush()
        return received
    return bytes(body)


def _info_version(body: bytes) -> str:
    try:
        info = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise _Stop(Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, f"info: not JSON: {exc}")) from None
    version = info.get("Version") if isinstance(info, dict) else None
    if not isinstance(version, str):
        raise _Stop(Failure(F.HTTP_PROTOCOL_ERROR, Operation.READ, "info: no Version string"))
    return version


def _check_info(body: bytes, version: str) -> None:
    """A proxy asked for a canonical version must answer for exactly that version (proxyRepo.Stat)."""
    got = _info_version(body)
    if got != version:
        raise _Stop(Failure(F.HTTP_PROTOCOL_ERROR, Operation.VERIFY, f"info: proxy returned info for version {got} instead of requested version {version}"))


def _failure(exc: BaseException, operation: Operation) -> Failure:
    cls, detail = classify(exc)
    return Failure(cls, operation, detail)


