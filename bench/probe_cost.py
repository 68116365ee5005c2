"""Probe CPU cost against blackbox_exporter: dns (UDP), tcp, tls and https, side by side.

    python bench/probe_cost.py [-n 2000] [--reps 3] [--concurrency 8] [--kinds dns,tcp,tls,https]

Starts on loopback, each in a temporary directory: nginx (its own config and pid file; an EC
P-256 leaf from the test CA, one TLS and one plain port), unbound (tests/servers/dns_unbound.py)
and prometheus-blackbox-exporter with one module per kind. Then, per rep and kind, in turn:

- **monitor**: `n` probes at `--concurrency` in this process — `run_probe` for tcp/tls/http,
  `run_dns_round` for dns with no injection window (as bench/dns_bench.py) — CPU is this
  process's `process_time` over the batch (nothing else runs in it meanwhile);
- **blackbox**: the same `n` through `GET /probe` from `--concurrency` kept-alive client
  threads; CPU is the exporter's utime+stime from /proc (the HTTP client here is not counted).

The order of the two alternates rep by rep. Every probe's success is checked (a failure is
counted and reported, never timed as if it were a success). Medians and min–max over reps of
CPU ms per probe and probes/s, the median ratio of CPU per probe, and both processes' RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: tests.servers

from bench._proc import CLOCK_TICK, cpu_seconds  # noqa: E402
from monitor.config import DnsCheck, HttpCheck, TcpCheck, TlsCheck  # noqa: E402
from monitor.model import ProbeResult  # noqa: E402
from monitor.probes import run_probe  # noqa: E402
from monitor.probes.dns import run_dns_round  # noqa: E402
from monitor.vantage import Vantage  # noqa: E402
from tests.servers.certs import CertFiles, TestCA  # noqa: E402
from tests.servers.dns_unbound import free_port, run_unbound  # noqa: E402

NAME = "www.example.test"
ADDRESS = "93.184.216.34"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS = ("dns", "tcp", "tls", "https")
LABELS = {
    "dns": "dns A over UDP (no injection window)",
    "tcp": "tcp connect",
    "tls": "tls handshake (verified)",
    "https": "https GET, fresh connection",
}


@dataclass
class Sample:
    seconds: float
    cpu: float
    failures: int


# --- servers ---------------------------------------------------------------------------------


class Nginx:
    """nginx on 127.0.0.1 with its own config, pid file and logs; TLS and plain ports answer
    `GET /` with a 3-byte body."""

    def __init__(self, directory: Path, leaf: CertFiles):
        directory.mkdir()
        self.tls_port, self.plain_port = free_port(), free_port()
        conf = directory / "nginx.conf"
        temp = "\n".join(f"    {k}_temp_path {directory}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf.write_text(
            f"daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {directory}/nginx.pid;\n"
            f"error_log {directory}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log off;\n{temp}\n    keepalive_timeout 5;\n"
            f"    server {{\n        listen 127.0.0.1:{self.plain_port};\n        listen 127.0.0.1:{self.tls_port} ssl;\n"
            f"        ssl_certificate {leaf.cert};\n        ssl_certificate_key {leaf.key};\n"
            "        location / { return 200 \"ok\\n\"; }\n    }\n}\n"
        )
        self.process = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf)], stderr=subprocess.DEVNULL)
        _wait_listening(self.tls_port, self.process, "nginx")

    def close(self) -> None:
        _stop(self.process)


class Blackbox:
    """prometheus-blackbox-exporter with a module per kind, asked `/probe` over kept-alive HTTP."""

    def __init__(self, directory: Path, ca: Path):
        self.port = free_port()
        tls = f"tls_config:\n        ca_file: {ca}\n        server_name: localhost"
        config = directory / "blackbox.yml"
        config.write_text(
            "modules:\n"
            "  dns:\n    prober: dns\n    timeout: 5s\n    dns:\n      transport_protocol: udp\n"
            f"      query_name: {NAME}\n      query_type: A\n      preferred_ip_protocol: ip4\n"
            "      ip_protocol_fallback: false\n      valid_rcodes: [NOERROR]\n"
            "  tcp:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n"
            "  tls:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n"
            f"      tls: true\n      {tls}\n"
            "  https:\n    prober: http\n    timeout: 5s\n    http:\n      method: GET\n      valid_status_codes: [200]\n"
            "      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      fail_if_not_ssl: true\n"
            f"      {tls.replace(chr(10) + '      ', chr(10) + '        ')}\n"
        )
        self.log = (directory / "blackbox.log").open("wb")
        self.process = subprocess.Popen(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT
        )
        _wait_listening(self.port, self.process, "blackbox_exporter")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_mib(self) -> float:
        return _rss_mib(self.process.pid)

    def run(self, module: str, target: str, n: int, concurrency: int) -> Sample:
        """`n` probes from `concurrency` threads, each with its own kept-alive connection."""
        failures = [0] * concurrency
        shares = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]

        def worker(i: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
                for _ in range(shares[i]):
                    body = client.get("/probe", params={"module": module, "target": target}).text
                    failures[i] += "\nprobe_success 1" not in body

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
        cpu, wall = self.cpu(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return Sample(time.perf_counter() - wall, self.cpu() - cpu, sum(failures))

    def close(self) -> None:
        _stop(self.process)
        self.log.close()


def _wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    import socket

    for _ in range(100):  # up to ~5 s
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _rss_mib(pid: int | str) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


# --- monitor's side ---------------------------------------------------------------------------


class HandshakeClock:
    """CPU time spent inside OpenSSL's handshake (thread_time around each real
    ssl.SSLObject.do_handshake call), to split a TLS probe's cost into OpenSSL's part and
    the rest. Only with --only-monitor: it wraps a stdlib method for the run's duration."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = ssl.SSLObject.do_handshake

    def __enter__(self) -> HandshakeClock:
        original = self._original

        def do_handshake(tls: ssl.SSLObject) -> None:
            started = time.thread_time()
            try:
                return original(tls)
            finally:
                self.seconds += time.thread_time() - started

        ssl.SSLObject.do_handshake = do_handshake  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        ssl.SSLObject.do_handshake = self._original  # type: ignore[method-assign]


def checks(nginx: Nginx, dns_udp: str) -> dict[str, Callable[[], Awaitable[bool]]]:
    """Per kind, one probe run the way the daemon runs it; True if it succeeded."""
    base = {"name": "bench", "interval": 60, "timeout": 5, "vantages": ["local"]}
    dns = DnsCheck.model_validate({**base, "kind": "dns", "query": NAME, "resolvers": [dns_udp]}).model_copy(update={"injection_window": 0.0})
    tcp = TcpCheck.model_validate({**base, "kind": "tcp", "target": f"127.0.0.1:{nginx.plain_port}"})
    tls = TlsCheck.model_validate({**base, "kind": "tls", "target": f"localhost:{nginx.tls_port}", "connect_to": "127.0.0.1"})
    https = HttpCheck.model_validate({**base, "kind": "http", "url": f"https://localhost:{nginx.tls_port}/", "connect_to": "127.0.0.1"})
    vantage = VANTAGE[0]

    async def dns_probe() -> bool:
        result = (await run_dns_round(dns, vantage, deadline=time.monotonic() + 5))[0]
        return result.ok and result.facts["addresses"] == [ADDRESS]

    def single(check) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            result: ProbeResult = await run_probe(check, vantage)
            return result.ok

        return probe

    return {"dns": dns_probe, "tcp": single(tcp), "tls": single(tls), "https": single(https)}


VANTAGE: list[Vantage] = []


def run_ours(probe: Callable[[], Awaitable[bool]], n: int, concurrency: int) -> Sample:
    async def batch() -> int:
        remaining = [n]
        failures = [0]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                failures[0] += not await probe()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return failures[0]

    loop = asyncio.new_event_loop()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        failures = loop.run_until_complete(batch())
        return Sample(time.perf_counter() - wall, time.process_time() - cpu, failures)
    finally:
        loop.close()


# --- the run ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="probes per kind, per tool, per rep (default 2000)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved reps (default 3)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--only-monitor", action="store_true", help="run monitor's probes only (to profile them), no blackbox figures")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if BLACKBOX is None or not Path(NGINX).exists():
        print("needs nginx and prometheus-blackbox-exporter (apt-get install nginx-light prometheus-blackbox-exporter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = TestCA(directory)
        leaf = ca.issue("localhost", "127.0.0.1", stem="leaf")  # EC P-256
        VANTAGE.append(Vantage(name="local", extra_ca_files=(str(ca.path),)))
        nginx = Nginx(directory / "nginx", leaf)
        try:
            with run_unbound(directory / "unbound", [f"{NAME}. 300 IN A {ADDRESS}"]) as unbound:
                blackbox = Blackbox(directory, ca.path)
                try:
                    run(args, kinds, nginx, unbound.port, blackbox)
                finally:
                    blackbox.close()
        finally:
            nginx.close()
    return 0


def run(args: argparse.Namespace, kinds: list[str], nginx: Nginx, dns_port: int, blackbox: Blackbox) -> None:
    ours = checks(nginx, f"udp://127.0.0.1:{dns_port}")
    targets = {
        "dns": f"127.0.0.1:{dns_port}",
        "tcp": f"127.0.0.1:{nginx.plain_port}",
        "tls": f"127.0.0.1:{nginx.tls_port}",
        "https": f"https://127.0.0.1:{nginx.tls_port}/",
    }
    n, c = args.n, args.concurrency
    tools: dict[str, dict[str, Callable[[int], Sample]]] = {
        kind: {
            "monitor": lambda k, kind=kind: run_ours(ours[kind], k, c),
            "blackbox": lambda k, kind=kind: blackbox.run(kind, targets[kind], k, c),
        }
        for kind in kinds
    }
    if args.only_monitor:
        for kind in tools:
            del tools[kind]["blackbox"]
    for kind in kinds:  # warm-up: imports, contexts, caches, page cache
        for tool in tools[kind].values():
            tool(max(c, n // 20))
    samples: dict[tuple[str, str], list[Sample]] = {(k, t): [] for k in kinds for t in ("monitor", "blackbox")}
    started = time.perf_counter()
    for rep in range(args.reps):
        for kind in kinds:
            order = ("monitor", "blackbox") if rep % 2 == 0 else ("blackbox", "monitor")
            for tool in order:
                if tool in tools[kind]:
                    samples[kind, tool].append(tools[kind][tool](n))
    elapsed = time.perf_counter() - started
    if args.only_monitor:
        for kind in kinds:
            per = [1000 * s.cpu / n for s in samples[kind, "monitor"]]
            print(f"{LABELS[kind]:<38} monitor CPU ms/probe {statistics.median(per):.3f} ({min(per):.3f}–{max(per):.3f})"
                  f", failed {sum(s.failures for s in samples[kind, 'monitor'])}")
        for kind in kinds:
            if kind in ("tls", "https"):
                with HandshakeClock() as clock:
                    sample = tools[kind]["monitor"](n)
                print(f"{LABELS[kind]:<38} one more rep with OpenSSL's do_handshake timed: {1000 * sample.cpu / n:.3f} ms/probe,"
                      f" of which do_handshake {1000 * clock.seconds / n:.3f}")
        return

    print(f"{n} probes per kind and tool per rep, concurrency {c}, {args.reps} interleaved reps ({elapsed:.0f} s);"
          " CPU of the prober process only; median (min–max) over reps")
    print(f"{'kind':<38}{'tool':<10}{'CPU ms/probe':>24}{'probes/s':>22}{'failed':>8}")
    ratios = {}
    for kind in kinds:
        cpu = {}
        for tool in ("monitor", "blackbox"):
            ss = samples[kind, tool]
            per = [1000 * s.cpu / n for s in ss]
            rate = [n / s.seconds for s in ss]
            cpu[tool] = statistics.median(per)
            print(f"{LABELS[kind] if tool == 'monitor' else '':<38}{tool:<10}"
                  f"{cpu[tool]:>9.3f} ({min(per):.3f}–{max(per):.3f})"
                  f"{statistics.median(rate):>9.0f} ({min(rate):.0f}–{max(rate):.0f})"
                  f"{sum(s.failures for s in ss):>8d}")
        per_rep = [a.cpu / b.cpu for a, b in zip(samples[kind, "monitor"], samples[kind, "blackbox"]) if b.cpu > 0]
        ratios[kind] = (cpu["monitor"] / cpu["blackbox"], per_rep)
    print(f"\n{'kind':<38}{'monitor/blackbox CPU per probe (of medians; per-rep min–max)':>0}")
    for kind, (ratio, per_rep) in ratios.items():
        spread = f" ({min(per_rep):.2f}–{max(per_rep):.2f})" if per_rep else ""
        print(f"{LABELS[kind]:<38}{ratio:.2f}x{spread}")
    print(f"\nRSS after the run: monitor (this process) {_rss_mib('self'):.0f} MiB"
          f" (peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}), blackbox_exporter {blackbox.rss_mib():.0f} MiB")
    print(f"CPU clock resolution: blackbox from /proc at 1/{CLOCK_TICK} s, monitor from process_time")


if __name__ == "__main__":
    sys.exit(main())
