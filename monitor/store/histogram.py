"""The latency histogram of the rollups: fixed log-spaced buckets, so histograms of any hours,
days, vantages or agents merge by adding counts, and a quarter's p50/p95/p99 come from the
summed counts — not from averaging percentiles, which has no meaning.

Layout (as DDSketch's logarithmic mapping, with a fixed relative accuracy ALPHA = 2 %):
GAMMA = (1 + ALPHA) / (1 - ALPHA) ≈ 1.0408. A duration x seconds falls in bucket
i = ceil(log_GAMMA(x)), which holds (GAMMA^(i-1), GAMMA^i]; a bucket is reported as
2·GAMMA^i / (GAMMA + 1), within ALPHA of every value in it. So a quantile read from a merged
histogram is within 2 % (relative) of the true quantile of the durations that went in.
Durations below MIN_SECONDS (0.1 ms) count in MIN_SECONDS's bucket and read back as ~0.1 ms;
above MAX_SECONDS (1 day) in MAX_SECONDS's. Buckets are identified by i, kept sparse: a
histogram is a mapping from str(i) (JSON object keys are strings) to a count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
MIN_SECONDS = 1e-4
MAX_SECONDS = 86400.0
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(seconds: float) -> str:
    """The bucket key of a duration (clamped to [MIN_SECONDS, MAX_SECONDS])."""
    x = min(max(seconds, MIN_SECONDS), MAX_SECONDS)
    return str(math.ceil(math.log(x) / _LOG_GAMMA))


def bucket_value(key: str | int) -> float:
    """The duration a bucket stands for: within ALPHA of anything counted in it."""
    return 2 * GAMMA ** int(key) / (GAMMA + 1)


def quantile(histogram: Mapping[str, int | float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) of what was counted, or None if nothing was.

    The value of rank floor(q·(n-1)) in sorted order (n counted values; the lower of the two
    around q), read from its bucket."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside [0, 1]")
    buckets = sorted((int(k), n) for k, n in histogram.items() if n > 0)
    total = sum(n for _, n in buckets)
    if total == 0:
        return None
    rank = math.floor(q * (total - 1))
    seen = 0
    for index, n in buckets:
        seen += n
        if seen > rank:
            return bucket_value(index)
    return bucket_value(buckets[-1][0])  # not reached: seen ends at total > rank
