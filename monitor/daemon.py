"""`monitor run`: wires config, store writer, scheduler, probes and exporter together.

Lifecycle: load config -> upgrade the database (retried in the background while it is
unreachable; results spool meanwhile) -> start writer, HTTP server, scheduler ->
serve until SIGTERM/SIGINT. SIGHUP or POST /-/reload re-reads the config: a bad file keeps
the running config and sets monitor_config_last_reload_successful to 0. On stop, running
probes get a grace period, then every queued result is flushed before exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor import netns as network_namespaces
from monitor.config import Check, Config, ConfigError, SiteCheck, TlsCheck, load_config
from monitor.export.collector import MonitorCollector
from monitor.export.server import ExporterServer
from monitor.export.state import ExporterState
from monitor.judgement import Judge
from monitor.probes import measure
from monitor.probes._sni import RESIDUAL
from monitor.probes.goproxy import VERIFIED_TREES
from monitor.scheduler import CheckScheduler
from monitor.store import ResultWriter, all_sumdb_trees, make_engine, upgrade
from monitor.store.retention import prune_forever
from monitor.vantage import Vantage, vantages_from_config

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config_path: str | Path, config: Config):
        self.config_path = Path(config_path)
        self.config = config
        self.vantages: dict[str, Vantage] = vantages_from_config(config)
        self.state = ExporterState()
        self.writer = writer_for(config)
        registry = CollectorRegistry()
        registry.register(
            MonitorCollector(self.state, queue_depth=lambda: self.writer.queue_depth, spooled=lambda: self.writer.spooled)
        )
        self.server = ExporterServer(config.exporter.listen, registry, self.reload)
        self.scheduler = CheckScheduler(
            self._measure, max_concurrency=config.scheduler.max_concurrency, on_lag=self._record_lag
        )
        # Every run's verdict, across vantages and over time (monitor/judgement.py).
        self.judge = Judge(config)
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

        prepare_task = None
        if await try_prepare_store(self.config.storage.url):
            await asyncio.to_thread(recall_residual_blocking, self.judge, self.config)
        else:
            # Start measuring anyway: the writer spools to disk until the store is back.
            prepare_task = asyncio.create_task(self._prepare_store_until_ready(), name="prepare-store")
        writer_task = asyncio.create_task(self.writer.run(), name="store-writer")
        prune_engine = make_engine(self.config.storage.url)
        prune_task = asyncio.create_task(prune_forever(prune_engine, self.config.storage.retention_raw), name="retention")
        await self.server.start()
        self.scheduler.apply(self.config)
        self.state.reload_ok, self.state.reload_time = True, time.time()
        self.scheduler.start()
        log.info("agent %s running %d checks from %s", self.config.agent, len(self.config.checks), self.config_path)

        await self._stop.wait()
        log.info("stopping: letting running probes finish, then flushing the store queue")
        grace = min(30.0, max((c.timeout for c in self.config.checks), default=1.0) + 1.0)
        await self.scheduler.shutdown(grace)
        await self.server.stop()
        for task in (prune_task, prepare_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (prune_task, prepare_task) if t is not None), return_exceptions=True)
        prune_engine.dispose()
        self.judge.close()
        await self.writer.close()
        await writer_task
        log.info("stopped; %d results written", self.writer.written)
        return 0

    async def reload(self) -> tuple[bool, str]:
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as e:
                self.state.reload_ok = False
                for problem in e.problems:
                    log.error("reload rejected, keeping the running config: %s", problem)
                return False, "reload rejected, running config kept:\n" + "\n".join(e.problems)
            restart_only = [k for k in ("storage", "exporter", "scheduler", "agent") if getattr(new, k) != getattr(self.config, k)]
            if restart_only:
                log.warning("changes to %s take effect only after a restart", ", ".join(restart_only))
            self.config = new.model_copy(update={k: getattr(self.config, k) for k in restart_only})
            self.vantages = vantages_from_config(self.config)
            self.judge.apply(self.config)
            network_namespaces.release_all_except(v.netns for v in self.config.vantages if v.netns)
            unchanged = self.scheduler.apply(self.config)
            self.state.forget_checks_except({tuple(jid.rsplit("@", 1)) for jid in unchanged})  # type: ignore[misc]
            self.judge.forget_checks_except({(c.name, v) for c in self.config.checks for v in c.vantages})
            self.state.reload_ok, self.state.reload_time = True, time.time()
            log.info("config reloaded: %d checks", len(self.config.checks))
            return True, f"reloaded: {len(self.config.checks)} checks"

    async def _measure(self, check: Check, vantage_name: str) -> None:
        vantage = self.vantages[vantage_name]
        results = await measure(check, vantage, agent=self.config.agent)
        try:
            conclusion = await asyncio.to_thread(self.judge.conclude, check, results)
        except Exception:  # a bug in the rules must not cost the run its results
            log.exception("judging check %s from vantage %s failed; its results are stored unjudged", check.name, vantage_name)
        else:
            if conclusion.shown is not None:
                self.state.record_verdict(check.name, vantage_name, conclusion.shown.value)
        for result in results:
            self.writer.submit(result)
            self.state.record(result)
            log.debug(
                "result id=%s check=%s vantage=%s target=%s ok=%s failure=%s",
                result.id, result.check, result.vantage, result.target, result.ok,
                f"{result.failure.cls}@{result.failure.operation}" if result.failure else "-",
            )

    async def _prepare_store_until_ready(self) -> None:
        while not await try_prepare_store(self.config.storage.url):
            await asyncio.sleep(STORE_RETRY_S)
        log.info("store ready: schema upgraded, spooled results will be replayed")

    def _record_lag(self, check: str, vantage: str, seconds: float) -> None:
        self.state.scheduler_lag[(check, vantage)] = seconds


# How often an agent that started while its store was unreachable tries it again.
STORE_RETRY_S = 10.0


def recall_residual_blocking(judge: Judge, config: Config) -> None:
    """Seed the probes' residual-blocking memory (triggers, completed controls) from this
    agent's stored SNI experiments, as far back as any check's hold-off or control age."""
    window = max((max(c.holdoff, c.control_max_age) for c in config.checks if isinstance(c, (TlsCheck, SiteCheck))), default=0.0)
    if window > 0:
        RESIDUAL.recall(judge.sni_history(window))


def writer_for(config: Config, *, spool: bool = True) -> ResultWriter:
    """The store writer as every measuring command uses it: batches, and a disk spool per
    agent so that a store outage loses nothing (raises SpoolInUse if another process of the
    same agent holds it)."""
    return ResultWriter(
        config.storage.url,
        queue_size=config.storage.queue_size,
        batch_size=config.storage.batch_size,
        flush_interval=config.storage.flush_interval,
        spool_dir=(config.storage.spool_dir or f"spool-{config.agent}") if spool else None,
        spool_max_results=config.storage.spool_max_results,
    )


def prepare_store(url: str) -> None:
    """Migrate the store, then seed the goproxy probes with the checksum-database trees
    verified earlier, so a fork against anything this agent ever saw is detected.

    Seeding happens once, when the store is first reached: adopting another agent's larger
    tree later would skip proving it consistent with ours."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for name, tree in all_sumdb_trees(session).items():
                VERIFIED_TREES.seed(name, tree.size, tree.hash)
    finally:
        engine.dispose()


async def try_prepare_store(url: str) -> bool:
    """prepare_store, with an unreachable store logged rather than fatal."""
    try:
        await asyncio.to_thread(prepare_store, url)
        return True
    except SQLAlchemyError as e:
        log.warning("store unreachable, results go to the spool until it is back: %s", getattr(e, "orig", None) or e)
        return False


async def run_daemon(config_path: str | Path, config: Config) -> int:
    return await Daemon(config_path, config).run()
