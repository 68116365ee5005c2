"""The censor lab: five network namespaces made for one test module, joined by veth pairs
on a random /24 of 198.18.0.0/15 (never routed anywhere else; no namespace has a route
to the host's networks).

    censored  ─┐
               ├─ censor (router; the scenarios' iptables rules and injectors live here) ── target
    censored2 ─┘
    clean ───────────────────────────────────────────────────────────────────────────── target

The target holds, on its loopback: unbound (plain DNS on 53, DoT on 853, DoH on 443) at
.60 answering the lab's names; a CDN-like resolver at .61 answering one address of a pool
at random; a lying resolver at .62; HTTPS servers for the lab's names at .65, .66, .67
(certificates from the lab CA, which the vantages trust); an intercepting server at .71
(certificates for the sites and the module proxy from a CA nobody trusts: what a TLS
interceptor serves when the censor DNATs an address to it); git.lab's smart-HTTP server at
.73; an SSH banner (port 22) and an HTTP CONNECT proxy (3128) at .74; a Go module proxy (proxy.lab) at .68, its checksum
database (sum.lab) at .69 and a tampering module proxy at .72, which serves the same
module@version with one file changed under proxy.lab's genuine certificate (what a censor
DNATs the proxy's address to), a second honest module proxy (proxy2.lab) at .70, a go-get
server for the vanity path example.com at .73 (its go-import tag sends `direct` to
https://git.lab/repo.git), a git server (git.lab) at .74 with smart HTTP on 443 and an SSH
banner on 22, an address with nothing listening (down.lab, a dead proxy) at .75, and an
HTTP CONNECT proxy on 3128 at .76. unbound also answers intranet.lab with a private address
(10.1.2.3) on every transport: an internal name, as split-horizon resolvers give. Each
vantage's system resolver is unbound (/etc/netns/NAME/resolv.conf). A vantage measures with
`ip netns exec NAME python -m monitor probe --once --json`, all writing to one SQLite store,
so the censored vantages' verdicts can consult the clean one's results; or one daemon on
the host measures from all of them (`netns:` vantages, `Lab.vantages_yaml`).

Scenario rules go into the censor's iptables (filter FORWARD, nat PREROUTING) and are
flushed after each test. NAT decisions already in conntrack outlive a flush; every probe
opens new flows (new source ports), so they do not carry over between scenarios. Residual
blocking (the GFW blocking an (IP, port) for minutes after an SNI trigger) is emulated only
where a scenario asks for it (`residual_sni_reset`: iptables `recent`).
Everything — processes, namespaces, veths, /etc/netns entries — is removed on exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.certs import TestCA
from tests.servers.dns_unbound import UNBOUND

REPO = Path(__file__).resolve().parents[2]
_LAB_NET = ipaddress.ip_network("198.18.0.0/15")
_WAIT = 10  # s: the longest any lab command or start-up may take
MODULE_PATH, MODULE_VERSION = "example.com/mod", "v1.0.0"
PRIVATE_MODULE = "example.com/private"  # in git.lab's repository only: no proxy, no checksum database knows it


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the censor lab needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the censor lab needs {tool} (Debian: iproute2, iptables)"
    if UNBOUND is None:
        return "the censor lab needs unbound (apt-get install unbound)"
    return None


@dataclass(frozen=True)
class LabModule:
    """The Go module the lab's proxies serve, as tests/servers/lab_services.py made it."""

    path: str
    version: str
    vkey: str  # the checksum database's verifier key
    h1: str  # the go.sum hash of the published zip
    tampered_h1: str  # of the zip the tampering proxy serves
    zip_bytes: int  # the published zip's size


@dataclass
class Lab:
    tag: str
    base: ipaddress.IPv4Address
    directory: Path
    store: str  # the SQLite URL both vantages write to
    ca_path: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    module: LabModule | None = None  # set once the services run

    # Namespaces and interfaces
    @property
    def censored(self) -> str:
        return f"lab-{self.tag}-censored"

    @property
    def censor(self) -> str:
        return f"lab-{self.tag}-censor"

    @property
    def censored2(self) -> str:
        """A second vantage behind the same censor."""
        return f"lab-{self.tag}-censored2"

    @property
    def clean(self) -> str:
        return f"lab-{self.tag}-clean"

    def netns(self, vantage: str) -> str:
        """The namespace of a vantage named censored, censored2 or clean."""
        return {"censored": self.censored, "censored2": self.censored2, "clean": self.clean}[vantage]

    def vantages_yaml(self, *, control: str | None = "clean") -> str:
        """The three vantages as a daemon on the host measures from them; `control` is named a control."""
        return ", ".join(
            f"{{name: {v}, netns: {self.netns(v)}{', role: control' if v == control else ''}}}" for v in ("censored", "censored2", "clean")
        )

    @property
    def target(self) -> str:
        return f"lab-{self.tag}-target"

    def ip(self, host: int) -> str:
        return str(self.base + host)

    @property
    def censor_inside(self) -> str:
        """The censor's interface towards the censored vantage (where the injector listens)."""
        return f"lc{self.tag}"

    @property
    def censor_inside2(self) -> str:
        """The censor's interface towards the second censored vantage."""
        return f"ld{self.tag}"

    # Addresses of services
    @property
    def resolver(self) -> str:
        return self.ip(60)

    @property
    def rotator(self) -> str:
        return self.ip(61)

    @property
    def liar(self) -> str:
        return self.ip(62)

    @property
    def sites(self) -> list[str]:
        return [self.ip(65), self.ip(66), self.ip(67)]

    @property
    def module_proxy(self) -> str:
        return self.ip(68)

    @property
    def sumdb(self) -> str:
        return self.ip(69)

    @property
    def interceptor(self) -> str:
        return self.ip(71)

    @property
    def tamperer(self) -> str:
        """The tampering module proxy."""
        return self.ip(72)

    @property
    def module_proxy2(self) -> str:
        """A second honest module proxy (proxy2.lab)."""
        return self.ip(70)

    @property
    def vanity(self) -> str:
        """example.com: answers go-get=1 with the module's go-import tag."""
        return self.ip(73)

    @property
    def git_server(self) -> str:
        """git.lab: git smart HTTP on 443, an SSH banner on 22."""
        return self.ip(74)

    @property
    def down(self) -> str:
        """down.lab: an address that answers, with nothing listening (a proxy that is down)."""
        return self.ip(75)

    @property
    def connect_proxy(self) -> str:
        """An HTTP CONNECT proxy on 3128 (for proxy checks from the vantages)."""
        return self.ip(76)

    @property
    def nowhere(self) -> str:
        """An address in the lab's range where nothing listens: what forged answers point to."""
        return self.ip(99)

    # -----------------------------------------------------------------------------------------

    def run(self, netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], check=check, capture_output=True, text=True, timeout=_WAIT)

    def start(self, netns: str, *argv: str, ready: str = "ready") -> subprocess.Popen[str]:
        """A process in `netns` that prints `ready` once serving and stops when its stdin closes."""
        # stderr to a file: a pipe nobody reads fills up with the servers' logs and blocks them.
        with (self.directory / f"{Path(argv[2] if len(argv) > 2 else argv[0]).name}-{len(self.processes)}.log").open("w") as log:
            process = subprocess.Popen(["ip", "netns", "exec", netns, *argv], cwd=REPO, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=log, text=True)
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != ready:
            process.kill()
            raise RuntimeError(f"{argv[:3]} did not start in {netns}: {line!r} (log in {self.directory})")
        return process

    def stop(self, process: subprocess.Popen[str]) -> None:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    @contextlib.contextmanager
    def scenario(self, *rules: list[str], injector: tuple[str, str] | None = None) -> Iterator[None]:
        """Apply iptables rules (each an argument list, e.g. ["-A", "FORWARD", ...] or
        ["-t", "nat", "-A", "PREROUTING", ...]) and an optional DNS injector (domain, forged
        address) in the censor for the duration; flushed afterwards whatever happened."""
        injectors = []
        try:
            for rule in rules:
                self.run(self.censor, "iptables", *rule)
            if injector is not None:
                for inside in (self.censor_inside, self.censor_inside2):
                    injectors.append(self.start(self.censor, sys.executable, "-m", "tests.servers.dns_injector", inside, *injector))
            yield
        finally:
            for process in injectors:
                self.stop(process)
            for table in ("filter", "nat"):
                self.run(self.censor, "iptables", "-t", table, "-F", check=False)

    def probe(self, vantage: str, config: Path, *checks: str) -> list[dict]:
        """The results of `monitor probe --once` from `vantage`: of `checks` only, if given."""
        netns = self.netns(vantage)
        only = [arg for name in checks for arg in ("--check", name)]
        done = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "monitor", "--log-level", "warning", "probe", "--once", "--json", "-c", str(config), *only],
            cwd=config.parent, capture_output=True, text=True, timeout=60, check=False,  # its spool lands there
        )
        if done.returncode != 0:
            raise RuntimeError(f"probe from {vantage} failed ({done.returncode}): {done.stderr}")
        return [json.loads(line) for line in done.stdout.splitlines()]


# ---------------------------------------------------------------------------------------------
# Scenarios: what the censor does, as iptables rules (and an optional DNS injector)

Rules = list[list[str]]


def string_reset(text: str, port: int = 443) -> list[str]:
    """Reset a connection whose packet carries `text` (an SNI in a ClientHello), as the GFW does."""
    return ["-A", "FORWARD", "-p", "tcp", "--dport", str(port), "-m", "string", "--algo", "bm", "--string", text,
            "-j", "REJECT", "--reject-with", "tcp-reset"]


def residual_sni_reset(text: str, seconds: int, port: int = 443) -> Rules:
    """SNI reset with residual blocking: after a ClientHello carrying `text` is reset, every new
    SYN to the same destination address and port is dropped for `seconds` (iptables `recent`,
    keyed by destination); blocked SYNs do not restart the period, a new trigger does."""
    name = "residual"
    return [
        ["-A", "FORWARD", "-p", "tcp", "--dport", str(port), "--syn", "-m", "recent", "--name", name, "--rdest", "--rcheck",
         "--seconds", str(seconds), "-j", "DROP"],
        ["-A", "FORWARD", "-p", "tcp", "--dport", str(port), "-m", "string", "--algo", "bm", "--string", text,
         "-m", "recent", "--name", name, "--rdest", "--set", "-j", "REJECT", "--reject-with", "tcp-reset"],
    ]


def scenarios(lab: Lab) -> dict[str, tuple[Rules, tuple[str, str] | None]]:
    """The lab's scenarios by name: (iptables rules, DNS injector (domain, forged address) or None)."""
    site = lab.sites[0]
    to_proxy = ["-d", lab.module_proxy, "-p", "tcp", "--dport", "443"]
    hijack = ["-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", f"{lab.liar}:53"]
    return {
        "sni_rst": ([string_reset("site.lab")], None),
        "ip_drop": ([["-A", "FORWARD", "-d", site, "-j", "DROP"]], None),
        "syn_rst": ([["-A", "FORWARD", "-d", site, "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"]], None),
        "dns_injection": ([], ("site.lab", lab.nowhere)),
        "dns_hijack": ([hijack], None),
        "dot_blocked": ([["-A", "FORWARD", "-p", "tcp", "--dport", "853", "-j", "DROP"]], None),
        "doh_sni": ([string_reset("doh.lab")], None),
        "mitm": ([["-t", "nat", "-A", "PREROUTING", "-d", site, "-p", "tcp", "--dport", "443", "-j", "DNAT", "--to-destination", f"{lab.interceptor}:443"]], None),
        "hijack_and_sni": ([hijack, string_reset("site.lab")], None),
        "random_drop": ([["-A", "FORWARD", "-m", "statistic", "--mode", "random", "--probability", "0.3", "-j", "DROP"]], None),
        # The module proxy's address leads to a proxy that serves the module with one file changed.
        "tampered_zip": ([["-t", "nat", "-A", "PREROUTING", *to_proxy, "-j", "DNAT", "--to-destination", f"{lab.tamperer}:443"]], None),
        # connbytes counts what the proxy sent on the connection; once past the cut, the
        # client's next packet (an ACK of the zip) is answered by a RST in the proxy's name.
        "zip_reset": ([["-A", "FORWARD", *to_proxy, "-m", "connbytes", "--connbytes", f"{ZIP_CUT}:", "--connbytes-dir", "reply",
                        "--connbytes-mode", "bytes", "-j", "REJECT", "--reject-with", "tcp-reset"]], None),
        # A TLS interceptor in front of the module proxy, its CA trusted by nobody.
        "module_mitm": ([["-t", "nat", "-A", "PREROUTING", *to_proxy, "-j", "DNAT", "--to-destination", f"{lab.interceptor}:443"]], None),
        "outage": ([["-A", "FORWARD", "-j", "DROP"]], None),
    }


# The connection to the module proxy is reset once it has carried this many bytes back: past
# the TLS handshake and the .info and .mod answers (a few KB), long before the end of the zip
# (PAYLOAD_BYTES of random data).
ZIP_CUT = 64 << 10


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=_WAIT)


def _veth(lab: Lab, a: str, a_ip: int, b: str, b_ip: int, a_if: str, b_if: str) -> None:
    _sh("ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if)
    _sh("ip", "link", "set", a_if, "netns", a)
    _sh("ip", "link", "set", b_if, "netns", b)
    for ns, ifname, host in ((a, a_if, a_ip), (b, b_if, b_ip)):
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{lab.ip(host)}/30", "dev", ifname)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up")


def _unbound_config(lab: Lab, leaf_cert: Path, leaf_key: Path) -> str:
    records = [
        f"site.lab. 30 IN A {lab.sites[0]}",
        f"control.lab. 30 IN A {lab.sites[0]}",
        *(f"cdn.lab. 30 IN A {ip}" for ip in lab.sites),
        f"dot.lab. 30 IN A {lab.resolver}",
        f"doh.lab. 30 IN A {lab.resolver}",
        f"proxy.lab. 30 IN A {lab.module_proxy}",
        f"sum.lab. 30 IN A {lab.sumdb}",
        f"proxy2.lab. 30 IN A {lab.module_proxy2}",
        f"example.com. 30 IN A {lab.vanity}",
        f"git.lab. 30 IN A {lab.git_server}",
        f"down.lab. 30 IN A {lab.down}",
        "intranet.lab. 30 IN A 10.1.2.3",
    ]
    return "\n".join([
        "server:",
        *(f"  interface: {lab.resolver}@{port}" for port in (53, 853, 443)),
        "  port: 53", "  tls-port: 853", "  https-port: 443", '  http-endpoint: "/dns-query"',
        f'  tls-service-key: "{leaf_key}"', f'  tls-service-pem: "{leaf_cert}"',
        "  do-daemonize: no", '  username: ""', '  chroot: ""', f'  directory: "{lab.directory}"',
        f'  pidfile: "{lab.directory}/unbound.pid"', "  use-syslog: no", '  logfile: ""', "  verbosity: 1",
        "  num-threads: 1", "  access-control: 198.18.0.0/15 allow", '  module-config: "iterator"',
        '  local-zone: "." static', *(f'  local-data: "{r}"' for r in records),
        "remote-control:", "  control-enable: no", "",
    ])


@contextlib.contextmanager
def censor_lab(directory: Path) -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    base = _LAB_NET.network_address + 256 * secrets.randbelow(_LAB_NET.num_addresses // 256)
    ca = TestCA(directory, name="lab CA")
    lab = Lab(tag, ipaddress.IPv4Address(base), directory, f"sqlite:///{directory / 'lab.db'}", ca.path)
    namespaces = [lab.censored, lab.censored2, lab.censor, lab.clean, lab.target]
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for ns in namespaces:
            _sh("ip", "netns", "add", ns)
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _veth(lab, lab.censored, 1, lab.censor, 2, f"lv{tag}", lab.censor_inside)
        _veth(lab, lab.censor, 5, lab.target, 6, f"lo{tag}", f"lt{tag}")
        _veth(lab, lab.clean, 9, lab.target, 10, f"lk{tag}", f"lu{tag}")
        _veth(lab, lab.censored2, 13, lab.censor, 14, f"lw{tag}", lab.censor_inside2)
        services = [60, 61, 62, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76]
        for host in services:
            _sh("ip", "netns", "exec", lab.target, "ip", "addr", "add", f"{lab.ip(host)}/32", "dev", "lo")
        _sh("ip", "netns", "exec", lab.censored, "ip", "route", "add", "default", "via", lab.ip(2))
        _sh("ip", "netns", "exec", lab.censored2, "ip", "route", "add", "default", "via", lab.ip(14))
        _sh("ip", "netns", "exec", lab.clean, "ip", "route", "add", "default", "via", lab.ip(10))
        for services_net in (f"{lab.ip(32)}/27", f"{lab.ip(64)}/26"):  # .32-.127: every service address
            _sh("ip", "netns", "exec", lab.censor, "ip", "route", "add", services_net, "via", lab.ip(6))
        _sh("ip", "netns", "exec", lab.censor, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        _sh("ip", "netns", "exec", lab.target, "ip", "route", "add", f"{lab.ip(0)}/30", "via", lab.ip(5))
        _sh("ip", "netns", "exec", lab.target, "ip", "route", "add", f"{lab.ip(12)}/30", "via", lab.ip(5))
        for ns in (lab.censored, lab.censored2, lab.clean):
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {lab.resolver}\noptions timeout:1 attempts:1\n")

        dns_leaf = ca.issue("dot.lab", "doh.lab", lab.resolver, stem="lab-dns")
        site_leaf = ca.issue("site.lab", "cdn.lab", "control.lab", stem="lab-sites")
        modules_leaf = ca.issue("proxy.lab", "sum.lab", "proxy2.lab", stem="lab-modules")
        vcs_leaf = ca.issue("example.com", "git.lab", stem="lab-vcs")
        # An interceptor mints a certificate for whatever name it is asked: here, every lab name.
        evil = TestCA(directory, name="interceptor CA").issue("site.lab", "cdn.lab", "control.lab", "proxy.lab", "proxy2.lab", "sum.lab",
                                                              "example.com", "git.lab", stem="lab-interceptor")
        conf = directory / "unbound.conf"
        conf.write_text(_unbound_config(lab, dns_leaf.cert, dns_leaf.key))
        # unbound prints nothing when ready: start it, then let the services' start-up (which
        # takes longer) cover its own; the vantages' probes would show a resolver still starting.
        unbound = subprocess.Popen(["ip", "netns", "exec", lab.target, str(UNBOUND), "-d", "-c", str(conf)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemons.append(unbound)
        modules_tls = {"cert": str(modules_leaf.cert), "key": str(modules_leaf.key)}
        spec = {
            "https": [{"host": ip, "port": 443, "cert": str(site_leaf.cert), "key": str(site_leaf.key)} for ip in lab.sites]
            + [{"host": lab.interceptor, "port": 443, "cert": str(evil.cert), "key": str(evil.key)}],
            "dns": [
                {"host": lab.rotator, "port": 53, "mode": "rotate", "records": {"cdn.lab.": lab.sites, "site.lab.": lab.sites[:1]}},
                {"host": lab.liar, "port": 53, "mode": "lie", "lie": lab.nowhere},
            ],
            "goproxy": {
                "module": MODULE_PATH, "version": MODULE_VERSION, "facts": str(directory / "module.json"),
                "sumdb": {"name": "sum.lab", "host": lab.sumdb, "port": 443, **modules_tls},
                "proxies": [{"host": ip, "port": 443, "tampered": ip == lab.tamperer, **modules_tls}
                            for ip in (lab.module_proxy, lab.tamperer, lab.module_proxy2)],
            },
            "vcs": {
                "go_get": {"host": lab.vanity, "port": 443, "cert": str(vcs_leaf.cert), "key": str(vcs_leaf.key),
                           "imports": {MODULE_PATH: "git https://git.lab/repo.git", PRIVATE_MODULE: "git https://git.lab/repo.git"}},
                "git": {"host": lab.git_server, "port": 443, "ssh_port": 22, "cert": str(vcs_leaf.cert), "key": str(vcs_leaf.key),
                        "root": str(directory / "git")},
            },
            "connect_proxy": {"host": lab.connect_proxy, "port": 3128},
        }
        (directory / "services.json").write_text(json.dumps(spec))
        lab.start(lab.target, sys.executable, "-m", "tests.servers.lab_services", str(directory / "services.json"))
        lab.module = LabModule(MODULE_PATH, MODULE_VERSION, **json.loads((directory / "module.json").read_text()))
        _wait_for_unbound(lab, unbound)
        yield lab
    finally:
        for process in list(lab.processes):
            lab.stop(process)
        for daemon in daemons:
            daemon.terminate()
            try:
                daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=5)
        for ns in namespaces:  # deleting a namespace deletes the veth ends in it, and their peers
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=_WAIT, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def _wait_for_unbound(lab: Lab, unbound: subprocess.Popen[bytes]) -> None:
    for _ in range(50):  # up to ~5 s
        if unbound.poll() is not None:
            raise RuntimeError(f"unbound exited with {unbound.returncode}")
        done = lab.run(lab.clean, sys.executable, "-c",
                       f"import dns.message, dns.query; dns.query.udp(dns.message.make_query('site.lab', 'A'), '{lab.resolver}', timeout=0.1)",
                       check=False)
        if done.returncode == 0:
            return
    raise RuntimeError("unbound did not answer in the lab")
