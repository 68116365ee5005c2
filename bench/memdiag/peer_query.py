"""The judge step's peer query (monitor.store.episodes.latest_summaries) against a store that a
running soak agent is filling, read-only: its plan, and its time against the rows the check
has in the store. Run it now and then during bench/soak.py:

    python bench/memdiag/peer_query.py /tmp/soak-XXXX/agent-1/store.db [--checks 20] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from monitor.store.episodes import latest_summaries  # noqa: E402
from monitor.store.models import ResultRow  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db", type=Path)
    p.add_argument("--checks", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-age", type=float, default=900, help="cross_vantage_max_age (the default: 15 min)")
    args = p.parse_args()
    engine = create_engine(f"sqlite:///file:{args.db}?mode=ro&uri=true")
    with Session(engine) as session:
        total = session.scalar(text("SELECT count(*) FROM results"))
        names = [f"tcp{4 * i}" for i in range(args.checks)]
        target = session.scalar(select(ResultRow.target).where(ResultRow.check == names[0]).limit(1))
        rows = statistics.median(session.scalar(text('SELECT count(*) FROM results WHERE "check" = :c'), {"c": c}) for c in names)
        since = datetime.now(timezone.utc) - timedelta(seconds=args.max_age)
        stmt = select(ResultRow.id).where(ResultRow.check == names[0], ResultRow.kind == "tcp", ResultRow.started_at >= since,
                                          ResultRow.target == target)
        compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
        plan = [row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
        times = []
        for _ in range(args.reps):
            for name in names:
                started = time.perf_counter()
                latest_summaries(session, name, "tcp", since, target=target)
                times.append((time.perf_counter() - started) * 1000)
    print(f"results {total}; rows per check (median) {rows:g}; plan of its filter: {' / '.join(plan)}")
    print(f"latest_summaries: median {statistics.median(times):.2f} ms, min {min(times):.2f}, max {max(times):.2f} ({len(times)} queries)")


if __name__ == "__main__":
    main()
