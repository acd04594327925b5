"""Clocks and shop-time arithmetic.

Everything stores UTC; "day N at HH:MM" is computed in the shop timezone: N calendar days after
the customer's add date (day 0 is the add day). Added Monday 15:00 -> day 1 at 10:00 is Tuesday
10:00, whatever the hour of adding.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Source of the current time (aware UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock:
    """A clock that only moves when told to; drives the demo, evals, tests and benchmarks."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        when = as_utc(when)
        if when < self._now:
            raise ValueError(f"simulated clock cannot go back from {self._now} to {when}")
        self._now = when

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken as UTC (that is how SQLite returns them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)




class ShopTime:
    """Converts between UTC instants and the shop's local calendar."""

    def __init__(self, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)

    def local(self, instant: datetime) -> datetime:
        return as_utc(instant).astimezone(self.tz)

    def local_date(self, instant: datetime) -> date:
        return self.local(instant).date()

    def at(self, day: date, hhmm: time) -> datetime:
        """The UTC instant of local ``hhmm`` on local ``day``."""
        return datetime.combine(day, hhmm, tzinfo=self.tz).astimezone(UTC)

    def day_n_at(self, anchor: datetime, n: int, hhmm: time) -> datetime:
        """Day ``n`` after the anchor's local date, at local ``hhmm`` (day 0 = the anchor's date)."""
        return self.at(self.local_date(anchor) + timedelta(days=n), hhmm)

    def next_weekday_at(self, after: datetime, weekday: int, hhmm: time) -> datetime:
        """The first local ``weekday`` (0=Monday) at ``hhmm`` strictly after ``after``."""
        local_day = self.local_date(after)
        for offset in range(8):
            day = local_day + timedelta(days=offset)
            candidate = self.at(day, hhmm)
            if day.weekday() == weekday and candidate > as_utc(after):
                return candidate
        raise AssertionError("unreachable: a weekday recurs within 8 days")

    def next_time_of_day(self, after: datetime, hhmm: time) -> datetime:
        """The first local ``hhmm`` strictly after ``after``."""
        local_day = self.local_date(after)
        candidate = self.at(local_day, hhmm)
        return candidate if candidate > as_utc(after) else self.at(local_day + timedelta(days=1), hhmm)


def parse_hhmm(text: str) -> time:
    """'10:00' -> time(10, 0); raises ValueError with the offending text."""
    try:
        hours, minutes = text.strip().split(":")
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"not a HH:MM time: {text!r}") from exc
