"""Five-field cron expressions: when a `scheduler.cron(...)` job is due, always in UTC.

`minute hour day-of-month month day-of-week`, each field `*`, a number, a range `a-b`, a
step `*/n`, `a-b/n` or `a/n` (from a to the field's end), or a comma-separated list of those.
Months and weekdays also take names (`jan`..`dec`, `sun`..`sat`); Sunday is 0 or 7. The
macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`
stand for their usual expressions.

As in Vixie cron, when both day fields are restricted (neither starts with `*`), a day
matches if EITHER matches: `0 0 1,15 * mon` runs on the 1st, the 15th and every Monday.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Final

from nexus.errors import NexusError

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_WEEKDAYS: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# A search never needs to look further: every valid expression matches within 8 years
# (29 February comes back at least that often).
_HORIZON: Final = dt.timedelta(days=366 * 8 + 2)


class CronError(NexusError, ValueError):
    """A cron expression that cannot be parsed, or that never matches."""

    def __init__(self, expression: str, problem: str) -> None:
        self.expression, self.problem = expression, problem
        super().__init__(
            f"Cron expression {expression!r}: {problem}. Write five fields, "
            f"'minute hour day-of-month month day-of-week', such as '*/5 * * * *'."
        )


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS: Final = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),
)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed cron expression; `next_after(moment)` finds when it is next due."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    is_day_restricted: bool
    is_weekday_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        """Parse `expression`; CronError says which field is wrong and why."""
        if not isinstance(expression, str):
            raise CronError(repr(expression), "a cron expression must be a string")
        text = " ".join(expression.split())
        text = _MACROS.get(text.lower(), text)
        parts = text.split(" ")
        if text.startswith("@"):
            raise CronError(expression, f"unknown macro; use one of {', '.join(_MACROS)}")
        if len(parts) != 5:
            raise CronError(expression, f"has {len(parts)} field(s), not 5")
        minutes, hours, days, months, weekdays = (
            _parse_field(expression, part, field)
            for part, field in zip(parts, _FIELDS, strict=True)
        )
        cron = cls(
            expression=expression,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(day % 7 for day in weekdays),
            is_day_restricted=not parts[2].startswith("*"),
            is_weekday_restricted=not parts[4].startswith("*"),
        )
        cron._check_possible()
        return cron

    def _check_possible(self) -> None:
        if self.is_weekday_restricted and self.is_day_restricted:
            return  # either day field may match: some weekday always comes
        if self.is_weekday_restricted:
            return
        longest = max(_days_in_month(2000, month) for month in self.months)  # 2000: leap year
        if min(self.days) > longest:
            names = ", ".join(calendar.month_name[m] for m in sorted(self.months))
            raise CronError(self.expression, f"never matches: no day {min(self.days)} in {names}")

    def matches(self, moment: dt.datetime) -> bool:
        """Whether `moment` (its minute, in UTC) is a time the expression is due."""
        moment = moment.astimezone(dt.UTC)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._matches_day(moment.date())
        )

    def _matches_day(self, day: dt.date) -> bool:
        in_month = day.day in self.days
        on_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.is_day_restricted and self.is_weekday_restricted:
            return in_month or on_weekday
        return in_month and on_weekday

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first due minute strictly after `moment`, as an aware UTC datetime."""
        if moment.tzinfo is None:
            raise ValueError(f"next_after needs an aware datetime, got {moment!r}.")
        start = moment.astimezone(dt.UTC).replace(second=0, microsecond=0)
        current = start + dt.timedelta(minutes=1)
        limit = start + _HORIZON
        while current <= limit:
            if current.month not in self.months:
                year, month = divmod(current.month, 12)
                current = current.replace(year=current.year + year, month=month + 1, day=1)
                current = current.replace(hour=0, minute=0)
            elif not self._matches_day(current.date()):
                current = (current + dt.timedelta(days=1)).replace(hour=0, minute=0)
            elif current.hour not in self.hours:
                current = (current + dt.timedelta(hours=1)).replace(minute=0)
            elif current.minute not in self.minutes:
                current += dt.timedelta(minutes=1)
            else:
                return current
        raise CronError(self.expression, "never matches")  # pragma: no cover - checked at parse

    def __str__(self) -> str:
        return self.expression


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _parse_field(expression: str, text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(expression, f"{field.name} field {text!r} has an empty list item")
        values.update(_parse_item(expression, item, field))
    return frozenset(values)


def _parse_item(expression: str, item: str, field: _Field) -> range:
    where = f"{field.name} field {item!r}"
    base, has_step, step_text = item.partition("/")
    step = 1
    if has_step:
        if not step_text.isdigit() or int(step_text) < 1:
            raise CronError(expression, f"{where}: the step must be a whole number of 1 or more")
        step = int(step_text)
    if base == "*":
        return range(field.low, field.high + 1, step)
    first_text, is_range, last_text = base.partition("-")
    first = _value(expression, first_text, field, where)
    if is_range:
        last = _value(expression, last_text, field, where)
        if last < first:
            raise CronError(expression, f"{where}: the range runs backwards ({first} > {last})")
    else:
        last = field.high if has_step else first
    return range(first, last + 1, step)


def _value(expression: str, text: str, field: _Field, where: str) -> int:
    if text.isdigit():
        value = int(text)
    elif text.lower() in field.names:
        return field.names[text.lower()]
    else:
        hint = f" or a name such as {next(iter(field.names))!r}" if field.names else ""
        raise CronError(expression, f"{where}: {text!r} is not a number{hint}")
    if not field.low <= value <= field.high:
        raise CronError(expression, f"{where}: {value} is out of range {field.low}-{field.high}")
    return value
