"""Business days for privacy deadlines (P18, P21, P25), counted in India (IST).

A business day is Monday to Saturday (the operator's working week, P25) that is not an
Indian national holiday (the `holidays` package's India calendar: the central
government's gazetted holidays) and not a holiday Compliance added.

A deadline of N business days from a receipt is the end of the support day (19:00 IST,
P25) on the N-th business day after the receipt's IST date: a request received late
on a Saturday evening or on a holiday gets the same N full working days as one received
that morning. Timestamps in and out are naive UTC, as stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
WORKING_WEEKDAYS = frozenset({0, 1, 2, 3, 4, 5})  # Monday..Saturday
DAY_END = time(19, 0)  # support hours end at 19:00 IST (P25)
DEADLINE_BUSINESS_DAYS = 7


@lru_cache(maxsize=64)
def national_holidays(year: int) -> dict[date, str]:
    """India's national (gazetted) holidays of ``year``."""
    import holidays  # here: ~17 MiB, loaded only by processes that count deadlines

    return dict(holidays.India(years=year).items())


def holiday_name(day: date, extra: Iterable[date] = ()) -> str | None:
    """Why ``day`` is not a business day (None when it is one)."""
    if day.weekday() not in WORKING_WEEKDAYS:
        return "Sunday"
    if day in set(extra):
        return "Compliance holiday"
    return national_holidays(day.year).get(day)


def is_business_day(day: date, extra: Iterable[date] = ()) -> bool:
    return holiday_name(day, extra) is None


def ist_date(utc: datetime) -> date:
    """The IST calendar date of a naive-UTC timestamp."""
    return utc.replace(tzinfo=UTC).astimezone(IST).date()


def add_business_days(start: date, days: int, extra: Iterable[date] = ()) -> date:
    """The ``days``-th business day after ``start`` (``start`` itself never counts)."""
    if days < 0:
        raise ValueError("days must not be negative")
    extra = frozenset(extra)
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_business_day(day, extra):
            counted += 1
    return day


def end_of_day_utc(day: date) -> datetime:
    """19:00 IST on ``day`` as naive UTC."""
    return datetime.combine(day, DAY_END, tzinfo=IST).astimezone(UTC).replace(tzinfo=None)


def deadline(
    received_at: datetime, days: int = DEADLINE_BUSINESS_DAYS, extra: Iterable[date] = ()
) -> datetime:
    """The deadline of a request received at ``received_at`` (naive UTC)."""
    return end_of_day_utc(add_business_days(ist_date(received_at), days, extra))


def extend(due_at: datetime, days: int, extra: Iterable[date] = ()) -> datetime:
    """A deadline moved ``days`` business days later (an extension)."""
    if days < 1:
        raise ValueError("an extension adds at least one business day")
    return end_of_day_utc(add_business_days(ist_date(due_at), days, extra))


def business_days_left(now: datetime, due_at: datetime, extra: Iterable[date] = ()) -> int:
    """Business days from ``now`` to the deadline's day (0: due today; < 0: overdue)."""
    if now > due_at:
        today, due = ist_date(now), ist_date(due_at)
        if today == due:
            return -1
        return -_count_between(due, today, frozenset(extra)) or -1
    return _count_between(ist_date(now), ist_date(due_at), frozenset(extra))


def _count_between(start: date, end: date, extra: frozenset[date]) -> int:
    """Business days in (start, end]."""
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_business_day(day, extra):
            count += 1
    return count


def urgency(now: datetime, due_at: datetime, extra: Iterable[date] = ()) -> str:
    """Urgency: "overdue" (red), "due_soon" (amber: at most 2 business days left), "on_track"."""
    left = business_days_left(now, due_at, extra)
    if left < 0:
        return "overdue"
    return "due_soon" if left <= 2 else "on_track"
