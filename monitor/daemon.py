"""`monitor run`: wires config, store writer, scheduler, probes and exporter together.

Lifecycle: load config -> upgrade the database (retried in the background while it is
unreachable; results spool meanwhile) -> start writer, HTTP server, scheduler ->
serve until SIGTERM/SIGINT. SIGHUP or POST /-/reload re-reads the config: a bad file keeps
the running config and sets monitor_config_last_reload_successful to 0. On stop, running
probes get a grace period, then every queued result is flushed before exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from monitor import netns as network_namespaces
from monitor.alerts import AlertEngine
from monitor.config import Check, Config, ConfigError, SiteCheck, TlsCheck, load_config
from monitor.export.collector import MonitorCollector
from monitor.export.server import ExporterServer
from monitor.export.state import ExporterState
from monitor.judgement import Judge
from monitor.memory import limit_malloc_arenas
from monitor.model import ProbeResult, VerdictName
from monitor.probes import measure
from monitor.probes._sni import RESIDUAL
from monitor.probes.goproxy import VERIFIED_TREES
from monitor.scheduler import CheckScheduler
from monitor.store import ResultWriter, all_sumdb_trees, make_engine, upgrade
from monitor.store.engine import describe_error
from monitor.store.executor import run_in_store_thread
from monitor.store.migrate import SchemaBehind
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
        # The agent's own CPU, memory and file descriptors (process_*) and python_info.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        # Alerts from the episodes in the store, on their own task (monitor/alerts/engine.py).
        self.alerts = AlertEngine(
            lambda: self.config, url=config.storage.dsn, verify=Vantage("alerting", extra_ca_files=tuple(config.trust.extra_ca_files)).verify_context
        )
        registry.register(self.alerts.metrics)
        self.server = ExporterServer(config.exporter.listen, registry, self.reload if config.exporter.reload_enabled else None, self.health)
        self.scheduler = CheckScheduler(
            self._measure, self._conclude, max_concurrency=config.scheduler.max_concurrency, on_lag=self._record_lag, on_skip=self.state.record_skip
        )
        # Every run's verdict, across vantages and over time (monitor/judgement.py).
        self.judge = Judge(config)
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._writer_task: asyncio.Task | None = None
        self._store_prepared = False
        self._judge_errors = 0  # judge steps in a row that raised
        self._judge_last_error = ""

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

        prepare_task = None
        self._store_prepared = await try_prepare_store(self.config.storage.dsn, migrate=self.config.storage.migrate)
        if self._store_prepared:
            await run_in_store_thread(recall_residual_blocking, self.judge, self.config)
        else:
            # Start measuring anyway: the writer spools to disk until the store is back.
            prepare_task = asyncio.create_task(self._prepare_store_until_ready(), name="prepare-store")
        writer_task = self._writer_task = asyncio.create_task(self.writer.run(), name="store-writer")
        writer_task.add_done_callback(self._writer_ended)
        prune_engine = make_engine(self.config.storage.dsn)
        prune_task = asyncio.create_task(prune_forever(prune_engine, self.config.storage.retention_raw), name="retention")
        alerts_task = asyncio.create_task(self.alerts.run(), name="alerts")
        await self.server.start()
        self.scheduler.apply(self.config)
        self.state.reload_ok, self.state.reload_time = True, time.time()
        # What start-up made (modules, the config, a job per check) lives as long as the agent:
        # out of the collector's sight, a full collection at thousands of checks does not
        # traverse it again each time (each one stops the event loop for its whole length).
        # Young collections less often, so that a probe's short-lived objects die young instead
        # of being promoted: at 10,000 checks the defaults (700, 10, 10) made a full collection
        # every ~2 s, up to 0.4 s each (bench/RESULTS.md, "One agent, 10,000 checks").
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.scheduler.start()
        log.info("agent %s running %d checks from %s, storing in %s", self.config.agent, len(self.config.checks), self.config_path, self.config.storage.display_url)

        await self._stop.wait()
        log.info("stopping: letting running probes finish, then flushing the store queue")
        grace = min(30.0, max((c.timeout for c in self.config.checks), default=1.0) + 1.0)
        await self.scheduler.shutdown(grace)
        await self.server.stop()
        self.alerts.stop()
        await alerts_task
        for task in (prune_task, prepare_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (prune_task, prepare_task) if t is not None), return_exceptions=True)
        prune_engine.dispose()
        try:  # saves the episode changes still in memory: bounded, the store may not answer
            await run_in_store_thread(self.judge.close, timeout=JUDGE_TIMEOUT_S)
        except Exception as e:
            log.warning("episode changes not saved at stop (%s); the next start reads the store's", type(e).__name__)
        await self.writer.close()  # flushes the queue itself if the writer task died
        await asyncio.gather(writer_task, return_exceptions=True)
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

    async def _measure(self, check: Check, vantage_name: str) -> list[ProbeResult]:
        vantage = self.vantages.get(vantage_name)
        if vantage is None:  # a reload removed it while this run waited
            return []
        return await measure(check, vantage, agent=self.config.agent)

    async def _conclude(self, check: Check, vantage_name: str, results: list[ProbeResult], current: bool) -> None:
        """Judge the run and record it. Every result goes to the writer; a run whose check a
        reload removed or changed meanwhile (not `current`) neither steps the episode nor
        brings its series back."""
        if current:
            shown = await self._judged(check, results)
            if shown is not None:
                self.state.record_verdict(check.name, vantage_name, shown.value)
        for result in results:
            self.writer.submit(result)
            if current:
                self.state.record(result)
            log.debug(
                "result id=%s check=%s vantage=%s target=%s ok=%s failure=%s",
                result.id, result.check, result.vantage, result.target, result.ok,
                f"{result.failure.cls}@{result.failure.operation}" if result.failure else "-",
            )

    async def _prepare_store_until_ready(self) -> None:
        while not await try_prepare_store(self.config.storage.dsn, migrate=self.config.storage.migrate, quiet=True):
            await asyncio.sleep(STORE_RETRY_S)
        self._store_prepared = True
        log.info("store ready: schema current, spooled results will be replayed")

    def _writer_ended(self, task: asyncio.Task) -> None:
        if not self._stop.is_set() and not task.cancelled() and task.exception() is not None:
            log.error("the store writer stopped: %s: %s (results are no longer stored; /healthz fails)",
                      type(task.exception()).__name__, task.exception())

    def health(self) -> dict[str, Any]:
        """What /healthz and /readyz say: each part's state, and whether results reach the store."""
        writer_alive = self._writer_task is not None and not self._writer_task.done()
        writer = {
            "status": "ok" if writer_alive and self.writer.store_ok else ("degraded" if writer_alive else "failing"),
            "why": "" if writer_alive and self.writer.store_ok else ("the store does not take results: they spool" if writer_alive else "the writer task has stopped"),
            "queued": self.writer.queue_depth, "spooled": self.writer.spooled, "written": self.writer.written, "dropped": self.writer.dropped,
            "last_write": self.writer.last_write_at,
        }
        scheduler = {"status": "ok" if self.scheduler.running else "failing", "why": "" if self.scheduler.running else "not running",
                     "jobs": self.scheduler.jobs, "running_probes": self.scheduler.running_probes}
        judge = {"status": "ok" if self._judge_errors == 0 else "degraded", "why": self._judge_last_error if self._judge_errors else "",
                 "errors_in_a_row": self._judge_errors}
        parts = {"writer": writer, "scheduler": scheduler, "judge": judge}
        statuses = {d["status"] for d in parts.values()}
        status = "failing" if "failing" in statuses else ("degraded" if "degraded" in statuses else "ok")
        return {"status": status, "ready": self._store_prepared and self.writer.store_ok and writer_alive, **parts}

    async def _judged(self, check: Check, results: list[ProbeResult]) -> VerdictName | None:
        """The judge step (its verdict for monitor_verdict), bounded in time; whatever happens
        there — a bug in the rules, a store that does not answer — the results are still stored."""
        try:
            if self.judge.use_store():
                conclusion = await run_in_store_thread(self.judge.conclude, check, results, online=True, timeout=JUDGE_TIMEOUT_S)
            else:  # memory only: never queued behind store threads a hung database holds
                conclusion = await asyncio.to_thread(self.judge.conclude, check, results, online=False)
        except TimeoutError:
            self.judge.store_timed_out(JUDGE_TIMEOUT_S)  # the next runs judge without the store for a while
            self._judge_failed(check, f"no answer from the store within {JUDGE_TIMEOUT_S:g} s", traceback=False)
            return None
        except Exception as e:
            self._judge_failed(check, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, traceback=True)
            return None
        self._judge_errors = 0
        return conclusion.shown

    def _judge_failed(self, check: Check, why: str, *, traceback: bool) -> None:
        self._judge_errors += 1
        self._judge_last_error = why
        log.error("judging %s failed (%s); its results are stored unjudged", check.name, why, exc_info=traceback)

    def _record_lag(self, check: str, vantage: str, seconds: float) -> None:
        self.state.scheduler_lag[(check, vantage)] = seconds


# How often an agent that started while its store was unreachable tries it again.
STORE_RETRY_S = 10.0
# The longest a run waits for its judge step (cross-vantage verdict, episode) before its
# results are stored without it. A healthy step takes milliseconds; this only bounds a store
# that does not answer (its results then reach the writer, and the spool, that much later).
JUDGE_TIMEOUT_S = 5.0


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
        config.storage.dsn,
        queue_size=config.storage.queue_size,
        batch_size=config.storage.batch_size,
        flush_interval=config.storage.flush_interval,
        spool_dir=(config.storage.spool_dir or f"spool-{config.agent}") if spool else None,
        spool_max_results=config.storage.spool_max_results,
    )


def prepare_store(url: str, *, migrate: bool = True) -> None:
    """Migrate the store (unless told not to: then it must be current already), then seed the
    goproxy probes with the checksum-database trees verified earlier, so a fork against
    anything this agent ever saw is detected.

    Seeding happens once, when the store is first reached: adopting another agent's larger
    tree later would skip proving it consistent with ours."""
    upgrade(url, migrate=migrate)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for name, tree in all_sumdb_trees(session).items():
                VERIFIED_TREES.seed(name, tree.size, tree.hash)
    finally:
        engine.dispose()


async def try_prepare_store(url: str, *, migrate: bool = True, quiet: bool = False) -> bool:
    """prepare_store, with a store that cannot be used yet logged rather than fatal (`quiet`:
    at debug, for the retries after the first warning)."""
    level = logging.DEBUG if quiet else logging.WARNING
    try:
        await run_in_store_thread(prepare_store, url, migrate=migrate)
        return True
    except SQLAlchemyError as e:
        log.log(level, "store unreachable, results go to the spool until it is back: %s", describe_error(e))
    except (SchemaBehind, TimeoutError) as e:
        log.log(logging.ERROR if not quiet else logging.DEBUG, "store not ready, results go to the spool until it is: %s", e)
    return False


async def run_daemon(config_path: str | Path, config: Config) -> int:
    limit_malloc_arenas()  # before the first worker thread (monitor/memory.py says why)
    return await Daemon(config_path, config).run()
