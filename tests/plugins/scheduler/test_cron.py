"""Five-field cron expressions: parsing, clear errors, and the next due minute."""

from __future__ import annotations

import datetime as dt

import pytest

from nexus.plugins.scheduler import CronError, CronExpression


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def upcoming(expression: str, start: dt.datetime, count: int = 3) -> list[dt.datetime]:
    cron = CronExpression.parse(expression)
    found, moment = [], start
    for _ in range(count):
        moment = cron.next_after(moment)
        found.append(moment)
    return found


@pytest.mark.parametrize(
    ("expression", "field", "values"),
    [
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("5,10-12 * * * *", "minutes", {5, 10, 11, 12}),
        ("0 8-18/4 * * *", "hours", {8, 12, 16}),
        ("0 22/1 * * *", "hours", {22, 23}),
        ("0 0 * jan,JUL-sep *", "months", {1, 7, 8, 9}),
        ("0 0 * */4 *", "months", {1, 5, 9}),
        ("0 0 * * mon-fri", "weekdays", {1, 2, 3, 4, 5}),
        ("0 0 * * 5-7", "weekdays", {5, 6, 0}),
        ("0 0 31 * *", "days", {31}),
    ],
)
def test_fields_accept_numbers_names_ranges_steps_and_lists(
    expression: str, field: str, values: set[int]
) -> None:
    """Each field takes *, numbers, names, ranges, steps and lists of them."""
    assert getattr(CronExpression.parse(expression), field) == values


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 field(s), not 5"),
        ("* * * * * *", "has 6 field(s), not 5"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("*/0 * * * *", "minute field '*/0': the step must be a whole number of 1 or more"),
        ("*/x * * * *", "the step must be a whole number"),
        ("10-5 * * * *", "minute field '10-5': the range runs backwards (10 > 5)"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("* * * foo *", "month field 'foo': 'foo' is not a number or a name such as 'jan'"),
        ("x * * * *", "minute field 'x': 'x' is not a number"),
        ("@often", "unknown macro; use one of @yearly"),
        ("0 0 30 2 *", "never matches: no day 30 in February"),
        ("0 0 31 4,6 *", "never matches: no day 31 in April, June"),
    ],
)
def test_mistakes_are_named_with_their_field(expression: str, message: str) -> None:
    """A wrong expression raises CronError naming the field, the item and the problem."""
    with pytest.raises(CronError) as caught:
        CronExpression.parse(expression)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"Cron expression {expression!r}: ")
    assert isinstance(caught.value, ValueError)


def test_a_non_string_is_refused() -> None:
    """Only text is a cron expression."""
    with pytest.raises(CronError, match="must be a string"):
        CronExpression.parse(5)  # type: ignore[arg-type]


def test_next_after_is_strictly_later_and_truncates_seconds() -> None:
    """The next due minute comes after the given moment, even when that moment matches."""
    assert upcoming("*/5 * * * *", utc(2024, 3, 1, 12, 5)) == [
        utc(2024, 3, 1, 12, 10),
        utc(2024, 3, 1, 12, 15),
        utc(2024, 3, 1, 12, 20),
    ]
    assert upcoming("*/5 * * * *", utc(2024, 3, 1, 12, 4, 59, 999), 1) == [utc(2024, 3, 1, 12, 5)]


def test_next_after_crosses_hours_days_months_and_years() -> None:
    """Searching rolls over the hour, the day, the month and the year."""
    assert upcoming("30 23 * * *", utc(2024, 12, 31, 23, 30), 2) == [
        utc(2025, 1, 1, 23, 30),
        utc(2025, 1, 2, 23, 30),
    ]
    assert upcoming("0 0 1 */6 *", utc(2024, 8, 10), 2) == [utc(2025, 1, 1), utc(2025, 7, 1)]
    assert upcoming("@yearly", utc(2024, 1, 1), 1) == [utc(2025, 1, 1)]


def test_29_february_comes_in_leap_years() -> None:
    """A date that exists only in leap years is found four years on."""
    assert upcoming("0 12 29 2 *", utc(2024, 3, 1), 2) == [
        utc(2028, 2, 29, 12, 0),
        utc(2032, 2, 29, 12, 0),
    ]


def test_restricted_day_fields_match_either() -> None:
    """With both day fields restricted, a day matches if either does (Vixie cron)."""
    # June 2024: the 1st is a Saturday; Mondays are the 3rd, 10th, 17th.
    assert upcoming("0 0 1,15 * mon", utc(2024, 5, 31, 1), 4) == [
        utc(2024, 6, 1),
        utc(2024, 6, 3),
        utc(2024, 6, 10),
        utc(2024, 6, 15),
    ]
    # A starred day-of-month leaves only the weekday: Sundays, given as 7.
    assert upcoming("0 0 */1 * 7", utc(2024, 6, 1), 2) == [utc(2024, 6, 2), utc(2024, 6, 9)]


def test_matches_reads_the_moment_in_utc() -> None:
    """matches() converts the moment to UTC before comparing."""
    cron = CronExpression.parse("0 9 * * *")
    paris = dt.timezone(dt.timedelta(hours=2))
    assert cron.matches(dt.datetime(2024, 6, 1, 11, 0, tzinfo=paris))
    assert not cron.matches(utc(2024, 6, 1, 11, 0))


def test_next_after_needs_an_aware_moment() -> None:
    """A naive datetime is refused rather than guessed."""
    with pytest.raises(ValueError, match="aware datetime"):
        CronExpression.parse("* * * * *").next_after(dt.datetime(2024, 1, 1))


def test_macros_and_whitespace() -> None:
    """Macros stand for their expressions; extra spaces between fields do not matter."""
    assert CronExpression.parse("@hourly").minutes == {0}
    assert str(CronExpression.parse("  */5   *  * * * ")) == "  */5   *  * * * "
    assert CronExpression.parse("@DAILY").hours == {0}
