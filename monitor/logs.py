"""How monitor logs: one line per event, the cause on that line, no secrets, text or JSON.

- One line: a message's own line breaks (a psycopg error spans several) are folded, so a
  line-based shipper sees one event per line; a traceback is added only at --log-level debug
  (in JSON it is a field of the same object).
- Quiet neighbours: libraries (alembic, httpx, apscheduler, SQLAlchemy, …) log at INFO what
  is noise for an operator — a line per HTTP request, per migration plugin — so below debug
  they log warnings only.
- No secrets: every line goes through monitor.redact (URLs with userinfo or tokens).
- Context: the check and vantage a probe run is about (set with `context(...)`, carried by
  asyncio tasks through a ContextVar) and the agent name are on the line: `key=value` at the
  end in text, fields in JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from monitor.redact import redact_text

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")

# Loggers of libraries whose INFO is detail, not events: warnings only unless debugging.
THIRD_PARTY = ("alembic", "httpx", "httpcore", "asyncio", "urllib3", "psycopg")
# APScheduler warns about every run it skips or misses; monitor.scheduler says the same once,
# with the reason and the count (and the skipped-runs counter): errors only unless debugging.
QUIETER = {"apscheduler": logging.ERROR}
# Loggers whose detail is never wanted, even at debug: protocol internals (hpack/h2 dump
# header blocks, credentials included) and SQLAlchemy's mapper set-up and every statement
# with its rows (results' facts).
CAPPED = {"hpack": logging.INFO, "h2": logging.INFO, "sqlalchemy": logging.WARNING}

_context: ContextVar[dict[str, str]] = ContextVar("monitor_log_context", default={})
_agent: list[str] = []
_NEWLINES = re.compile(r"\s*\n\s*")


@contextlib.contextmanager
def context(**fields: str) -> Iterator[None]:
    """Fields (check=…, vantage=…) added to every line logged inside, tasks it starts included."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def set_agent(name: str) -> None:
    """The agent name every line carries from now on (known once the config is loaded)."""
    _agent[:] = [name]


def one_line(text: str) -> str:
    return _NEWLINES.sub(" ", text).strip()


class _Redact(logging.Filter):
    """Render the message once, redacted and folded; later handlers see the safe text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = one_line(redact_text(record.getMessage()))
        record.args = None
        return True


def _fields() -> dict[str, str]:
    fields = {"agent": _agent[0]} if _agent else {}
    fields.update(_context.get())
    return fields


class TextFormatter(logging.Formatter):
    def __init__(self, *, tracebacks: bool):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        context = _context.get()
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        if record.exc_info and record.exc_info[1] is not None:
            if self.tracebacks:
                line += "\n" + redact_text(self.formatException(record.exc_info))
            else:
                exc = record.exc_info[1]
                line += f" ({type(exc).__name__}: {one_line(redact_text(str(exc)))})"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, agent/check/vantage, exc."""

    def __init__(self, *, tracebacks: bool):
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            obj["exc"] = redact_text(self.formatException(record.exc_info)) if self.tracebacks else f"{type(exc).__name__}: {one_line(redact_text(str(exc)))}"
        return json.dumps(obj, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger for the CLI (idempotent: replaces earlier handlers)."""
    debug = level == "debug"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redact())
    handler.setFormatter(JsonFormatter(tracebacks=debug) if fmt == "json" else TextFormatter(tracebacks=debug))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else max(logging.WARNING, root.level))
    for name, level in QUIETER.items():
        logging.getLogger(name).setLevel(logging.DEBUG if debug else max(level, root.level))
    for name, floor in CAPPED.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
