"""Contacts export at 1M (issue 4): streamed CSV and JSON, goal peak RSS <= 150 MB.

Re-creates its own database ``woffice_bench`` (demo data), generates ``BENCH_CONTACTS``
contacts for Acme with ``INSERT ... SELECT generate_series`` (``bench._generate``) and
puts tags on a share of them: "vip" on every 5th, "wholesale" on every 7th, "late payer"
on every 11th. Then, for each format, a fresh process (``--format csv|json``) logs in as
owner@acme.example through the test client, GETs /contacts/export.<format> unbuffered
and iterates the streamed body counting bytes and rows without keeping them. It prints
wall time, rows/s, MB/s and the process's RSS (``ru_maxrss``): baseline after app start
and login, peak at the end of the export, and the delta. The output is checked: the row
count equals the tenant's contacts, the CSV header and last row parse, the JSON starts
with "[", ends with "]" and its first and last rows parse. The database is dropped at
the end.

Run: ``.venv/bin/python -m bench.bench_export`` (PostgreSQL on 127.0.0.1).
``BENCH_REUSE=1`` measures again on the data already there and keeps the database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time

from sqlalchemy import func, select

from app import create_app
from app.extensions import db
from app.models import Contact, Tenant
from app.services.contact_export import EXPORT_COLUMNS
from bench import _setup
from bench._generate import generate_contacts, step
from bench._setup import BenchConfig, bench_app
from tests.conftest import LoginHelper

CONTACTS = int(os.environ.get("BENCH_CONTACTS", 1_000_000))
TAGS = {"vip": 5, "wholesale": 7, "late payer": 11}  # name: every n-th generated contact
GOAL_MB = 150


def _rss_now_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def generate(tenant_id: int) -> None:
    generate_contacts(tenant_id, CONTACTS, offset=0)
    for name, every in TAGS.items():
        step(
            f"tag {name!r} on every {every}th contact",
            """
            WITH tag AS (
                INSERT INTO tag (tenant_id, name) VALUES (:t, :name)
                ON CONFLICT (tenant_id, name) DO UPDATE SET name = excluded.name
                RETURNING id
            ), c AS (
                SELECT id, row_number() OVER (ORDER BY id) AS n FROM contact
                WHERE tenant_id = :t AND profile_name LIKE 'P%'
            )
            INSERT INTO contact_tag (contact_id, tag_id)
            SELECT c.id, tag.id FROM c, tag WHERE c.n % :every = 0
            ON CONFLICT DO NOTHING
            """,
            t=tenant_id,
            name=name,
            every=every,
        )
    step("ANALYZE", "ANALYZE contact, contact_tag, tag")


def measure(fmt: str) -> dict:
    """In this process: log in, stream one export, count and check it."""
    app = create_app(BenchConfig)
    with app.app_context():
        acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        expected = db.session.scalar(
            select(func.count()).select_from(Contact).where(Contact.tenant_id == acme.id)
        )
        db.session.remove()
    client = app.test_client()
    assert LoginHelper(client)("owner@acme.example").status_code == 302, "login failed"
    client.get("/contacts/list/")  # warm the views, templates and permission caches
    baseline_rss, baseline_peak = _rss_now_kib(), _peak_kib()

    start = time.perf_counter()
    response = client.get(f"/contacts/export.{fmt}", buffered=False)
    assert response.status_code == 200, response.status_code
    size = newlines = 0
    first = last = b""
    for chunk in response.response:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not chunk:
            continue
        size += len(chunk)
        newlines += chunk.count(b"\n")
        if len(first) < 4096:
            first += chunk
        last = (last + chunk)[-4096:]  # the tail only, to check the end
    response.close()
    elapsed = time.perf_counter() - start
    peak = _peak_kib()
    end_rss = _rss_now_kib()

    if fmt == "csv":
        rows = newlines - 1  # the header line; no generated value contains a newline
        header = next(csv.reader([first.decode().split("\r\n")[0]]))
        assert tuple(header) == EXPORT_COLUMNS, header
        tail = next(csv.reader([last.decode().rstrip("\r\n").rsplit("\r\n", 1)[-1]]))
        assert len(tail) == len(EXPORT_COLUMNS), tail
    else:
        rows = newlines - 2  # "[" + "\n{row}" / ",\n{row}" per row + "\n]\n"
        text_first, text_last = first.decode(), last.decode()
        assert text_first.startswith("[\n{") and text_last.endswith("}\n]\n")
        row_one = json.loads(text_first[2:].split("\n", 1)[0].rstrip(","))
        row_end = json.loads(text_last[:-3].rsplit("\n", 1)[-1].lstrip(","))
        assert set(row_one) == set(EXPORT_COLUMNS) == set(row_end)
    assert rows == expected, (rows, expected)
    return {
        "format": fmt,
        "rows": rows,
        "bytes": size,
        "seconds": elapsed,
        "baseline_rss_kib": baseline_rss,
        "baseline_peak_kib": baseline_peak,
        "peak_kib": peak,
        "end_rss_kib": end_rss,
    }


def drop_database() -> None:
    _setup.drop_database("woffice_bench")


def main() -> None:
    reuse = os.environ.get("BENCH_REUSE") == "1"
    if not reuse:
        start = time.perf_counter()
        app = bench_app()
        with app.app_context():
            acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
            print(f"generating {CONTACTS} contacts for Acme (tenant {acme.id})")
            generate(acme.id)
            db.session.remove()
            db.engine.dispose()
        print(f"data ready in {time.perf_counter() - start:.0f} s\n")
    results = []
    try:
        for fmt in ("csv", "json"):  # one fresh process each: peaks cannot mask each other
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_export", "--format", fmt],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        if not reuse:
            drop_database()
    for r in results:
        mb = r["bytes"] / 1e6
        base, peak = r["baseline_peak_kib"] / 1024, r["peak_kib"] / 1024
        verdict = "OK" if r["peak_kib"] * 1024 / 1e6 <= GOAL_MB else "OVER"
        print(
            f"{r['format']:<4} {r['rows']:>9} rows {mb:8.1f} MB {r['seconds']:6.1f} s "
            f"{r['rows'] / r['seconds']:9.0f} rows/s {mb / r['seconds']:6.1f} MB/s   "
            f"RSS baseline {r['baseline_rss_kib'] / 1024:.1f} MiB (peak so far {base:.1f}), "
            f"peak {peak:.1f} MiB, delta {peak - base:+.1f} MiB, "
            f"end {r['end_rss_kib'] / 1024:.1f} MiB -> {verdict} "
            f"({r['peak_kib'] * 1024 / 1e6:.1f} MB vs goal {GOAL_MB} MB)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", choices=("csv", "json"))
    args = parser.parse_args()
    if args.format:
        print(json.dumps(measure(args.format)))
    else:
        main()
