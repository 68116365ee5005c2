"""What the alert engine costs per poll, and how long firing N alerts at once takes, side by
side with curl POSTing the very same alerts to the same Alertmanager.

    python bench/alerts_bench.py [--sizes 10,100,1000] [--polls 20]

Per size N: a fresh SQLite store holding N open episodes of this agent (as the judge step
writes them) and a real Alertmanager on loopback (Debian prometheus-alertmanager). Printed:
- fire: one engine step that fires all N (read the episodes, write N alerts, POST them in one
  request, write their deliveries), wall time;
- curl: `curl -X POST --data @alerts.json <am>/api/v2/alerts` of the same N alerts (the JSON the
  engine sent, captured), wall time of the process: Alertmanager's own ingest plus curl;
- poll: median of --polls steady-state steps afterwards (read, nothing due), wall and CPU time.
Run from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.orm import Session  # noqa: E402

from monitor.alerts import AlertEngine  # noqa: E402
from monitor.alerts.alertmanager import AlertmanagerSink  # noqa: E402
from monitor.analysis.episodes import Episode  # noqa: E402
from monitor.config import load_config_text  # noqa: E402
from monitor.model import VerdictName  # noqa: E402
from monitor.store import make_engine, upgrade  # noqa: E402
from monitor.store.episodes import save_episode  # noqa: E402
from tests.servers.alertmanager import Alertmanager  # noqa: E402

AM_CONFIG = "route: {receiver: none, group_wait: 1h}\nreceivers: [{name: none}]\n"


def config_for(db: Path, am: str, n: int):
    checks = "\n".join(
        f"  - {{name: c{i}, kind: site, domain: s{i}.test, control_sni: k.test, references: ['tls://127.0.0.1', 'https://localhost/q']}}"
        for i in range(n)
    )
    return load_config_text(f'agent: bench\nstorage: {{url: "sqlite:///{db}"}}\nchecks:\n{checks}\nalerting: {{alertmanager: ["{am}"], resend_interval: 1h}}\n')


async def run(n: int, polls: int, directory: Path) -> dict[str, float]:
    with Alertmanager(directory / "am", AM_CONFIG) as am:
        cfg = config_for(directory / "m.db", am.url, n)
        upgrade(cfg.storage.url)
        start = datetime.now(UTC) - timedelta(minutes=5)
        engine = make_engine(cfg.storage.url)
        with Session(engine) as session, session.begin():
            for i in range(n):
                save_episode(session, Episode(check=f"c{i}", vantage="local", agent="bench", verdict=VerdictName.SNI_BLOCKING,
                                              started_at=start, last_seen_at=start, confirmed_at=start, rounds=2,
                                              evidence=("tls: 192.0.2.1: rst after the ClientHello while the control completed",)))
        engine.dispose()
        async with AlertEngine(lambda: cfg) as alerts:
            t = time.perf_counter()
            await alerts.step()
            fire = time.perf_counter() - t
            assert len(am.alerts()) == n
            payload = AlertmanagerSink(am.url, valid_for=3600, timeout=10).payload(alerts.firing(), datetime.now(UTC))
            walls, cpus = [], []
            for _ in range(polls):
                t, c = time.perf_counter(), time.process_time()
                await alerts.step()
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
        body = directory / "alerts.json"
        body.write_text(json.dumps(payload))
        t = time.perf_counter()
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "-X", "POST", "-H", "content-type: application/json",
                        "--data", f"@{body}", am.url + "/api/v2/alerts"], check=True)
        curl = time.perf_counter() - t
    return {"fire": fire, "curl": curl, "poll": statistics.median(walls), "poll_cpu": statistics.median(cpus)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--polls", type=int, default=20)
    args = parser.parse_args()
    print(f"{'episodes':>8} {'fire ms':>9} {'curl ms':>9} {'fire/curl':>9} {'poll ms':>9} {'poll cpu ms':>11}")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            r = asyncio.run(run(n, args.polls, Path(tmp)))
        print(f"{n:>8} {r['fire']*1e3:>9.1f} {r['curl']*1e3:>9.1f} {r['fire']/r['curl']:>8.1f}x {r['poll']*1e3:>9.2f} {r['poll_cpu']*1e3:>11.2f}")


if __name__ == "__main__":
    main()
