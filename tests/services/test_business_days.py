"""Privacy deadlines in business days (P18, P21, P25): 19:00 IST on the 7th business day
(Mon-Sat, minus India's national holidays and Compliance holidays) after the IST date
of receipt; extensions move the deadline and keep the original."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from app.services import business_days as bd


def ist(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """An IST wall-clock time as the naive UTC the database stores."""
    return datetime(y, m, d, hh, mm) - timedelta(hours=5, minutes=30)


def due(y: int, m: int, d: int) -> datetime:
    """19:00 IST on that day, as naive UTC."""
    return ist(y, m, d, 19, 0)


@pytest.mark.parametrize(
    ("received", "extra", "expected", "why"),
    [
        (ist(2026, 2, 4), (), due(2026, 2, 12), "Wed -> Thu next week: one Sunday skipped"),
        (ist(2026, 1, 19), (), due(2026, 1, 28), "Sunday 25 Jan and Republic Day 26 Jan"),
        (ist(2026, 8, 12), (), due(2026, 8, 21), "Independence Day (Sat 15 Aug) and Sunday"),
        (ist(2026, 9, 29), (), due(2026, 10, 8), "Gandhi Jayanti (Fri 2 Oct) and Sunday"),
        (ist(2026, 2, 4), (date(2026, 2, 7),), due(2026, 2, 13), "a Compliance holiday"),
        (ist(2026, 2, 4, 23, 59), (), due(2026, 2, 12), "23:59 IST still counts as Wed 4 Feb"),
        (ist(2026, 2, 5, 0, 1), (), due(2026, 2, 13), "00:01 IST is already Thu 5 Feb"),
        (ist(2026, 2, 8, 11, 0), (), due(2026, 2, 16), "received on a Sunday"),
        (ist(2026, 2, 7, 21, 0), (), due(2026, 2, 16), "late Saturday evening: same 7 days"),
    ],
)
def test_deadline_is_19_ist_on_the_7th_business_day(received, extra, expected, why):
    assert bd.deadline(received, extra=extra) == expected, why


def test_late_evening_receipts_straddle_the_utc_day():
    """23:59 IST and 00:01 IST on the next IST day fall on the SAME UTC date (18:29 and
    18:31 UTC on 4 Feb), yet they count from different IST dates."""
    late, early = ist(2026, 2, 4, 23, 59), ist(2026, 2, 5, 0, 1)
    assert late.date() == early.date() == date(2026, 2, 4)
    assert bd.deadline(early) - bd.deadline(late) == timedelta(days=1)


@pytest.mark.parametrize(
    ("due_at", "days", "extra", "expected"),
    [
        (due(2026, 2, 12), 3, (), due(2026, 2, 16)),  # Fri, Sat, (Sun) Mon
        (due(2026, 1, 23), 2, (), due(2026, 1, 27)),  # Sat 24, (Sun 25, Republic Day) Tue 27
        (due(2026, 2, 12), 1, (date(2026, 2, 13),), due(2026, 2, 14)),
    ],
)
def test_an_extension_moves_the_deadline_by_business_days(due_at, days, extra, expected):
    assert bd.extend(due_at, days, extra) == expected


def test_an_extension_needs_at_least_one_day():
    with pytest.raises(ValueError):
        bd.extend(due(2026, 2, 12), 0)


@pytest.mark.parametrize(
    ("now", "left", "urgency"),
    [
        (ist(2026, 2, 9, 10), 3, "on_track"),
        (ist(2026, 2, 10, 10), 2, "due_soon"),
        (ist(2026, 2, 12, 18, 59), 0, "due_soon"),
        (ist(2026, 2, 12, 19, 30), -1, "overdue"),
        (ist(2026, 2, 14, 10), -2, "overdue"),
        (ist(2026, 2, 16, 10), -3, "overdue"),  # Sunday 15 Feb does not count
    ],
)
def test_days_left_and_urgency(now, left, urgency):
    deadline = due(2026, 2, 12)
    assert bd.business_days_left(now, deadline) == left
    assert bd.urgency(now, deadline) == urgency


def test_holiday_names():
    assert bd.holiday_name(date(2026, 1, 26)) == "Republic Day"
    assert bd.holiday_name(date(2026, 2, 8)) == "Sunday"
    assert bd.holiday_name(date(2026, 2, 7), [date(2026, 2, 7)]) == "Compliance holiday"
    assert bd.is_business_day(date(2026, 2, 7))  # Saturdays are working days (P25)
