"""What `flask woffice cron` enqueues, and when (one cron process per deployment).

Periodic sweepers run every few seconds or minutes; daily jobs run once per IST day
after their time. The day a daily job last ran is kept in Redis (``cron:daily:<name>``),
so a restarted cron process does not run it twice; the jobs are idempotent anyway (the
digest records the day it was sent, the purge deletes only what has expired).

Not `rq cron`: RQ 3.0's CronJob enqueues with the default (pickle) serializer, which
our JSON-serializer workers cannot read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from redis import Redis

from app.jobs import enqueue_coalesced

IST = ZoneInfo("Asia/Kolkata")


@dataclass(frozen=True)
class Periodic:
    name: str
    queue: str
    func: Callable[..., Any]
    every_s: Callable[[], float]  # read from the config when the cron starts
    key: str  # the coalescing key the job releases as it starts


@dataclass(frozen=True)
class Daily:
    name: str
    queue: str
    func: Callable[..., Any]
    at: clock  # IST


def periodic_jobs() -> list[Periodic]:
    from app.jobs.billing import SWEEP_KEY as BILLING_KEY
    from app.jobs.billing import sweep_billing
    from app.jobs.campaigns import SWEEP_KEY as CAMPAIGN_KEY
    from app.jobs.campaigns import sweep_campaigns
    from app.jobs.deletion import resume_deletions

    cfg = current_app.config
    return [
        Periodic(
            "sweep_campaigns",
            "whatsapp",
            sweep_campaigns,
            lambda: cfg["CAMPAIGN_SWEEP_INTERVAL_S"],
            CAMPAIGN_KEY,
        ),
        Periodic(
            "sweep_billing",
            "billing",
            sweep_billing,
            lambda: cfg["BILLING_SWEEP_INTERVAL_S"],
            BILLING_KEY,
        ),
        Periodic("resume_deletions", "privacy", resume_deletions, lambda: 300, "resume-deletions"),
    ]


def daily_jobs() -> list[Daily]:
    from app.jobs.privacy import send_privacy_digest
    from app.jobs.registers import purge_retention

    return [
        # As the support day starts (P25: 9:00 IST): assignees see their worklist.
        Daily("privacy_digest", "privacy", send_privacy_digest, clock(9, 0)),
        Daily("retention_purge", "privacy", purge_retention, clock(2, 0)),
    ]


def due_daily(job: Daily, redis: Redis, now: datetime | None = None) -> bool:
    """Whether ``job`` should run now; marks it run for today's IST date when it is."""
    now_ist = (now or datetime.now(UTC)).astimezone(IST)
    if now_ist.time() < job.at:
        return False
    today = now_ist.date().isoformat()
    key = f"cron:daily:{job.name}"
    last = redis.get(key)
    if last is not None and last.decode() >= today:
        return False
    redis.set(key, today, ex=3 * 86_400)
    return True


def run_forever(redis: Redis, tick_s: float = 5.0) -> None:  # pragma: no cover - a loop
    periodic = periodic_jobs()
    daily = daily_jobs()
    next_run = dict.fromkeys((job.name for job in periodic), 0.0)
    while True:
        now = time.monotonic()
        for job in periodic:
            if now >= next_run[job.name]:
                enqueue_coalesced(job.queue, job.key, job.func)
                next_run[job.name] = now + max(1.0, float(job.every_s()))
        for job in daily:
            if due_daily(job, redis):
                enqueue_coalesced(job.queue, f"cron-{job.name}", job.func)
        time.sleep(tick_s)
