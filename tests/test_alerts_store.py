"""Alerts in the store (monitor/store/alerts.py), on SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from monitor.analysis.episodes import Episode
from monitor.model import VerdictName
from monitor.store import make_engine, upgrade
from monitor.store.alerts import (
    AlertRecord,
    Delivery,
    episodes_by_id,
    fired_episode_ids,
    firing_alerts,
    open_episodes,
    save_alerts,
    unsettled_alerts,
)
from monitor.store.episodes import save_episode

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def record(episode_id: str, agent: str = "hk", **changes) -> AlertRecord:
    fields = dict(episode_id=episode_id, agent=agent, check="s", vantage="local", verdict="sni_blocking", alertname="MonitorSNIBlocking",
                  severity="critical", labels={"alertname": "MonitorSNIBlocking", "agent": agent}, annotations={"summary": "x"}, fired_at=T0)
    return AlertRecord(**(fields | changes))


def episode(id: str, agent: str = "hk", **changes) -> Episode:
    fields = dict(check="s", vantage="local", agent=agent, verdict=VerdictName.SNI_BLOCKING, started_at=T0, last_seen_at=T0,
                  confirmed_at=T0, id=id, evidence=("e",))
    return Episode(**(fields | changes))


def test_alerts_round_trip_and_the_engines_queries(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            firing = record("a1", deliveries={"alertmanager http://am:9093": Delivery(sent_at=T0 + timedelta(seconds=5))})
            save_alerts(session, [firing])
            save_alerts(session, [
                record("a2", resolved_at=T0 + timedelta(minutes=3), resolution="episode closed"),
                record("a3", resolved_at=T0, settled=True),
                record("b1", agent="fra"),
            ])
            for e in (episode("a1"), episode("p1", confirmed_at=None), episode("c1", ended_at=T0), episode("b1", agent="fra")):
                save_episode(session, e)
        with Session(engine) as session, session.begin():
            firing.deliveries["webhook x 1"] = Delivery(sent_at=T0, resolved_sent_at=T0 + timedelta(minutes=1), given_up=False)
            save_alerts(session, [firing])  # an update, by episode id
        with Session(engine) as session:
            mine = {a.episode_id: a for a in unsettled_alerts(session, "hk")}
            assert set(mine) == {"a1", "a2"}
            assert mine["a1"].deliveries == {
                "alertmanager http://am:9093": Delivery(sent_at=T0 + timedelta(seconds=5)),
                "webhook x 1": Delivery(sent_at=T0, resolved_sent_at=T0 + timedelta(minutes=1)),
            }
            assert mine["a2"].resolution == "episode closed" and mine["a2"].resolved_at == T0 + timedelta(minutes=3)
            assert [a.episode_id for a in firing_alerts(session)] == ["a1", "b1"]
            assert [a.episode_id for a in firing_alerts(session, "fra")] == ["b1"]
            assert fired_episode_ids(session, ["a3", "zz", "a1"]) == {"a3", "a1"} and fired_episode_ids(session, []) == set()
            assert [e.id for e in open_episodes(session, "hk")] == ["a1"]  # not the pending, nor the ended one
            assert set(episodes_by_id(session, ["c1", "nope"])) == {"c1"}
            assert mine["a1"].to_json()["deliveries"]["alertmanager http://am:9093"]["sent_at"] == "2026-12-01T10:00:05.000Z"
    finally:
        engine.dispose()
