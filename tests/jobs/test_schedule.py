"""The cron schedule: daily jobs once per IST day after their time; every job importable."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as clock

from app.jobs import redis_connection
from app.jobs.schedule import Daily, daily_jobs, due_daily, periodic_jobs


def _noop() -> None:
    """A stand-in job function."""


def test_a_daily_job_runs_once_per_ist_day_after_its_time(app):
    redis = redis_connection()
    job = Daily("test_daily", "default", _noop, clock(8, 30))  # any time of day
    before = datetime(2026, 11, 27, 2, 59, tzinfo=UTC)  # 08:29 IST
    after = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 08:30 IST
    assert not due_daily(job, redis, before)
    assert due_daily(job, redis, after)
    assert not due_daily(job, redis, datetime(2026, 11, 27, 18, 29, tzinfo=UTC))  # 23:59 IST
    # 18:30 UTC is midnight IST: a new day, but before 08:30 there.
    assert not due_daily(job, redis, datetime(2026, 11, 27, 18, 30, tzinfo=UTC))
    assert due_daily(job, redis, datetime(2026, 11, 28, 3, 0, tzinfo=UTC))


def test_every_scheduled_job_is_a_real_job_on_a_known_queue(app):
    from app.jobs import QUEUES

    jobs = periodic_jobs() + daily_jobs()
    assert {job.name for job in jobs} >= {
        "sweep_campaigns",
        "sweep_billing",
        "resume_deletions",
        "privacy_digest",
        "retention_purge",
    }
    for job in jobs:
        assert job.queue in QUEUES
        assert callable(job.func)
    for job in periodic_jobs():
        assert float(job.every_s()) > 0
