"""WhatsApp webhook ingestion end to end (issue 4): statuses/s accepted and processed.

Goal: >= 3,000 statuses/s accepted AND processed (POST -> message row at its final
status) with a p50 accept latency <= 50 ms, against gunicorn on this machine, with
batches as Meta sends them (reference 4: one POST may carry several ``statuses``).

What it does:

1. Re-creates its own database ``woffice_bench_webhooks`` (migrations, roles, demo data)
   and bulk-inserts ``BENCH_MESSAGES`` outbound messages for Acme (status ``accepted``,
   WhatsApp ids ``wamid.bench.<n>``) over 200 contacts/conversations.
2. Builds every POST body in memory before the clock starts: for every message a
   ``sent`` (with ``conversation`` and ``pricing``, as Meta sends it), ``delivered`` and
   ``read`` status; ``BENCH_DUPLICATES`` of the statuses again (redeliveries in another
   batch); all shuffled (so ``read`` often comes before ``sent``) and cut into POSTs of
   1 to ``2 x BENCH_PER_POST - 1`` statuses (uniform; mean ``BENCH_PER_POST``). Each body
   is signed like Meta does (``X-Hub-Signature-256``, HMAC-SHA256 of the raw bytes with
   the app secret ``acme-demo-app-secret``).
3. Starts gunicorn (``gunicorn.conf.py``, ``run:app``, production config, access log off)
   on ``BENCH_PORT`` and ``BENCH_RQ_WORKERS`` RQ workers (``flask woffice worker
   default``) with Redis db 9, then fires the POSTs from ``BENCH_CONCURRENCY`` client
   threads (plain ``http.client``, one connection per request as gunicorn's sync workers
   close it anyway), timing each POST until its 200.
4. Polls the database until every message is ``read`` with its sent/delivered/read times
   and every inbox row is processed, then prints: accept latency p50/p95/p99, statuses/s
   accepted (first send -> last 200), statuses/s processed (first send -> last row
   final), and the backlog left at the last 200.
5. Stops every process it started, flushes Redis db 9 and drops the database.

Run: ``.venv/bin/python -m bench.bench_webhooks`` (PostgreSQL and Redis on 127.0.0.1).
Knobs: ``BENCH_MESSAGES`` (20000), ``BENCH_PER_POST`` (10), ``BENCH_DUPLICATES`` (0.1),
``BENCH_CONCURRENCY`` (8), ``BENCH_RQ_WORKERS`` (2), ``GUNICORN_WORKERS`` (gunicorn.conf.py),
``BENCH_PORT`` (8771).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from redis import Redis
from sqlalchemy import select, text

from app.extensions import db
from app.models import Tenant
from bench import _setup
from bench._setup import bench_app
from config import TestingConfig

DATABASE = "woffice_bench_webhooks"
DB_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/9"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKER_LOG = open(os.path.join(tempfile.gettempdir(), "bench_webhooks_workers.log"), "w")  # noqa: SIM115

MESSAGES = int(os.environ.get("BENCH_MESSAGES", 20_000))
PER_POST = int(os.environ.get("BENCH_PER_POST", 10))
DUPLICATES = float(os.environ.get("BENCH_DUPLICATES", 0.1))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 8))
RQ_WORKERS = int(os.environ.get("BENCH_RQ_WORKERS", 2))
PORT = int(os.environ.get("BENCH_PORT", 8771))
CONTACTS = 200
PHONE_NUMBER_ID, APP_SECRET = "100000000000001", "acme-demo-app-secret"
GOAL_RATE, GOAL_P50_MS = 3_000, 50
T0 = 1_767_225_600


# ---------------------------------------------------------------------------- data


def prepare_database() -> int:
    """The migrated, seeded database plus MESSAGES outbound messages; returns Acme's id."""
    app = bench_app(DATABASE)
    with app.app_context():
        acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        assert acme.wa_phone_number_id == PHONE_NUMBER_ID and acme.wa_app_secret == APP_SECRET
        params = {"t": acme.id, "contacts": CONTACTS, "n": MESSAGES}
        # Core INSERT ... SELECT: bulk data, written with tenant_id explicitly.
        db.session.execute(
            text(
                "INSERT INTO contact (tenant_id, wa_id, phone, consent_state,"
                " marketing_objection, created_at, updated_at)"
                " SELECT :t, '9197' || lpad(g::text, 8, '0'), '+9197' || lpad(g::text, 8, '0'),"
                " 'unknown', false, now(), now() FROM generate_series(1, :contacts) g"
            ),
            params,
        )
        db.session.execute(
            text(
                "INSERT INTO conversation (tenant_id, contact_id, status, created_at, updated_at)"
                " SELECT :t, id, 'open', now(), now() FROM contact"
                " WHERE tenant_id = :t AND wa_id LIKE '9197%'"
            ),
            params,
        )
        db.session.execute(
            text(
                "INSERT INTO message (tenant_id, conversation_id, direction, type, body,"
                " wa_message_id, status, created_at)"
                " SELECT :t, c.id, 'outbound', 'text', 'Your order has shipped',"
                " 'wamid.bench.' || g, 'accepted', now()"
                " FROM generate_series(1, :n) g"
                " JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM conversation"
                "       WHERE tenant_id = :t) c ON c.k = g % :contacts"
            ),
            params,
        )
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        tenant_id = acme.id
        db.session.remove()
        db.engine.dispose()
    return tenant_id


def status_item(n: int, status: str) -> dict:
    offset = {"sent": 0, "delivered": 4, "read": 30}[status]
    item = {
        "id": f"wamid.bench.{n}",
        "status": status,
        "timestamp": str(T0 + n + offset),
        "recipient_id": f"9197{n % CONTACTS:08d}",
    }
    if status == "sent":
        item["conversation"] = {"id": f"conv-{n % CONTACTS}", "origin": {"type": "utility"}}
        item["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "category": "utility",
            "type": "regular",
        }
    return item


def envelope(items: list[dict]) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "statuses": items,
                        },
                    }
                ],
            }
        ],
    }


def build_posts(rng: random.Random, first: int, count: int) -> tuple[list[tuple[bytes, str]], int]:
    """Signed bodies for messages first..first+count-1; returns (posts, statuses in them)."""
    events = [(n, s) for n in range(first, first + count) for s in ("sent", "delivered", "read")]
    events += rng.sample(events, int(len(events) * DUPLICATES))
    rng.shuffle(events)
    posts, i = [], 0
    while i < len(events):
        size = rng.randint(1, 2 * PER_POST - 1)
        raw = json.dumps(envelope([status_item(n, s) for n, s in events[i : i + size]])).encode()
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        posts.append((raw, signature))
        i += size
    return posts, len(events)


# ----------------------------------------------------------------------- processes


def service_env() -> dict[str, str]:
    """Production settings against the bench database and Redis db 9."""
    env = dict(os.environ)
    env.update(
        WOFFICE_ENV="production",
        DATABASE_URL=DB_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-secret-key",
        SECURITY_PASSWORD_SALT="bench-salt",
        TOTP_SECRETS="bench-totp-secret",
        IDENTITY_HASH_KEY="bench-identity-key",
        # The key the demo secrets were encrypted with (the bench app is TestingConfig).
        FIELD_ENCRYPTION_KEYS=",".join(TestingConfig.FIELD_ENCRYPTION_KEYS),
        WOFFICE_INSTANCE_DIR=tempfile.mkdtemp(prefix="woffice-bench-"),
        GUNICORN_BIND=f"127.0.0.1:{PORT}",
        GUNICORN_ACCESS_LOG="",
        GUNICORN_LOG_LEVEL="warning",
    )
    return env


def start_services(env: dict[str, str]) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "run:app"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
    ]
    for _ in range(RQ_WORKERS):
        procs.append(
            subprocess.Popen(
                [str(BIN / "flask"), "--app", "run", "woffice", "worker", "default"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=WORKER_LOG,  # one INFO line per job: kept out of the figures
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 90
    ready = 0
    while ready < 20:  # several answers in a row: every gunicorn worker has booted
        if time.monotonic() > deadline:
            raise RuntimeError("gunicorn did not come up")
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a service exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            conn.request("GET", "/health/live")
            ready = ready + 1 if conn.getresponse().status == 200 else 0
            conn.close()
        except OSError:
            ready = 0
            time.sleep(0.2)
    time.sleep(2)  # the RQ workers build their app too
    return procs


def stop_services(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def drop_database() -> None:
    _setup.drop_database(DATABASE)


# ------------------------------------------------------------------------ the load


@dataclass
class Load:
    posts: list[tuple[bytes, str]]
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    next_index: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[bytes, str] | None:
        with self.lock:
            if self.next_index >= len(self.posts):
                return None
            self.next_index += 1
            return self.posts[self.next_index - 1]


def client_thread(load: Load) -> None:
    latencies = []
    while (item := load.take()) is not None:
        raw, signature = item
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        conn.request(
            "POST",
            "/webhooks/whatsapp",
            body=raw,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        )
        response = conn.getresponse()
        response.read()
        conn.close()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            load.failures.append(str(response.status))
    with load.lock:
        load.latencies += latencies


def fire(posts: list[tuple[bytes, str]]) -> tuple[Load, float, float]:
    """POST everything from CONCURRENCY threads; returns (load, start, last 200)."""
    load = Load(posts)
    threads = [threading.Thread(target=client_thread, args=(load,)) for _ in range(CONCURRENCY)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load, start, time.perf_counter()


def progress(conn, tenant_id: int, first: int, count: int) -> tuple[int, int]:
    """(messages at their final status with every timestamp, inbox rows unprocessed)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM message WHERE tenant_id = %s AND status = 'read'"
            " AND sent_at IS NOT NULL AND delivered_at IS NOT NULL AND read_at IS NOT NULL"
            " AND wa_message_id = ANY(%s)",
            (tenant_id, [f"wamid.bench.{n}" for n in range(first, first + count)]),
        )
        done = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM webhook_inbox WHERE processed_at IS NULL")
        backlog = cur.fetchone()[0]
    conn.commit()
    return done, backlog


def wait_processed(conn, tenant_id: int, first: int, count: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while True:
        done, backlog = progress(conn, tenant_id, first, count)
        if done == count and backlog == 0:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not processed in time: {done}/{count} final, {backlog} queued")
        time.sleep(0.05)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def run(env: dict[str, str], tenant_id: int) -> dict[str, float]:
    rng = random.Random(4)
    warm_count = min(1_000, MESSAGES // 10)
    warm_posts, _ = build_posts(rng, 1, warm_count)
    posts, statuses = build_posts(rng, warm_count + 1, MESSAGES - warm_count)
    print(
        f"{len(posts)} POSTs carrying {statuses} statuses for {MESSAGES - warm_count} messages "
        f"(mean {statuses / len(posts):.1f} per POST, {DUPLICATES:.0%} redelivered), "
        f"mean body {statistics.mean(len(p[0]) for p in posts):.0f} bytes"
    )
    print(f"load average before start: {os.getloadavg()[0]:.2f} (others sharing the CPUs?)")
    procs = start_services(env)
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=DATABASE)
    try:
        load, _, _ = fire(warm_posts)  # warm-up: connections, caches, first jobs
        assert not load.failures, load.failures[:5]
        wait_processed(conn, tenant_id, 1, warm_count, timeout=120)
        print(f"warm-up: {len(warm_posts)} POSTs, {warm_count} messages processed")

        load, start, last_ack = fire(posts)
        _, backlog = progress(conn, tenant_id, warm_count + 1, MESSAGES - warm_count)
        finished = wait_processed(conn, tenant_id, warm_count + 1, MESSAGES - warm_count, 600)
    finally:
        conn.close()
        stop_services(procs)
    if load.failures:
        raise RuntimeError(f"{len(load.failures)} POSTs failed: {load.failures[:5]}")
    return {
        "posts": len(posts),
        "statuses": statuses,
        "p50": percentile(load.latencies, 0.50),
        "p95": percentile(load.latencies, 0.95),
        "p99": percentile(load.latencies, 0.99),
        "accept_s": last_ack - start,
        "total_s": finished - start,
        "backlog": backlog,
    }


def report(r: dict[str, float]) -> None:
    accepted = r["statuses"] / r["accept_s"]
    processed = r["statuses"] / r["total_s"]
    print(
        f"\ngunicorn workers {os.environ.get('GUNICORN_WORKERS', '2 x CPUs + 1')}, "
        f"RQ workers {RQ_WORKERS}, client threads {CONCURRENCY}, CPUs {os.cpu_count()}"
    )
    print(
        f"accept latency       p50 {r['p50']:7.1f} ms   p95 {r['p95']:7.1f} ms   "
        f"p99 {r['p99']:7.1f} ms"
    )
    print(
        f"accepted             {accepted:7.0f} statuses/s  ({r['posts'] / r['accept_s']:.0f} "
        f"POSTs/s, {r['accept_s']:.2f} s; {r['backlog']:.0f} inbox rows queued at the last 200)"
    )
    print(
        f"accepted + processed {processed:7.0f} statuses/s  ({r['total_s']:.2f} s to the last row)"
    )
    ok = processed >= GOAL_RATE and r["p50"] <= GOAL_P50_MS
    print(
        f"goal >= {GOAL_RATE} statuses/s processed and p50 <= {GOAL_P50_MS} ms: "
        f"{'met' if ok else 'NOT met'} (rate ratio {processed / GOAL_RATE:.2f}x, "
        f"p50 ratio {r['p50'] / GOAL_P50_MS:.2f}x)"
    )


def main() -> None:
    start = time.perf_counter()
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    try:
        tenant_id = prepare_database()
        print(
            f"database {DATABASE} ready with {MESSAGES} messages in "
            f"{time.perf_counter() - start:.0f} s"
        )
        report(run(service_env(), tenant_id))
    finally:
        redis.flushdb()
        drop_database()


if __name__ == "__main__":
    main()
