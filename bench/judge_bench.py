"""What the judge step costs per run (monitor/judgement.py), side by side: the pure rules alone
(`judge_run`), the judge step without a store (episodes in memory), and with a store holding
`--history` earlier results of several agents (SQLite file, or --url for PostgreSQL) — every
run then reads the other vantages' latest results and its episode state, and writes the
episode. There is no outside tool that judges the same way; the reference is the rules alone.

    python bench/judge_bench.py [-n 300] [--history 20000] [--url postgresql+psycopg://…]

Runs are site rounds built in the shape monitor/probes/site.py gives them (3 resolvers, one
address's SNI experiment, the GET, the summary): half blocked at the SNI, half clean.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from monitor.analysis.runs import judge_run
from monitor.config import load_config_text
from monitor.judgement import Judge
from monitor.model import Failure, FailureClass, Operation, ProbeResult, utcnow
from monitor.store import make_engine, save_results, upgrade

CONFIG = """
agent: bench
storage: {{url: "{url}"}}
vantages: [{{name: here}}, {{name: ref, role: control}}]
checks:
  - {{name: site-{i}, kind: site, domain: site.example, control_sni: control.example, vantages: [here, ref],
     references: ["tls://1.1.1.1", "https://dns.google/dns-query"]}}
"""


def site_run(check: str, vantage: str, agent: str, at, blocked: bool) -> list[ProbeResult]:
    def result(kind: str, target: str, role: str, failure: Failure | None = None, **facts) -> ProbeResult:
        return ProbeResult(check=check, kind=kind, vantage=vantage, target=target, started_at=at, ok=failure is None,
                           duration_s=0.1, failure=failure, facts={"role": role, "attempt": 1, **facts}, agent=agent)

    good = "93.184.216.34"
    resolvers = [result("dns", spec, "resolver", transport=t, addresses=[good], seen_addresses=[good])
                 for spec, t in (("system", "system"), ("tls://1.1.1.1", "tls"), ("https://dns.google/dns-query", "https"))]
    cert = {"subject": "CN=site.example", "issuer": "CN=CA", "sha256": "aa" * 32}
    ok = {"skipped": None, "connected": True, "after_client_hello": False, "server_hello": True, "class": None, "operation": None,
          "cert": cert, "contaminated": False, "trigger": False}
    reset = {**ok, "after_client_hello": True, "server_hello": False, "class": "connection_reset", "operation": "tls_handshake",
             "cert": None, "trigger": True}
    experiment = [{"label": "control", "sni": "control.example", **ok}, {"label": "target", "sni": "site.example", **(reset if blocked else ok)},
                  {"label": "none", "sni": None, **ok}]
    hs_failure = Failure(FailureClass.CONNECTION_RESET, Operation.TLS_HANDSHAKE, "") if blocked else None
    handshake = result("tls", "site.example:443", "handshake", hs_failure, ip=good, sni_experiment=experiment)
    fetch = result("http", "https://site.example/", "fetch", hs_failure, ip=good)
    summary = ProbeResult(check=check, kind="site", vantage=vantage, target="site.example", started_at=at, ok=True, duration_s=1.0,
                          facts={"role": "summary", "attempts": 1}, agent=agent)
    return [*resolvers, handshake, fetch, summary]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="runs judged per variant")
    parser.add_argument("--history", type=int, default=20000, help="results stored beforehand (other agents, other checks)")
    parser.add_argument("--url", help="a database URL to use instead of a temporary SQLite file (it is migrated; rows are added)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        url = args.url or f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade(url)
        now = utcnow()
        engine = make_engine(url)
        with Session(engine) as session, session.begin():
            batch: list[ProbeResult] = []
            for k in range(args.history // 7):  # 7 results per run
                at = now - timedelta(seconds=k % 600)
                batch += site_run(f"site-{k % 50}", f"v{k % 5}", f"agent-{k % 3}", at, blocked=k % 2 == 0)
            save_results(session, batch)
        engine.dispose()

        cfg = load_config_text(CONFIG.format(url=url, i=0))
        check = cfg.check("site-0")
        timings: dict[str, list[float]] = {"rules alone (judge_run)": [], "judge step, no store": [], "judge step, store": []}
        without, with_store = Judge(cfg, store=False), Judge(cfg)
        try:
            for i in range(args.n):
                at = utcnow()
                for name, call in (
                    ("rules alone (judge_run)", lambda r: judge_run(r)),
                    ("judge step, no store", lambda r: without.conclude(check, r)),
                    ("judge step, store", lambda r: with_store.conclude(check, r)),
                ):
                    run = site_run("site-0", "here", "bench", at, blocked=i % 2 == 0)
                    started = time.perf_counter()
                    call(run)
                    timings[name].append((time.perf_counter() - started) * 1000)
        finally:
            without.close()
            with_store.close()
    backend = url.split(":", 1)[0]
    print(f"{args.n} site rounds judged; store: {backend} with {args.history} results stored before")
    print(f"{'variant':<28} {'median ms':>10} {'p95 ms':>8}")
    for name, values in timings.items():
        values.sort()
        print(f"{name:<28} {statistics.median(values):>10.3f} {values[int(len(values) * 0.95) - 1]:>8.3f}")


if __name__ == "__main__":
    main()
