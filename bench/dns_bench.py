"""DNS probe cost: queries/s and CPU per query of the dns probe, kdig and blackbox_exporter's
dns module, over UDP and DoT, against one local unbound, in one run. See bench/README.md.

    python bench/dns_bench.py [-n 300] [--rounds 5]

Every tool asks the same unbound the same question, sequentially, `n` times per round (the
default 0.5 s injection window only n/30 times: each of those takes 0.5 s); rounds are
interleaved tool by tool so that background load hits all alike; medians over rounds are
printed with each tool's ratio to ours. Every answer is checked: a tool that fails a query
is reported, not silently timed.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: tests.servers

from bench._proc import cpu_seconds  # noqa: E402
from monitor.config import DnsCheck  # noqa: E402
from monitor.probes.dns import run_dns_round  # noqa: E402
from monitor.vantage import Vantage  # noqa: E402
from tests.servers.certs import TestCA  # noqa: E402
from tests.servers.dns_unbound import Unbound, free_port, run_unbound  # noqa: E402

NAME = "www.example.test"
ADDRESS = "93.184.216.34"
KDIG = shutil.which("kdig")
BLACKBOX = shutil.which("prometheus-blackbox-exporter")


@dataclass
class Sample:
    seconds: float
    cpu: float
    failures: int


# --- tools ---------------------------------------------------------------------------------


def ours(resolver: str, vantage: Vantage, window: float) -> Callable[[int], Sample]:
    check = DnsCheck.model_validate({
        "name": "bench", "kind": "dns", "interval": 60, "timeout": 2, "vantages": ["local"],
        "query": NAME, "resolvers": [resolver],
    })
    # model_copy skips validation: config requires a positive window, the bench also wants none.
    check = check.model_copy(update={"injection_window": window})

    def run(n: int) -> Sample:
        async def queries() -> int:
            failures = 0
            for _ in range(n):
                result = (await run_dns_round(check, vantage, deadline=time.monotonic() + 2))[0]
                failures += not (result.ok and result.facts["addresses"] == [ADDRESS])
            return failures

        cpu, wall = time.process_time(), time.perf_counter()
        failures = asyncio.run(queries())
        return Sample(time.perf_counter() - wall, time.process_time() - cpu, failures)

    return run


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def kdig(server: list[str], batched: bool) -> Callable[[int], Sample]:
    """One kdig process per query (how a cron/shell probe runs it), or all n in one process."""

    def run(n: int) -> Sample:
        cpu, wall = _children_cpu(), time.perf_counter()
        failures = 0
        if batched:
            out = subprocess.run([KDIG, *server, *([NAME, "A"] * n)], capture_output=True, text=True, check=False).stdout
            failures = n - out.count("status: NOERROR")
        else:
            for _ in range(n):
                out = subprocess.run([KDIG, *server, "+short", NAME, "A"], capture_output=True, text=True, check=False).stdout
                failures += out.strip() != ADDRESS
        return Sample(time.perf_counter() - wall, _children_cpu() - cpu, failures)

    return run


class Blackbox:
    """prometheus-blackbox-exporter with a udp and a DoT dns module, probed over HTTP."""

    def __init__(self, directory: Path, ca: Path):
        self.port = free_port()
        config = directory / "blackbox.yml"
        dns = f"query_name: {NAME}\n      query_type: A\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      valid_rcodes: [NOERROR]"
        config.write_text(
            "modules:\n"
            f"  dns_udp:\n    prober: dns\n    timeout: 2s\n    dns:\n      transport_protocol: udp\n      {dns}\n"
            f"  dns_dot:\n    prober: dns\n    timeout: 2s\n    dns:\n      transport_protocol: tcp\n      dns_over_tls: true\n"
            f"      tls_config:\n        ca_file: {ca}\n        server_name: localhost\n      {dns}\n"
        )
        self.log = (directory / "blackbox.log").open("wb")
        self.process = subprocess.Popen(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        for _ in range(100):  # up to ~5 s for it to listen
            try:
                self.client.get("/-/healthy")
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("blackbox_exporter did not start")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def tool(self, module: str, target: str) -> Callable[[int], Sample]:
        def run(n: int) -> Sample:
            cpu, wall = self.cpu(), time.perf_counter()
            failures = 0
            for _ in range(n):
                body = self.client.get("/probe", params={"module": module, "target": target}).text
                failures += "\nprobe_success 1" not in body
            return Sample(time.perf_counter() - wall, self.cpu() - cpu, failures)

        return run

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(5)
        self.log.close()


# --- the run -------------------------------------------------------------------------------


Tool = tuple[Callable[[int], Sample], int]  # how to run n queries, and n


def measure(tools: dict[str, Tool], rounds: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in tools}
    for run, n in tools.values():  # warm-up: imports, OpenSSL, page cache
        run(max(3, n // 20))
    for _ in range(rounds):
        for name, (run, n) in tools.items():
            samples[name].append(run(n))
    return samples


def report(title: str, tools: dict[str, Tool], samples: dict[str, list[Sample]], reference: str) -> None:
    print(f"\n{title}  (median of {len(samples[reference])} rounds)")
    print(f"{'tool':<36} {'queries':>7} {'q/s':>8} {'CPU ms/q':>9} {'q/s vs ours':>12} {'CPU vs ours':>12} {'failed':>7}")
    qps = {k: statistics.median(tools[k][1] / s.seconds for s in v) for k, v in samples.items()}
    cpu = {k: statistics.median(1000 * s.cpu / tools[k][1] for s in v) for k, v in samples.items()}
    for name in samples:
        failed = sum(s.failures for s in samples[name])
        print(f"{name:<36} {tools[name][1]:7d} {qps[name]:8.0f} {cpu[name]:9.3f} {qps[name] / qps[reference]:11.2f}x {cpu[name] / cpu[reference]:11.2f}x {failed:7d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="queries per tool per round (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, interleaved across tools (default 5)")
    args = parser.parse_args()
    missing = [name for name, path in (("kdig", KDIG), ("prometheus-blackbox-exporter", BLACKBOX)) if path is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install knot-dnsutils prometheus-blackbox-exporter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = TestCA(directory)
        leaf = ca.issue("localhost", "127.0.0.1", stem="unbound")
        with run_unbound(directory / "unbound", [f"{NAME}. 300 IN A {ADDRESS}"], tls=leaf) as unbound:
            blackbox = Blackbox(directory, ca.path)
            try:
                run(unbound, blackbox, Vantage(name="local", extra_ca_files=(str(ca.path),)), ca.path, args.n, args.rounds)
            finally:
                blackbox.close()
    return 0


def run(unbound: Unbound, blackbox: Blackbox, vantage: Vantage, ca: Path, n: int, rounds: int) -> None:
    udp = ["@127.0.0.1", "-p", str(unbound.port), "+notcp", "+retry=0", "+timeout=2"]
    udp_tools: dict[str, Tool] = {
        "ours (injection window 0)": (ours(unbound.udp, vantage, 0.0), n),
        # The default: 0.5 s of listening after the answer. Few queries: each takes 0.5 s.
        "ours (injection window 0.5 s)": (ours(unbound.udp, vantage, 0.5), max(2, n // 30)),
        "kdig, one process per query": (kdig(udp, batched=False), n),
        "kdig, all queries in one process": (kdig(udp, batched=True), n),
        "blackbox_exporter /probe": (blackbox.tool("dns_udp", f"127.0.0.1:{unbound.port}"), n),
    }
    report("UDP", udp_tools, measure(udp_tools, rounds), "ours (injection window 0)")

    dot = ["@127.0.0.1", "-p", str(unbound.tls_port), f"+tls-ca={ca}", "+tls-hostname=localhost", "+retry=0", "+timeout=2"]
    dot_n = max(1, n // 3)
    dot_tools: dict[str, Tool] = {
        "ours": (ours(unbound.tls("localhost"), vantage, 0.0), dot_n),
        "kdig, one process per query": (kdig(dot, batched=False), dot_n),
        "kdig, all queries in one process": (kdig(dot, batched=True), dot_n),
        "blackbox_exporter /probe": (blackbox.tool("dns_dot", f"127.0.0.1:{unbound.tls_port}"), dot_n),
    }
    report("DoT (new connection and TLS 1.3 handshake per query)", dot_tools, measure(dot_tools, rounds), "ours")


if __name__ == "__main__":
    sys.exit(main())
