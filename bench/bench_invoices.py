"""GST invoice PDFs (issue 6): PDFs/s for one worker, and a month-end run of 10,000 payments.

Goals: (1) >= 200 invoice PDFs/s by one worker including its database work (load the
invoice, render, store the PDF and its SHA-256, commit: the `render_invoice_pdf` job);
(2) month-end: 10,000 stored ``payment.succeeded`` events turned into payments, invoices
and PDFs by 2 RQ worker processes in <= 60 s wall time.

What it does:

1. Re-creates its own database ``woffice_bench_invoices`` (migrations, roles, demo data)
   and bulk-inserts ``BENCH_TENANTS`` tenants (3 in 5 registered, with GSTINs from eight
   states including Delhi, the demo supplier's; the others unregistered, spread over the
   same states, so IGST, CGST+SGST and CGST+UTGST all occur), one plan and one active
   subscription each.
2. Run 1, one worker in this process: stores ``BENCH_PDF_INVOICES`` ``payment.succeeded``
   events (allow-listed by `app.services.dodo.sanitize`, as the webhook stores them),
   applies them with the `drain_billing_events` job (payments + invoices; not timed),
   then times the `render_pending_pdfs` job (batches of 200) until every invoice has its
   PDF, exactly as a worker runs it (the `@job` wrapper: app context, audit events, commit;
   the invoice email is queued to Redis (db 7) and never sent). It then times `render()`
   alone on the same invoices, so the database share is the difference.
3. Run 2, month-end: stores ``BENCH_EVENTS`` more events (one per tenant, next month),
   starts ``BENCH_RQ_WORKERS`` workers (``flask woffice worker billing``, production
   config, JSON serializer, the same Redis db), waits until they are registered, then
   starts the clock, enqueues enough `drain_billing_events` runs for the backlog (one
   Redis pipeline; they share it through SKIP LOCKED) and polls until every event is
   processed and every new invoice has its PDF. Each drain has the new invoices' PDFs
   rendered by coalesced `render_pending_pdfs` runs on the same queue. It also reports
   the CPU time the workers and their database server processes used (from /proc), so
   a run on a shared machine shows how much of the two CPUs it actually had.
4. Checks that every series and FY is numbered 1..n without a gap or a duplicate, stops
   the workers, flushes its Redis db and drops the database.

Run: ``.venv/bin/python -m bench.bench_invoices`` (PostgreSQL and Redis on 127.0.0.1).
Knobs: ``BENCH_TENANTS`` (10000), ``BENCH_EVENTS`` (= tenants), ``BENCH_PDF_INVOICES``
(1000), ``BENCH_RQ_WORKERS`` (2), ``BENCH_WORKER`` (``flask`` or ``simple``, below),
``BENCH_DEADLINE_S`` (1200), ``BENCH_REDIS_URL`` (``redis://127.0.0.1:6379/7``).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from flask import Flask
from flask_migrate import upgrade
from redis import Redis
from rq import Queue, Retry, Worker
from rq.serializers import JSONSerializer
from sqlalchemy import func, insert, select
from stdnum import luhn

from app import create_app
from app.extensions import appbuilder, db
from app.jobs._runtime import job
from app.jobs.billing import (
    EVENT_BATCH,
    drain_billing_events,
    render_invoice_pdf,
    render_pending_pdfs,
)
from app.models.billing import BillingEvent, Invoice, Plan, Subscription
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import dodo, invoice_pdf
from app.services.demo import seed_demo
from app.services.roles import sync_roles
from bench import _setup
from config import TestingConfig
from tests.conftest import MIGRATIONS, recreate_database
from tests.fakes import dodo as fake_dodo

DATABASE = "woffice_bench_invoices"
DB_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"
# A Redis db of its own: anything that flushes it mid-run loses the queued jobs (the bench
# then stops with "stalled" instead of waiting for its deadline).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
STALL_S = 60  # no progress and nothing queued or running for this long: jobs were lost
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKER_LOG = os.path.join(tempfile.gettempdir(), "bench_invoices_workers.log")

TENANTS = int(os.environ.get("BENCH_TENANTS", 10_000))
EVENTS = min(int(os.environ.get("BENCH_EVENTS", TENANTS)), TENANTS)
PDF_INVOICES = min(int(os.environ.get("BENCH_PDF_INVOICES", 1_000)), TENANTS)
RQ_WORKERS = int(os.environ.get("BENCH_RQ_WORKERS", 2))
# "flask": the project's `flask woffice worker billing` (RQ's forking Worker: a work horse
# per job, which starts with a fresh database connection and cold SQLAlchemy caches);
# "simple": `rq worker billing -w rq.worker.SimpleWorker -S json` (jobs run in the worker
# process; `app.jobs._runtime` builds the app once per process).
WORKER_KIND = os.environ.get("BENCH_WORKER", "flask")  # no longer forks: see app/cli.py
WORKER_COMMANDS = {
    "flask": [str(BIN / "flask"), "--app", "run", "woffice", "worker", "billing"],
    "simple": [
        str(BIN / "rq"),
        *("worker", "billing", "--url", REDIS_URL, "--serializer", "json"),
        *("--worker-class", "rq.worker.SimpleWorker"),
    ],
}
DEADLINE_S = float(os.environ.get("BENCH_DEADLINE_S", 1_200))
GOAL_PDF_RATE, GOAL_MONTH_END_S = 200, 60
STATES = ("27", "29", "07", "33", "24", "09", "19", "04")
GSTIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PAN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


class InvoiceBenchConfig(TestingConfig):
    SQLALCHEMY_DATABASE_URI = DB_URL
    REDIS_URL = REDIS_URL  # jobs queue up instead of running inline (no emails sent)


# ---------------------------------------------------------------------------- data


def bench_gstin(n: int, state: str) -> str:
    """A valid GSTIN (company PAN AABC?dddd?) for tenant ``n``."""
    pan = f"AABC{PAN_LETTERS[n % 24]}{n % 10_000:04d}{PAN_LETTERS[(n // 24) % 24]}"
    body = f"{state}{pan}1Z"
    return body + luhn.calc_check_digit(body, GSTIN_ALPHABET)


def make_app() -> Flask:
    recreate_database(DB_URL)
    app = create_app(InvoiceBenchConfig)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        sync_roles(appbuilder, app.config["WOFFICE_ROLES"])
        seed_demo(db.session)
        db.session.commit()
    return app


def seed_tenants() -> None:
    """TENANTS tenants with a subscription each (Core inserts: bulk data, no audit)."""
    plan = Plan(
        name="Bench Growth",
        price_paise=999_900,
        billing_period="month",
        sac_code="998315",
        gst_rate_bp=1800,
        dodo_product_id="pdt_bench_growth",
    )
    db.session.add(plan)
    db.session.flush()
    now = utcnow()
    rows = []
    for n in range(TENANTS):
        state = STATES[n % len(STATES)]
        rows.append(
            {
                "name": f"Bench Tenant {n}",
                "legal_name": f"Bench Tenant {n} Private Limited",
                "slug": f"bench-{n}",
                "status": "active",
                "contact_email": f"accounts@bench-{n}.example",
                "contact_phone": "+911123456789",
                "gstin": bench_gstin(n, state) if n % 5 < 3 else None,
                "address_line1": f"{n} Bench Road, Block {n % 40}",
                "city": "Bench City",
                "state_code": state,
                "postal_code": "110001",
                "created_at": now,
                "updated_at": now,
            }
        )
    db.session.execute(insert(Tenant.__table__), rows)
    ids = db.session.execute(
        select(Tenant.id, Tenant.slug).where(Tenant.slug.like("bench-%"))
    ).all()
    db.session.execute(
        insert(Subscription.__table__),
        [
            {
                "tenant_id": tenant_id,
                "plan_id": plan.id,
                "dodo_subscription_id": f"sub_{slug}",
                "dodo_customer_id": f"cus_{slug}",
                "status": "active",
                "cancel_at_period_end": False,
                "created_at": now,
                "updated_at": now,
            }
            for tenant_id, slug in ids
        ],
    )
    db.session.commit()


def store_events(month: int, count: int) -> list[int]:
    """``count`` payment.succeeded events (tenants 0..count-1), stored as the webhook does."""
    at = datetime(2026, 4, 1, 4, 30, tzinfo=UTC) + timedelta(days=30 * month)
    rows = []
    for n in range(count):
        event = fake_dodo.payment(
            f"pay_bench_m{month}_{n}",
            tenant_slug=f"bench-{n}",
            subscription_id=f"sub_bench-{n}",
            customer_id=f"cus_bench-{n}",
            email=f"accounts@bench-{n}.example",
            state=None,
            at=at + timedelta(seconds=n),
        )
        clean = dodo.sanitize(event)
        rows.append(
            {
                "webhook_id": f"msg_bench_m{month}_{n}",
                "event_type": clean["type"],
                "event_at": dodo.parse_time(clean["timestamp"]),
                "payload": clean,
                "received_at": utcnow(),
                "attempts": 0,
            }
        )
    db.session.execute(insert(BillingEvent.__table__), rows)
    db.session.commit()
    return list(
        db.session.scalars(
            select(BillingEvent.id)
            .where(BillingEvent.webhook_id.like(f"msg_bench_m{month}_%"))
            .order_by(BillingEvent.id)
        )
    )


# ------------------------------------------------------------------ run 1: one worker


@job
def empty_job() -> dict[str, int]:
    """What every job costs before doing anything (app context, audit events, commits)."""
    return {"empty": 1}


def job_floor_ms(rounds: int = 300) -> float:
    for _ in range(20):
        empty_job()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        empty_job()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def run_one_worker(app: Flask) -> dict[str, float]:
    with app.app_context():
        event_ids = store_events(0, PDF_INVOICES)
        start = time.perf_counter()
        while drain_billing_events()["events"]:
            pass
        apply_s = time.perf_counter() - start
        Redis.from_url(REDIS_URL).flushdb()  # the PDF jobs those queued: run here instead
        invoice_ids = list(db.session.scalars(select(Invoice.id).order_by(Invoice.id)))
        db.session.remove()

        warm = invoice_ids[:20]
        for invoice_id in warm:
            render_invoice_pdf(invoice_id=invoice_id)
        timed_ids = invoice_ids[len(warm) :]
        samples = []
        start = time.perf_counter()
        while True:  # the `render_pending_pdfs` job, batch after batch, as a worker runs it
            t0 = time.perf_counter()
            done = render_pending_pdfs()
            if not done["rendered"] + done["failed"]:
                break
            samples.append((time.perf_counter() - t0) / (done["rendered"] + done["failed"]))
        job_s = time.perf_counter() - start

        invoices = list(db.session.scalars(select(Invoice).where(Invoice.id.in_(timed_ids))))
        start = time.perf_counter()
        for invoice in invoices:
            invoice_pdf.render(invoice)
        render_s = time.perf_counter() - start
        sizes = [len(invoice.pdf) for invoice in invoices]
        floor = job_floor_ms()
        rendered = db.session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.pdf_status == "rendered")
        )
        db.session.remove()
    assert rendered == len(invoice_ids), f"{rendered} of {len(invoice_ids)} rendered"
    return {
        "events": len(event_ids),
        "apply_s": apply_s,
        "invoices": len(timed_ids),
        "job_s": job_s,
        "p50": statistics.median(samples) * 1000,
        "p95": sorted(samples)[int(len(samples) * 0.95)] * 1000,
        "render_s": render_s,
        "bytes": statistics.mean(sizes),
        "floor_ms": floor,
    }


# --------------------------------------------------------------- run 2: month-end


def service_env() -> dict[str, str]:
    """Production settings against the bench database and the bench Redis db."""
    cfg = InvoiceBenchConfig
    env = dict(os.environ)
    env.update(
        WOFFICE_ENV="production",
        DATABASE_URL=DB_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-secret-key",
        SECURITY_PASSWORD_SALT="bench-salt",
        TOTP_SECRETS="bench-totp-secret",
        IDENTITY_HASH_KEY="bench-identity-key",
        FIELD_ENCRYPTION_KEYS=",".join(TestingConfig.FIELD_ENCRYPTION_KEYS),
        WOFFICE_INSTANCE_DIR=tempfile.mkdtemp(prefix="woffice-bench-"),
        SUPPLIER_LEGAL_NAME=cfg.SUPPLIER_LEGAL_NAME,
        SUPPLIER_ADDRESS=cfg.SUPPLIER_ADDRESS,
        SUPPLIER_GSTIN=cfg.SUPPLIER_GSTIN,
        SUPPLIER_STATE_CODE=cfg.SUPPLIER_STATE_CODE,
        SUPPLIER_PAN=cfg.SUPPLIER_PAN,
        SUPPLIER_SIGNATORY=cfg.SUPPLIER_SIGNATORY,
        DODO_WEBHOOK_SECRET=fake_dodo.DEMO_SECRET,
    )
    return env


def start_workers(redis: Redis) -> list[subprocess.Popen]:
    log = open(WORKER_LOG, "w")  # noqa: SIM115 - one INFO line per job, kept out of the figures
    procs = [
        subprocess.Popen(
            WORKER_COMMANDS[WORKER_KIND],
            cwd=ROOT,
            env=service_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        for _ in range(RQ_WORKERS)
    ]
    deadline = time.monotonic() + 120
    while len(Worker.all(connection=redis)) < RQ_WORKERS:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop_workers(procs)
            raise RuntimeError(f"workers did not start; see {WORKER_LOG}")
        time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of local processes (those that can be read)."""
    seconds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def backend_pids(conn) -> list[int]:
    """The database's server processes, other than this connection's."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (DATABASE,),
        )
        pids = [row[0] for row in cur.fetchall()]
    conn.commit()
    return pids


def month_end_progress(conn, first_event: int) -> tuple[int, int, int]:
    """(events processed, their invoices with a PDF, events failed)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE processed_at IS NOT NULL),"
            " count(*) FILTER (WHERE processed_at IS NULL AND error IS NOT NULL)"
            " FROM billing_event WHERE id >= %s",
            (first_event,),
        )
        processed, failed = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM invoice i JOIN payment p ON p.id = i.payment_id"
            " WHERE p.dodo_payment_id LIKE 'pay_bench_m1_%%' AND i.pdf_status = 'rendered'"
        )
        rendered = cur.fetchone()[0]
    conn.commit()
    return processed, rendered, failed


def check_numbers(conn) -> None:
    """Every series and FY numbered 1..n without a gap or a duplicate, n = its counter."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT i.series, i.fy, count(*), count(DISTINCT i.seq), min(i.seq), max(i.seq),"
            " max(c.last_seq) FROM invoice i JOIN document_counter c"
            " ON c.series = i.series AND c.fy = i.fy GROUP BY i.series, i.fy"
        )
        for series, fy, n, distinct, low, high, last in cur.fetchall():
            assert n == distinct == high == last and low == 1, (series, fy, n, low, high, last)
    conn.commit()


def run_month_end(app: Flask) -> dict[str, float]:
    with app.app_context():
        event_ids = store_events(1, EVENTS)
        db.session.remove()
        db.engine.dispose()
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    queue = Queue("billing", connection=redis, serializer=JSONSerializer, default_timeout=300)
    path = f"{drain_billing_events.__module__}.{drain_billing_events.__qualname__}"
    # As after a burst of webhooks (each schedules a coalesced drain as its job starts):
    # enough drain runs for the backlog, shared by the workers through SKIP LOCKED.
    runs = -(-len(event_ids) // EVENT_BATCH) + 1
    jobs = [
        Queue.prepare_data(path, kwargs={}, retry=Retry(max=3, interval=[10, 60, 300]))
        for _ in range(runs)
    ]
    print(f"load average before start: {os.getloadavg()[0]:.2f} (others sharing the CPUs?)")
    procs = start_workers(redis)
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=DATABASE)
    try:
        workers_cpu = cpu_seconds([p.pid for p in procs])
        backends_cpu = cpu_seconds(backend_pids(conn))
        start = time.perf_counter()
        with redis.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
        enqueued = time.perf_counter()
        events_done_at = None
        deadline = start + DEADLINE_S
        last, last_change = None, time.perf_counter()
        while True:
            processed, rendered, failed = month_end_progress(conn, event_ids[0])
            now = time.perf_counter()
            if processed == len(event_ids) and events_done_at is None:
                events_done_at = now
            if rendered == len(event_ids):
                break
            if (processed, rendered) != last:
                last, last_change = (processed, rendered), now
            idle = not queue.count and not queue.started_job_registry.count
            if now > deadline or (idle and now - last_change > STALL_S):
                raise RuntimeError(
                    f"{'stalled' if now <= deadline else 'not done in time'}: {processed} "
                    f"events, {rendered} PDFs, {failed} failed (Redis flushed by someone else?)"
                )
            time.sleep(0.1)
        finished = time.perf_counter()
        # Where the CPU went (a shared machine gives the run less than all of it).
        workers_s = sum(cpu_seconds([p.pid for p in procs]).values()) - sum(workers_cpu.values())
        backends_s = sum(
            seconds - backends_cpu.get(pid, 0.0)
            for pid, seconds in cpu_seconds(backend_pids(conn)).items()
        )
        check_numbers(conn)
    finally:
        conn.close()
        stop_workers(procs)
    return {
        "events": len(event_ids),
        "enqueue_s": enqueued - start,
        "events_s": (events_done_at or finished) - start,
        "total_s": finished - start,
        "load": os.getloadavg()[0],
        "workers_cpu_s": workers_s,
        "database_cpu_s": backends_s,
    }


# ----------------------------------------------------------------------------- main


def drop_database() -> None:
    _setup.drop_database(DATABASE)


def report_one(one: dict[str, float]) -> None:
    rate = one["invoices"] / one["job_s"]
    render_ms = one["render_s"] / one["invoices"] * 1000
    job_ms = one["job_s"] / one["invoices"] * 1000
    print(f"\nCPUs {os.cpu_count()}, load average now {os.getloadavg()[0]:.2f}")
    print(
        f"run 1: {one['events']} events applied in-process in {one['apply_s']:.1f} s "
        f"({one['events'] / one['apply_s']:.0f} events/s, payment + invoice, no PDF)"
    )
    print(
        f"run 1: render_invoice_pdf job, one worker: {rate:.0f} invoices/s "
        f"({job_ms:.2f} ms each; p50 {one['p50']:.2f} ms, p95 {one['p95']:.2f} ms; "
        f"mean PDF {one['bytes']:.0f} bytes)"
    )
    print(
        f"       of which render() alone {render_ms:.2f} ms "
        f"({1000 / render_ms:.0f}/s), database + job wrapper {job_ms - render_ms:.2f} ms; "
        f"an empty @job alone {one['floor_ms']:.2f} ms ({1000 / one['floor_ms']:.0f}/s)"
    )
    print(
        f"       goal >= {GOAL_PDF_RATE}/s: {'met' if rate >= GOAL_PDF_RATE else 'NOT met'} "
        f"({rate / GOAL_PDF_RATE:.2f}x)",
        flush=True,
    )


def report_month(month: dict[str, float]) -> None:
    print(
        f"run 2: month-end, {month['events']} payment.succeeded events, {RQ_WORKERS} RQ "
        f"workers ({WORKER_KIND}): enqueued in {month['enqueue_s']:.2f} s, events applied in "
        f"{month['events_s']:.1f} s, every PDF stored in {month['total_s']:.1f} s "
        f"({month['events'] / month['total_s']:.0f} invoices/s end to end; load average "
        f"at the end {month['load']:.2f})"
    )
    available = month["total_s"] * (os.cpu_count() or 1)
    print(
        f"       CPU used: workers {month['workers_cpu_s']:.1f} s, database "
        f"{month['database_cpu_s']:.1f} s; {available:.0f} CPU-seconds elapsed "
        f"({(month['workers_cpu_s'] + month['database_cpu_s']) / available:.0%} used by the run)"
    )
    ok = month["total_s"] <= GOAL_MONTH_END_S
    print(
        f"       goal <= {GOAL_MONTH_END_S} s: {'met' if ok else 'NOT met'} "
        f"({month['total_s'] / GOAL_MONTH_END_S:.2f}x of the budget)"
    )


def main() -> None:
    start = time.perf_counter()
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    try:
        app = make_app()
        with app.app_context():
            seed_tenants()
            db.session.remove()
        print(f"database {DATABASE}: {TENANTS} tenants in {time.perf_counter() - start:.0f} s")
        one = run_one_worker(app)
        report_one(one)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        month = run_month_end(app)
        report_month(month)
    finally:
        redis.flushdb()
        drop_database()


if __name__ == "__main__":
    main()
