"""The text exposition (format 0.0.4) of /metrics, written without prometheus-client's per-sample
objects for the families that have a series per check.

At thousands of checks those families hold hundreds of thousands of samples (a phase histogram
is 18 lines per phase per check): prometheus-client builds a Sample and a label dict for each
and formats it label by label — seconds of CPU and hundreds of MB per scrape. The families
here keep rows (label values, value) and write each series' label string once; `.samples`
still gives prometheus-client's objects, built on demand, so `generate_latest` and every
other consumer see the same families. `exposition()` writes a registry in chunks, using the
rows where a family has them and prometheus-client's own writer for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Series written per chunk: bounds the memory a scrape holds at once, and how long the event
# loop spends on one chunk (a few ms) before due runs get their turn.
CHUNK_SERIES = 500


def _count(n: int) -> str:
    """floatToGoString for a count, without its float round trip below a million (where Go
    switches to an exponent)."""
    return f"{n}.0" if 0 <= n < 1_000_000 else floatToGoString(n)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class RowFamily(Metric):
    """A gauge or counter family as rows; the same `add_metric` as prometheus-client's."""

    def __init__(self, name: str, documentation: str, typ: str, labels: Sequence[str]):
        super().__init__(name, documentation, typ)
        self._labelnames = tuple(labels)
        self._rows: list[tuple[Sequence[str], float]] = []

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._rows.append((labels, value))

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        return [Sample(self._sample_name, dict(zip(self._labelnames, values)), value, None) for values, value in self._rows]

    @samples.setter
    def samples(self, _: Any) -> None:  # Metric.__init__ sets an empty list: the rows are the samples
        pass

    @property
    def _sample_name(self) -> str:
        return self.name + "_total" if self.type == "counter" else self.name

    def lines(self) -> Iterator[str]:
        name, order = self._sample_name, sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)
        for values, value in self._rows:
            labels = ",".join(f'{self._labelnames[i]}="{_escape(values[i])}"' for i in order)
            yield f"{name}{{{labels}}} {floatToGoString(value)}\n" if labels else f"{name} {floatToGoString(value)}\n"


class HistogramRows(RowFamily):
    """A histogram family as rows: label values, cumulative bucket counts (+Inf last), sum."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]):
        super().__init__(name, documentation, "histogram", labels)
        self._les = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self._hist_rows: list[tuple[Sequence[str], Sequence[int], float]] = []

    def add_metric(self, labels: Sequence[str], buckets: Sequence[int], sum_value: float) -> None:  # type: ignore[override]
        """`buckets`: cumulative counts, one per bound and the total (+Inf) last."""
        self._hist_rows.append((labels, buckets, sum_value))

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        out = []
        for values, counts, total in self._hist_rows:
            labels = dict(zip(self._labelnames, values))
            out += [Sample(self.name + "_bucket", {**labels, "le": le}, count, None) for le, count in zip(self._les, counts)]
            out += [Sample(self.name + "_count", labels, counts[-1], None), Sample(self.name + "_sum", labels, total, None)]
        return out

    @samples.setter
    def samples(self, _: Any) -> None:
        pass

    def lines(self) -> Iterator[str]:
        names = sorted((*self._labelnames, "le"))
        before, after = names[: names.index("le")], names[names.index("le") + 1:]
        position = {n: i for i, n in enumerate(self._labelnames)}
        bucket = self.name + "_bucket"
        for values, counts, total in self._hist_rows:
            head = ",".join(f'{n}="{_escape(values[position[n]])}"' for n in before)
            tail = "".join(f',{n}="{_escape(values[position[n]])}"' for n in after)
            plain = ",".join(f'{n}="{_escape(values[position[n]])}"' for n in names if n != "le")
            prefix = f'{bucket}{{{head}{"," if head else ""}le="'
            yield "".join(f'{prefix}{le}"{tail}}} {_count(count)}\n' for le, count in zip(self._les, counts))
            yield f"{self.name}_count{{{plain}}} {_count(counts[-1])}\n{self.name}_sum{{{plain}}} {floatToGoString(total)}\n"


def Gauge(name: str, documentation: str, *, labels: Sequence[str]) -> RowFamily:  # noqa: N802 — in place of GaugeMetricFamily
    return RowFamily(name, documentation, "gauge", labels)


def Counter(name: str, documentation: str, *, labels: Sequence[str]) -> RowFamily:  # noqa: N802 — in place of CounterMetricFamily
    return RowFamily(name, documentation, "counter", labels)


def Histogram(name: str, documentation: str, *, labels: Sequence[str], bounds: Sequence[float]) -> HistogramRows:  # noqa: N802
    return HistogramRows(name, documentation, labels, bounds)


class _Families:
    def __init__(self, metrics: Iterable[Metric]):
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def exposition(registry: Collector) -> Iterator[bytes]:
    """The registry's text exposition, in chunks of at most CHUNK_SERIES series' lines."""
    others: list[Metric] = []
    for metric in registry.collect():
        if not isinstance(metric, RowFamily):
            others.append(metric)
            continue
        if others:
            yield generate_latest(_Families(others))  # type: ignore[arg-type]
            others = []
        yield _header(metric).encode()
        chunk: list[str] = []
        for line in metric.lines():
            chunk.append(line)
            if len(chunk) >= CHUNK_SERIES:
                yield "".join(chunk).encode()
                chunk = []
        if chunk:
            yield "".join(chunk).encode()
    if others:
        yield generate_latest(_Families(others))  # type: ignore[arg-type]


def _header(metric: Metric) -> str:
    name = metric.name + "_total" if metric.type == "counter" else metric.name
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n"
