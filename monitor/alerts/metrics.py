"""The alert engine's series on /metrics (registered next to the probe collector by the daemon).

monitor_alerts_firing{alertname,severity}              alerts of this agent firing now
monitor_alert_notifications_total{sink,url,outcome}     POSTs to each sink, success / failure
monitor_alert_notifications_pending{sink,url}           alerts due to a sink and not yet accepted
`sink` is alertmanager or webhook; `url` the Alertmanager's URL, or the webhook's scheme://host:port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.alerts.engine import AlertEngine


class AlertMetrics(Collector):
    def __init__(self, engine: AlertEngine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        firing = GaugeMetricFamily("monitor_alerts_firing", "Alerts of this agent firing now", labels=["alertname", "severity"])
        for (alertname, severity), n in sorted(Counter((a.alertname, a.severity) for a in self.engine.firing()).items()):
            firing.add_metric([alertname, severity], n)
        yield firing
        sent = CounterMetricFamily("monitor_alert_notifications", "Notification requests to alert sinks, by outcome", labels=["sink", "url", "outcome"])
        for (kind, url, outcome), n in sorted(self.engine.notifications.items()):
            sent.add_metric([kind, url, outcome], n)
        yield sent
        pending = GaugeMetricFamily("monitor_alert_notifications_pending", "Alerts due to a sink and not yet accepted by it", labels=["sink", "url"])
        for (kind, url), n in sorted(self.engine.pending.items()):
            pending.add_metric([kind, url], n)
        yield pending
