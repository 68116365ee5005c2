"""The alert engine: this agent's verdict episodes in the store become alerts, sent to every sink.

It runs as its own task in the daemon, apart from the probes: every poll_interval it reads
the agent's open episodes (the judge step writes them after each run), fires an alert for
each that meets its check's conditions (monitor/alerts/policy.py), resolves the alerts whose
episode closed, then tells the sinks:
- each Alertmanager gets every firing alert again every resend_interval (endsAt a few of
  those ahead, so that an agent that dies lets its alerts lapse rather than fire forever),
  and a resolution (endsAt in the past) once;
- the webhook gets one notification when an alert fires and one when it resolves.
A sink that fails is retried with backoff (poll_interval doubling up to RETRY_MAX_S) without
holding up the other sinks, the probes or the store writer.

The store is the memory (monitor/store/alerts.py): an alert is written before any sink is
told and its deliveries after, so a restart resumes firing alerts with the same startsAt,
never re-fires a resolved one, and re-tells no sink what it already accepted. One episode
fires at most once, ever. While the store is unreachable the engine keeps re-sending what
it knows (so Alertmanager does not see firing alerts lapse) and decides nothing new.

Database work is in `_read` and `_save`, each one transaction on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.alerts.alertmanager import AlertmanagerSink
from monitor.alerts.metrics import AlertMetrics
from monitor.alerts.policy import alerts_on, conditions_for, due, new_alert
from monitor.alerts.sink import USER_AGENT, DeliveryFailed, Sink
from monitor.alerts.webhook import WebhookSink
from monitor.analysis.episodes import Episode
from monitor.config import AlertingConfig, Check, Config
from monitor.model import utcnow
from monitor.store import make_engine
from monitor.store.alerts import (
    AlertRecord,
    episodes_by_id,
    fired_episode_ids,
    open_episodes,
    save_alerts,
    unsettled_alerts,
)
from monitor.store.engine import describe_error
from monitor.store.executor import run_in_store_thread

log = logging.getLogger(__name__)

# The longest one poll waits for the store; past it the alerts known so far are re-sent.
STORE_TIMEOUT_S = 10.0

# A firing alert sent to Alertmanager is valid for this many resend intervals (its endsAt):
# a few lost sends do not resolve it, a dead agent's alerts lapse within minutes.
ENDS_AFTER_RESENDS = 4
# Longest wait between two attempts on a failing sink.
RETRY_MAX_S = 60.0
# A webhook notification not delivered after this long is dropped (and logged).
GIVE_UP_AFTER = timedelta(hours=24)


@dataclass
class _StoreView:
    loaded: list[AlertRecord] | None  # the unsettled alerts, on the first read only
    episodes: list[Episode]  # open now
    already_fired: set[str]  # open episodes without an alert in memory that have one in the store
    closed: dict[str, Episode]  # episodes of firing alerts that are no longer open


@dataclass
class _Backoff:
    next_try: datetime | None = None  # no attempt before this (engine clock)
    delay: float = 0.0
    failing_since: datetime | None = None


class AlertEngine:
    """Create with a function returning the current config (reloads apply at the next poll),
    run `run()` as a task, `stop()` to end it after the current step. Tests may instead
    `async with engine:` and call `step()` themselves."""

    def __init__(
        self, config: Callable[[], Config], *, url: str | None = None, verify: ssl.SSLContext | bool = True,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._config = config
        first = config()
        self.agent = first.agent  # restart-only, as the store
        self._db = make_engine(url or first.storage.url)  # the daemon passes the URL it opens the store with
        self._verify = verify
        self._clock = clock
        self._alerts: dict[str, AlertRecord] = {}  # unsettled ones, by episode id
        self._loaded = False
        self._dirty: set[str] = set()
        self._unrecorded: set[str] = set()  # fired, not yet in the store: no sink hears of them before
        self._sinks: list[Sink] = []
        self._sinks_from: AlertingConfig | None = None
        self._backoff: dict[str, _Backoff] = {}
        self._store_failing = False
        self._stop = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        # (sink kind, url, outcome) -> POSTs; and alerts waiting per (kind, url), for /metrics.
        self.notifications: Counter[tuple[str, str, str]] = Counter()
        self.pending: dict[tuple[str, str], int] = {}
        self.metrics = AlertMetrics(self)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> AlertEngine:
        self._client = httpx.AsyncClient(verify=self._verify, trust_env=False, follow_redirects=False, headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._db.dispose()

    async def run(self) -> None:
        """Poll until stop(); the current step ends first (its requests are bounded by alerting.timeout)."""
        async with self:
            while not self._stop.is_set():
                try:
                    await self.step()
                except Exception:  # a bug: say so loudly, but keep alerting alive
                    log.exception("alerts: internal error in a poll; carrying on")
                try:
                    await asyncio.wait_for(self._stop.wait(), self._config().alerting.poll_interval)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stop.set()

    def firing(self) -> list[AlertRecord]:
        return [a for a in self._alerts.values() if a.firing]

    def sinks(self) -> list[Sink]:
        return list(self._sinks)

    # -- one poll ----------------------------------------------------------------------------------

    async def step(self) -> None:
        """Read, decide, persist, deliver, persist. Never raises for the store or a sink."""
        config = self._config()
        now = self._clock()
        sinks = self._sinks_of(config)
        firing_ids = [a.episode_id for a in self.firing()]
        try:
            view = await run_in_store_thread(self._read, not self._loaded, firing_ids, set(self._alerts), timeout=STORE_TIMEOUT_S)
        except (SQLAlchemyError, TimeoutError) as e:
            self._store_failed(e)
            view = None
        if view is not None:
            self._store_back()
            self._decide(view, config, now)
            await self._persist()  # an alert is on record before anyone is told of it
        await self._deliver(sinks, config.alerting, now)
        await self._persist()
        for episode_id in [i for i, a in self._alerts.items() if a.settled and i not in self._dirty]:
            del self._alerts[episode_id]

    def _decide(self, view: _StoreView, config: Config, now: datetime) -> None:
        checks = {c.name: c for c in config.checks}
        if view.loaded is not None:
            self._alerts = {a.episode_id: a for a in view.loaded}
            self._loaded = True
        open_now = {e.id: e for e in view.episodes}
        for alert in self.firing():
            episode = open_now.get(alert.episode_id)
            if episode is not None:
                why_not = self._no_longer_wanted(episode, checks.get(episode.check), config)
                if why_not:
                    self._resolve(alert, now, why_not)
                continue
            closed = view.closed.get(alert.episode_id)
            if closed is None:
                self._resolve(alert, now, "its episode is no longer in the store")
            elif closed.ended_at is not None:
                why = f"episode closed after {closed.clean} clean round(s)" if closed.clean else "episode ended: the verdict changed"
                self._resolve(alert, closed.ended_at, why)
            else:
                self._resolve(alert, now, "its episode is no longer open")
        for episode in view.episodes:
            if episode.id in self._alerts or episode.id in view.already_fired:
                continue
            check = checks.get(episode.check)
            if check is None:
                continue
            conditions = conditions_for(check, config.defaults.alert)
            kind = alerts_on(episode, conditions)
            if kind is None or not due(episode, conditions, now):
                continue
            alert = new_alert(episode, check, kind, conditions, config.alerting, now)
            self._alerts[alert.episode_id] = alert
            self._dirty.add(alert.episode_id)
            self._unrecorded.add(alert.episode_id)
            log.info(
                "alert %s (%s) firing: check %s from %s, verdict %s since %s; episode %s",
                alert.alertname, alert.severity, alert.check, alert.vantage, alert.verdict, episode.started_at.isoformat(), alert.episode_id,
            )

    @staticmethod
    def _no_longer_wanted(episode: Episode, check: Check | None, config: Config) -> str | None:
        if check is None:
            return "the check is no longer configured"
        if alerts_on(episode, conditions_for(check, config.defaults.alert)) is None:
            return "alerting is now off for this check or verdict"
        return None

    def _resolve(self, alert: AlertRecord, at: datetime, why: str) -> None:
        alert.resolved_at, alert.resolution = at, why
        self._dirty.add(alert.episode_id)
        log.info("alert %s resolved: check %s from %s, %s; episode %s", alert.alertname, alert.check, alert.vantage, why, alert.episode_id)

    # -- sinks -------------------------------------------------------------------------------------

    def _sinks_of(self, config: Config) -> list[Sink]:
        alerting = config.alerting
        if alerting != self._sinks_from:
            valid_for = ENDS_AFTER_RESENDS * alerting.resend_interval
            sinks: list[Sink] = [AlertmanagerSink(url, valid_for=valid_for, timeout=alerting.timeout) for url in alerting.alertmanager]
            if alerting.webhook is not None:
                sinks.append(WebhookSink(alerting.webhook, agent=self.agent, timeout=alerting.timeout))
            self._sinks, self._sinks_from = sinks, alerting
            self.pending = {(s.kind, s.url): self.pending.get((s.kind, s.url), 0) for s in sinks}
            for key in [k for k in self.notifications if k[:2] not in self.pending]:
                del self.notifications[key]  # a sink no longer configured: its series go
            for s in sinks:
                for outcome in ("success", "failure"):
                    self.notifications[(s.kind, s.url, outcome)] += 0  # the series exist from the start
        return self._sinks

    def _due(self, alert: AlertRecord, sink: Sink, alerting: AlertingConfig, now: datetime) -> bool:
        d = alert.deliveries.get(sink.id)
        sent_at = d.sent_at if d else None
        if d is not None and d.given_up:
            return False
        if alert.firing:
            return sent_at is None or (sink.repeats and now - sent_at >= timedelta(seconds=alerting.resend_interval))
        if d is not None and d.resolved_sent_at is not None:
            return False
        if sink.repeats:
            # Take back what Alertmanager was told, unless it has lapsed there by itself.
            return sent_at is not None and now < sent_at + timedelta(seconds=ENDS_AFTER_RESENDS * alerting.resend_interval)
        return True  # the webhook hears of every resolution, with its startsAt, even if the firing never got through

    async def _deliver(self, sinks: list[Sink], alerting: AlertingConfig, now: datetime) -> None:
        sending = []
        for sink in sinks:
            batch = [a for a in self._alerts.values() if a.episode_id not in self._unrecorded and self._due(a, sink, alerting, now)]
            self.pending[(sink.kind, sink.url)] = len(batch)
            backoff = self._backoff.setdefault(sink.id, _Backoff())
            if batch and (backoff.next_try is None or now >= backoff.next_try):
                sending.append(self._send(sink, batch, backoff, alerting, now))
        await asyncio.gather(*sending)
        for alert in self._alerts.values():
            if not alert.firing and not alert.settled and not any(self._due(alert, s, alerting, now) for s in sinks):
                alert.settled = True
                self._dirty.add(alert.episode_id)

    async def _send(self, sink: Sink, batch: list[AlertRecord], backoff: _Backoff, alerting: AlertingConfig, now: datetime) -> None:
        assert self._client is not None
        try:
            await sink.send(self._client, batch, now)
        except DeliveryFailed as e:
            self.notifications[(sink.kind, sink.url, "failure")] += 1
            backoff.delay = min(max(backoff.delay * 2, alerting.poll_interval), RETRY_MAX_S)
            backoff.next_try = now + timedelta(seconds=backoff.delay)
            if backoff.failing_since is None:
                backoff.failing_since = now
                log.warning("%s %s: sending %d alert(s) failed (%s); retrying with backoff up to %.0f s", sink.kind, sink.url, len(batch), e, RETRY_MAX_S)
            else:
                log.debug("%s %s: still failing (%s); next attempt in %.0f s", sink.kind, sink.url, e, backoff.delay)
            if not sink.repeats:
                self._give_up_old(sink, batch, now)
            return
        self.notifications[(sink.kind, sink.url, "success")] += 1
        if backoff.failing_since is not None:
            log.warning("%s %s: reachable again after failing since %s", sink.kind, sink.url, backoff.failing_since.isoformat())
        backoff.delay, backoff.next_try, backoff.failing_since = 0.0, None, None
        for alert in batch:
            delivery = alert.delivery(sink.id)
            if alert.firing:
                delivery.sent_at = now
            else:
                delivery.resolved_sent_at = now
            self._dirty.add(alert.episode_id)
        self.pending[(sink.kind, sink.url)] = 0
        log.debug("%s %s: sent %d alert(s)", sink.kind, sink.url, len(batch))

    def _give_up_old(self, sink: Sink, batch: list[AlertRecord], now: datetime) -> None:
        for alert in batch:
            since = alert.resolved_at or alert.fired_at
            if now - since > GIVE_UP_AFTER:
                alert.delivery(sink.id).given_up = True
                self._dirty.add(alert.episode_id)
                log.error("%s %s: giving up on alert %s (episode %s), undeliverable for %s", sink.kind, sink.url, alert.alertname, alert.episode_id, GIVE_UP_AFTER)

    # -- the store ---------------------------------------------------------------------------------

    def _read(self, load: bool, firing_ids: list[str], known: set[str]) -> _StoreView:
        """One read transaction (worker thread)."""
        with Session(self._db) as session, session.begin():
            loaded = unsettled_alerts(session, self.agent) if load else None
            if loaded is not None:
                known = known | {a.episode_id for a in loaded}
                firing_ids = firing_ids + [a.episode_id for a in loaded if a.firing]
            episodes = open_episodes(session, self.agent)
            already = fired_episode_ids(session, [e.id for e in episodes if e.id not in known])
            open_ids = {e.id for e in episodes}
            closed = episodes_by_id(session, [i for i in firing_ids if i not in open_ids])
        return _StoreView(loaded, episodes, already, closed)

    def _save(self, alerts: list[AlertRecord]) -> None:
        """One write transaction (worker thread)."""
        with Session(self._db) as session, session.begin():
            save_alerts(session, alerts)

    async def _persist(self) -> None:
        ids = sorted(self._dirty & set(self._alerts))
        if not ids:
            return
        try:
            await run_in_store_thread(self._save, [self._alerts[i] for i in ids], timeout=STORE_TIMEOUT_S)
        except (SQLAlchemyError, TimeoutError) as e:
            self._store_failed(e)
            return
        self._store_back()
        self._dirty -= set(ids)
        self._unrecorded -= set(ids)

    def _store_failed(self, e: Exception) -> None:
        if not self._store_failing:
            self._store_failing = True
            why = describe_error(e) if isinstance(e, SQLAlchemyError) else f"no answer within {STORE_TIMEOUT_S:g} s"
            log.warning("alerts: store unavailable (%s); re-sending the alerts known so far until it is back", why)

    def _store_back(self) -> None:
        if self._store_failing:
            self._store_failing = False
            log.warning("alerts: store reachable again")
