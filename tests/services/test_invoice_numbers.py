"""Invoice numbers: consecutive and unique under concurrency, FY by IST date, 16 characters.

The concurrency test commits for real (each worker thread has its own connection), in a
series of its own that it deletes afterwards.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, delete, select

from app.extensions import db
from app.models.billing import DocumentCounter
from app.services import gst
from app.services.invoices import allocate_number

WORKERS = 8
NUMBERS = 500


@pytest.fixture
def engine(app):
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_size=WORKERS)

    def clean() -> None:
        with engine.begin() as conn:
            conn.execute(delete(DocumentCounter).where(DocumentCounter.series == "CC"))

    clean()
    yield engine
    clean()
    engine.dispose()


def test_concurrent_workers_allocate_consecutive_unique_numbers(engine):
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(count: int) -> None:
        try:
            for _ in range(count):
                with engine.begin() as conn:
                    seq, number = allocate_number("CC", "2026-27", conn)
                    assert number == f"CC/26-27/{seq:06d}"
                with lock:
                    taken.append(seq)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    shares = [NUMBERS // WORKERS + (1 if i < NUMBERS % WORKERS else 0) for i in range(WORKERS)]
    threads = [threading.Thread(target=work, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert sorted(taken) == list(range(1, NUMBERS + 1))


def test_rolled_back_transaction_gives_its_number_back(engine):
    with engine.connect() as conn:
        with conn.begin():
            assert allocate_number("CC", "2026-27", conn)[0] == 1
        transaction = conn.begin()
        assert allocate_number("CC", "2026-27", conn)[0] == 2
        transaction.rollback()  # e.g. the invoice insert failed
        with conn.begin():
            assert allocate_number("CC", "2026-27", conn)[0] == 2


def test_each_series_and_financial_year_counts_from_one(app):
    assert allocate_number("TA", "2026-27") == (1, "TA/26-27/000001")
    assert allocate_number("TA", "2026-27") == (2, "TA/26-27/000002")
    assert allocate_number("TA", "2027-28") == (1, "TA/27-28/000001")
    assert allocate_number("TB", "2026-27") == (1, "TB/26-27/000001")


@pytest.mark.parametrize(
    ("utc", "fy"),
    [
        (datetime(2027, 3, 31, 18, 29, 59, tzinfo=UTC), "2026-27"),
        (datetime(2027, 3, 31, 18, 30, 0, tzinfo=UTC), "2027-28"),  # 1 April 00:00 IST
    ],
)
def test_financial_year_rolls_over_at_midnight_ist(utc, fy):
    assert gst.financial_year_of(utc) == fy


def test_a_series_too_long_for_16_characters_is_refused_and_burns_nothing(app):
    with pytest.raises(ValueError, match="16"):
        allocate_number("INVOICES", "2026-27")
    db.session.rollback()
    assert (
        db.session.scalar(select(DocumentCounter).where(DocumentCounter.series == "INVOICES"))
        is None
    )
