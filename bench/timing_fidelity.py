"""How close are our HTTP phase timings to curl's? Side by side, on loopback.

Starts the test HTTPS server (tests/servers/http.py) in its own process with a certificate
made for the run, then, interleaved round by round, times N requests with:
  - monitor's http probe (run_probe: connect/TLS through the _net primitives),
  - curl -w '%{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}',
  - a naive httpx client timed with its `trace` extension,
and runs `openssl s_time -new` for a reference connect+handshake cost. Prints per-phase
medians (ms) and each tool's ratio to curl.

    python bench/timing_fidelity.py [-n 200] [--path /big/100000] [--s-time-seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers, when run as a script

from monitor.config import HttpCheck  # noqa: E402
from monitor.probes import run_probe  # noqa: E402
from monitor.vantage import Vantage  # noqa: E402
from tests.servers.certs import make_pki  # noqa: E402

PHASES = ("connect", "tls", "ttfb", "transfer", "total")
WARMUP = 5  # first rounds of each tool, discarded (imports, caches, TLS context set-up)


def start_server(cert: Path, key: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.http", "--cert", str(cert), "--key", str(key)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"test server did not start (said {line!r})")
    return proc, int(line)


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.stdin:
        proc.stdin.close()  # the server stops when its stdin closes
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


async def ours(url: str, vantage: Vantage) -> dict[str, float]:
    check = HttpCheck(name="bench", kind="http", url=url, connect_to="127.0.0.1", interval=60, timeout=10, vantages=["bench"])
    result = await run_probe(check, vantage)
    if not result.ok:
        raise SystemExit(f"probe failed: {result.failure}")
    return {**{p: result.phases[p] for p in PHASES[:-1]}, "total": result.duration_s}


async def naive_httpx(url: str, context: ssl.SSLContext) -> dict[str, float]:
    """What a trace-timed httpx client reports: connect_tcp (which resolves the name inside),
    start_tls, request sent -> headers, body."""
    marks: dict[str, float] = {}

    async def trace(event: str, info: dict) -> None:
        marks[event.split(".", 1)[1]] = time.perf_counter()

    started = time.perf_counter()
    async with httpx.AsyncClient(verify=context, trust_env=False) as client:
        response = await client.get(url, extensions={"trace": trace})
        response.raise_for_status()
    ended = time.perf_counter()
    return {
        "connect": marks["connect_tcp.complete"] - marks["connect_tcp.started"],
        "tls": marks["start_tls.complete"] - marks["start_tls.started"],
        "ttfb": marks["receive_response_headers.complete"] - marks["send_request_headers.started"],
        "transfer": marks["receive_response_body.complete"] - marks["receive_response_headers.complete"],
        "total": ended - started,
    }


def curl(url: str, port: int, ca: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Two fresh connections from one curl process: the first pays the process's cold
    OpenSSL start (curl sets up TLS after the TCP connect, so this lands in its TLS phase);
    the second runs warm, as a long-lived prober does."""
    out = subprocess.run(
        ["curl", "-sS", "--http1.1", "--cacert", str(ca), "--resolve", f"localhost:{port}:127.0.0.1",
         "-H", "Connection: close", "-o", "/dev/null", "-o", "/dev/null",
         "-w", "%{time_namelookup} %{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}\\n", url, url],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout
    cold, warm = (_curl_phases(line) for line in out.splitlines())
    return cold, warm


def _curl_phases(line: str) -> dict[str, float]:
    lookup, connect, appconnect, starttransfer, total = map(float, line.split())
    return {
        "connect": connect - lookup,
        "tls": appconnect - connect,
        "ttfb": starttransfer - appconnect,
        "transfer": total - starttransfer,
        "total": total,
    }


def s_time(port: int, ca: Path, seconds: int) -> tuple[float, int] | None:
    """Mean seconds per new connection + full handshake from `openssl s_time -new`."""
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds), "-CAfile", str(ca)],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    m = re.search(r"(\d+) connections in (\d+) real seconds", out)
    if not m or int(m.group(1)) == 0:
        return None
    count = int(m.group(1))
    return int(m.group(2)) / count, count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="requests per tool (max 1000)")
    parser.add_argument("--path", default="/big/100000", help="server path (see tests/servers/http.py)")
    parser.add_argument("--s-time-seconds", type=int, default=3)
    args = parser.parse_args()
    n = max(1, min(args.n, 1000))
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found")

    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp))
        server, port = start_server(pki.valid.cert, pki.valid.key)
        try:
            url = f"https://localhost:{port}{args.path}"
            vantage = Vantage(name="bench", extra_ca_files=(str(pki.ca_path),))
            context = ssl.create_default_context(cafile=str(pki.ca_path))
            runs: dict[str, list[dict[str, float]]] = {"curl": [], "curl cold": [], "ours": [], "naive httpx": []}
            for i in range(n + WARMUP):  # interleaved, so drift and noise hit all tools alike
                cold, warm = curl(url, port, pki.ca_path)
                sample = {
                    "curl": warm,
                    "curl cold": cold,
                    "ours": await ours(url, vantage),
                    "naive httpx": await naive_httpx(url, context),
                }
                if i >= WARMUP:
                    for tool, phases in sample.items():
                        runs[tool].append(phases)
            reference = s_time(port, pki.ca_path, args.s_time_seconds)
        finally:
            stop_server(server)

    med = {tool: {p: statistics.median(r[p] for r in rs) * 1000 for p in PHASES} for tool, rs in runs.items()}
    print(f"HTTPS GET {args.path} on loopback, {n} runs per tool, medians in ms (TLS 1.3, HTTP/1.1)")
    print("curl = 2nd connection of a curl process (warm); curl cold = its 1st\n")
    print(f"{'phase':<9}{'curl':>9}{'ours':>9}{'ours/curl':>11}{'naive httpx':>13}{'naive/curl':>12}{'curl cold':>11}")
    for p in PHASES:
        c, o, h, k = (med[t][p] for t in ("curl", "ours", "naive httpx", "curl cold"))
        print(f"{p:<9}{c:>9.3f}{o:>9.3f}{o / c:>10.2f}x{h:>13.3f}{h / c:>11.2f}x{k:>11.3f}")
    closer = [p for p in PHASES[:-1] if abs(med["ours"][p] - med["curl"][p]) < abs(med["naive httpx"][p] - med["curl"][p])]
    print(f"\nours is closer to curl than naive httpx in {len(closer)} of {len(PHASES) - 1} phases ({', '.join(closer) or 'none'})")
    if reference:
        mean, count = reference
        print(f"openssl s_time -new: {mean * 1000:.3f} ms per connect+handshake+close (mean of {count}, 1 s clock);"
              f" connect+tls medians: curl {med['curl']['connect'] + med['curl']['tls']:.3f},"
              f" ours {med['ours']['connect'] + med['ours']['tls']:.3f},"
              f" naive httpx {med['naive httpx']['connect'] + med['naive httpx']['tls']:.3f}")
    else:
        print("openssl s_time gave no figure")


if __name__ == "__main__":
    asyncio.run(main())
