"""`monitor report`: the health-score report of a quarter (or any span), from the rollups.

    compute (rollups, uptime masks, episodes of the period and of the one before)
      -> build (scores, trend, incidents, GOPROXY advice: one JSON-shaped document)
      -> render_json | render_md | render_html (inline SVG charts) -> render_pdf (Chromium)

The report reads the store and nothing else: it never imports probes (DESIGN §2), and needs
no raw result older than storage.retention_raw.
"""

from __future__ import annotations

import base64
import mimetypes
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from monitor.config import Config
from monitor.model import utcnow
from monitor.report.build import Settings, build
from monitor.report.compute import compute
from monitor.report.period import Period
from monitor.report.progress import Progress
from monitor.report.render_html import render_html
from monitor.report.render_json import render_json
from monitor.report.render_md import render_md
from monitor.report.render_pdf import html_to_pdf
from monitor.report.score import Slo, Weights
from monitor.store import make_engine

FORMATS = ("html", "pdf", "md", "json")


class ReportError(RuntimeError):
    """The report cannot be made (store not migrated, logo unreadable, Chromium failing)."""


def settings_of(config: Config) -> Settings:
    r = config.report
    return Settings(
        title=r.title,
        slo=Slo(r.slo.availability, r.slo.latency_p95),
        weights=Weights(r.weights.availability, r.weights.latency, r.weights.blocked),
        logo=_logo_uri(r.logo) if r.logo else None,
    )


def _logo_uri(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ReportError(f"report.logo: cannot read {path}: {e.strerror or e}") from None
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def document(config: Config, period: Period, *, progress: Progress | None = None, now: datetime | None = None) -> dict:
    """The report of `period` as a JSON-shaped document."""
    progress = progress or Progress(1, stream=_Silent())
    settings = settings_of(config)
    intervals = {c.name: c.interval for c in config.checks}
    engine = make_engine(config.storage.url)
    try:
        with Session(engine) as session:
            current = compute(session, period, intervals, on_step=progress.step)
            previous = compute(session, period.previous(), intervals, full=False, on_step=progress.step)
    except (OperationalError, ProgrammingError) as e:
        if "rollup_" in str(e.orig) or "verdict_episodes" in str(e.orig):
            raise ReportError(f"the store has no rollups yet (schema too old): run `monitor db upgrade -c CONFIG` first ({e.orig})") from None
        raise
    finally:
        engine.dispose()
    progress.step("scoring")
    return build(current, previous, settings, generated_at=now or utcnow())


def make_report(config: Config, period: Period, fmt: str, output: Path | None, *, stdout: TextIO, progress: Progress) -> None:
    """Compute and write the report: to `output`, or (not for pdf) to `stdout`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    doc = document(config, period, progress=progress)
    progress.step(f"rendering {fmt}")
    logo = settings_of(config).logo
    if fmt == "json":
        text = render_json(doc)
    elif fmt == "md":
        text = render_md(doc)
    else:
        text = render_html(doc, logo=logo)
    if fmt == "pdf":
        assert output is not None
        progress.step("printing the PDF with Chromium")
        try:
            html_to_pdf(text, output)
        except RuntimeError as e:
            raise ReportError(str(e)) from None
    elif output is None:
        stdout.write(text)
        stdout.flush()
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    progress.finish()


class _Silent:
    def isatty(self) -> bool:
        return False

    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass
