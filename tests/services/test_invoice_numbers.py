"""Invoice numbers: consecutive and unique under concurrency, FY by IST date, 16 characters.

The concurrency tests commit for real (each worker thread has its own connection), in a
series of their own that they delete afterwards; one has threads take blocks of numbers,
as event batches do.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, delete, select

from app.extensions import db
from app.models.billing import DocumentCounter
from app.services import gst
from app.services.invoices import allocate_number, allocate_numbers

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


def _taken_by_workers(take) -> list[int]:
    """The sequence numbers ``take(worker, count)`` returns, run by WORKERS threads at
    once that share NUMBERS between them; a failure in any thread fails the test."""
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(worker: int, count: int) -> None:
        try:
            seqs = take(worker, count)
            with lock:
                taken.extend(seqs)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    shares = [NUMBERS // WORKERS + (1 if i < NUMBERS % WORKERS else 0) for i in range(WORKERS)]
    threads = [threading.Thread(target=work, args=(i, share)) for i, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return taken


def test_concurrent_workers_allocate_consecutive_unique_numbers(engine):
    def take(_worker: int, count: int) -> list[int]:
        seqs = []
        for _ in range(count):
            with engine.begin() as conn:
                seq, number = allocate_number("CC", "2026-27", conn)
                assert number == f"CC/26-27/{seq:06d}"
            seqs.append(seq)
        return seqs

    assert sorted(_taken_by_workers(take)) == list(range(1, NUMBERS + 1))


def test_concurrent_blocks_and_single_numbers_are_consecutive_and_unique(engine):
    """Batches take blocks of numbers (one statement each) while single invoices take
    one: together they still leave no gap and no duplicate."""

    def take(worker: int, count: int) -> list[int]:
        seqs, left = [], count
        while left:
            size = min(left, 1 + (worker + left) % 7)  # 1..7 numbers at a time
            with engine.begin() as conn:
                block = allocate_numbers("CC", "2026-27", size, conn)
                assert [number for _seq, number in block] == [
                    f"CC/26-27/{seq:06d}" for seq, _n in block
                ]
            seqs.extend(seq for seq, _number in block)
            left -= size
        return seqs

    assert sorted(_taken_by_workers(take)) == list(range(1, NUMBERS + 1))


def test_a_block_is_consecutive_and_a_rolled_back_block_is_given_back(engine):
    with engine.connect() as conn:
        with conn.begin():
            assert [seq for seq, _n in allocate_numbers("CC", "2026-27", 3, conn)] == [1, 2, 3]
        transaction = conn.begin()
        assert [seq for seq, _n in allocate_numbers("CC", "2026-27", 5, conn)] == [4, 5, 6, 7, 8]
        transaction.rollback()  # e.g. the batch's invoice insert failed
        with conn.begin():
            assert allocate_number("CC", "2026-27", conn) == (4, "CC/26-27/000004")
            assert allocate_numbers("CC", "2026-27", 0, conn) == []


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
