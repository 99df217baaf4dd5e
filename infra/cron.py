"""Cron expressions (five fields, UTC) for retraining schedules: ``minute hour day-of-month month day-of-week``.

Each field is ``*``, a number, a range ``a-b``, a list ``a,b``, or any of them with a step ``/n``; day-of-week
counts from Sunday = 0 (7 is Sunday too). As in cron, when both day fields are restricted a day matching either
one matches. Names (``MON``, ``JAN``) and the ``@daily`` shorthands are accepted too.

>>> Cron.parse("30 2 * * *").next_after(0.0)  # 02:30 UTC on 1 January 1970
9000.0
>>> Cron.parse("@hourly").next_after(3600.0)
7200.0
>>> Cron.parse("*/15 * * * MON-FRI").next_after(0.0)  # 1 January 1970 was a Thursday
900.0
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from driftloop.infra.errors import DriftloopError

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAMES = {
    3: {m: i + 1 for i, m in enumerate(_MONTHS)},
    4: {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])},
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


class CronError(DriftloopError, ValueError):
    """A cron expression that cannot be read."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`next_after` gives its next time."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # Sunday = 0
    any_day: bool  # day of month is '*'
    any_weekday: bool  # day of week is '*'

    @classmethod
    def parse(cls, expression: str) -> Cron:
        text = _SHORTHANDS.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"cron {expression!r}: needs five fields (minute hour day-of-month month day-of-week), "
                f"got {len(parts)}; e.g. '0 3 * * *' for 03:00 UTC every day"
            )
        sets = [_field(part, i, expression) for i, part in enumerate(parts)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(expression, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def matches_day(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, t: float) -> float:
        """The first time strictly after ``t`` (epoch seconds) that the expression names (epoch seconds)."""
        start = dt.datetime.fromtimestamp(t, dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(366 * 5):  # Feb 29 on a Monday is the rarest match: within a few years
            if self.matches_day(day):
                first = start if day == start.date() else None
                for hour in sorted(self.hours):
                    if first is not None and hour < first.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first is not None and hour == first.hour and minute < first.minute:
                            continue
                        return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC).timestamp()
            day += dt.timedelta(days=1)
        raise CronError(f"cron {self.expression!r} names no time in five years (a 31 February?)")


def _field(text: str, index: int, expression: str) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                first, last = _number(a, index), _number(b, index)
            else:
                first = _number(body, index)
                last = high if step_text else first
        except ValueError:
            raise CronError(f"cron {expression!r}: cannot read {item!r} in the {_FIELDS[index]} field") from None
        if step < 1 or not low <= first <= last <= high:
            raise CronError(f"cron {expression!r}: {item!r} is outside {low}-{high} in the {_FIELDS[index]} field")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, index: int) -> int:
    names = _NAMES.get(index, {})
    return names[text.upper()] if text.upper() in names else int(text)
