"""The time span a report covers: a calendar quarter in UTC, or --from/--to rounded to hours."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, a whole UTC hour
    end: datetime  # exclusive, a whole UTC hour
    label: str
    quarter: tuple[int, int] | None = None  # (year, q) when it is a calendar quarter

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def previous(self) -> Period:
        """The quarter before, or the span of equal length just before."""
        if self.quarter is not None:
            year, q = self.quarter
            return quarter(f"{year - 1}Q4" if q == 1 else f"{year}Q{q - 1}")
        length = self.end - self.start
        return Period(self.start - length, self.start, f"{_show(self.start - length)} – {_show(self.start)}")


def quarter(text: str) -> Period:
    """'2026Q4' (or 2026-Q4, 2026q4): 2026-10-01T00:00Z to 2027-01-01T00:00Z."""
    m = _QUARTER.match(text.strip())
    if not m:
        raise ValueError(f"invalid quarter {text!r} (expected e.g. 2026Q4)")
    year, q = int(m.group(1)), int(m.group(2))
    start = datetime(year, 3 * q - 2, 1, tzinfo=timezone.utc)
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=timezone.utc)
    return Period(start, end, f"{year}Q{q}", (year, q))


def between(since: str, until: str) -> Period:
    """--from/--to: dates (2026-10-01) or ISO instants (2026-10-01T12:00Z, with an offset, or
    UTC when none is given); `since` rounds down and `until` up to whole UTC hours."""
    start, end = _instant(since, "--from"), _instant(until, "--to")
    start = start.replace(minute=0, second=0, microsecond=0)
    if end.replace(minute=0, second=0, microsecond=0) != end:
        end = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if end <= start:
        raise ValueError(f"--to ({until}) must be after --from ({since})")
    return Period(start, end, f"{_show(start)} – {_show(end)}")


def _instant(text: str, option: str) -> datetime:
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option}: invalid date or time {text!r} (expected e.g. 2026-10-01 or 2026-10-01T12:00Z)") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _show(t: datetime) -> str:
    return f"{t:%Y-%m-%d}" if (t.hour, t.minute) == (0, 0) else f"{t:%Y-%m-%d %H:%M}Z"
