"""Contacts import at 100k (issue 4): rows/s of ``run_import`` vs a row-by-row ORM baseline.

Goal: >= 20k rows/s and >= 20x a naive row-by-row ORM import, measured in the same run.

Re-creates its own database ``woffice_bench_import`` (demo data; ``BENCH_IMPORT_DB``
overrides the name: other benchmarks use ``woffice_bench``) and builds in memory a
``BENCH_ROWS``-row CSV (phone, name, email, tags, consent; unique Indian mobiles
9xxxxxxxxx, tags "vip" on every 5th row and "wholesale;late payer" on every 7th, consent
"yes" on every other row). A ContactImport is created for Acme as the upload view does
(content, guessed mapping, total rows) and ``run_import`` runs inside
``tenant_scope`` as the job runs it: ``imports.WRITERS`` (2) batches written at once on
connections of their own, each committing its progress (``BENCH_IMPORT_WRITERS=1``: every
batch on the session, committed after each). Each import prints the CPU seconds of this
process and of the database's PostgreSQL backends. Then the same file is
imported again (a no-op: every row unchanged). The baseline imports a second CSV with
other numbers row by row through the ORM (normalise, SELECT by WhatsApp id, create,
tags, ``record_consent``, commit per row); when the projected time exceeds
``BASELINE_BUDGET_S`` it stops at ``BASELINE_SAMPLE`` rows and its rate is extrapolated.
Last, a 20,000-row import of new numbers is profiled with cProfile, with one writer
(cProfile sees the calling thread only; the parser thread runs alongside). The database
is dropped at the end.

Run: ``.venv/bin/python -m bench.bench_import`` (PostgreSQL on 127.0.0.1).
"""

from __future__ import annotations

import cProfile
import csv
import io
import os
import pstats
import time

from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AppUser, Contact, Tenant
from app.models.contact import ConsentAction, ConsentSource, ConsentState, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.services import contact_import as imports
from app.services.consent import record_consent
from app.services.contacts import normalize_contact_phone
from app.services.tenants import normalize_email
from app.tenancy import tenant_scope
from bench import _setup
from bench._setup import bench_app

ROWS = int(os.environ.get("BENCH_ROWS", 100_000))
BASELINE_SAMPLE = int(os.environ.get("BENCH_BASELINE_SAMPLE", 10_000))
BASELINE_PROBE = 1_000
PROFILE_ROWS = 20_000
BASELINE_BUDGET_S = 240
GOAL_RPS, GOAL_RATIO = 20_000, 20
DATABASE = os.environ.get("BENCH_IMPORT_DB", "woffice_bench_import")
# Batches written at once, as the job does (imports.WRITERS); 1 = all on the session.
WRITERS = int(os.environ.get("BENCH_IMPORT_WRITERS", imports.WRITERS))


def drop_database() -> None:
    _setup.drop_database(DATABASE)


def make_csv(rows: int, offset: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "name", "email", "tags", "consent"])
    for i in range(rows):
        n = offset + i
        tags = []
        if i % 5 == 0:
            tags.append("vip")
        if i % 7 == 0:
            tags += ["wholesale", "late payer"]
        writer.writerow(
            [
                f"9{n:09d}",
                f"Customer {n}",
                f"c{n}@example.com",
                ";".join(tags),
                "yes" if i % 2 == 0 else "",
            ]
        )
    return out.getvalue().encode()


def new_import(tenant_id: int, user_id: int, name: str, content: bytes) -> ContactImport:
    """As the upload + mapping views do: content, guessed mapping, row count; queued."""
    found = imports.preview(content)
    imp = ContactImport(
        tenant_id=tenant_id,
        created_by_id=user_id,
        filename=name,
        content=content,
        mapping=imports.validate_mapping(found.headers, found.mapping),
        total_rows=found.total_rows,
        status=ImportStatus.queued,
    )
    db.session.add(imp)
    db.session.commit()
    return imp


def _backends_cpu_s() -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to this database
    (same machine): the session's and the import lanes' (pooled, so still connected)."""
    pids = db.session.execute(
        text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    ).scalars()
    used = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # ended meanwhile
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def _backend_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the database's backends used since ``before`` (new ones count whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _backends_cpu_s().items())


def real_import(tenant_id: int, user_id: int, name: str, content: bytes) -> tuple[dict, float]:
    """``run_import`` as the job runs it (commit per batch); counts and seconds.

    Also prints the CPU seconds of this process (all threads) and of its PostgreSQL
    backend: on a machine shared with other work the wall time stretches, these less.
    """
    with tenant_scope(tenant_id):
        imp = new_import(tenant_id, user_id, name, content)
        backends = _backends_cpu_s()
        start, cpu = time.perf_counter(), time.process_time()
        imp.status = ImportStatus.running
        db.session.commit()
        counts = imports.run_import(db.session, imp, after_batch=db.session.commit, writers=WRITERS)
        db.session.commit()
        elapsed = time.perf_counter() - start
        cpu, backend = time.process_time() - cpu, _backend_cpu_since(backends)
    db.session.expunge_all()
    print(
        f"  CPU: Python {cpu:.2f} s (all threads), PostgreSQL backends {backend:.2f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    return counts, elapsed


def baseline_row(session, tenant_id: int, user_id: int, line: int, row: dict) -> None:
    phone, wa_id = normalize_contact_phone(row["phone"])
    contact = session.scalars(
        select(Contact).where(Contact.tenant_id == tenant_id, Contact.wa_id == wa_id)
    ).first()
    if contact is None:
        contact = Contact(
            tenant_id=tenant_id,
            phone=phone,
            wa_id=wa_id,
            consent_state=ConsentState.unknown,
            marketing_objection=False,
        )
        session.add(contact)
    contact.display_name = row["name"] or None
    contact.email = normalize_email(row["email"]) if row["email"] else None
    for name in filter(None, (t.strip() for t in row["tags"].split(";"))):
        tag = session.scalars(
            select(Tag).where(Tag.tenant_id == tenant_id, Tag.name == name)
        ).first()
        if tag is None:
            tag = Tag(tenant_id=tenant_id, name=name)
            session.add(tag)
        if tag not in contact.tags:
            contact.tags.append(tag)
    if row["consent"] == "yes" and contact.consent_state != ConsentState.opted_in:
        record_consent(
            session,
            contact,
            ConsentAction.opt_in,
            ConsentSource.import_,
            evidence=f"import baseline.csv line {line}",
            actor_id=user_id,
        )
    session.commit()


def baseline_import(tenant_id: int, user_id: int, content: bytes) -> tuple[int, float, bool]:
    """Row by row; (rows done, seconds, sampled?)."""
    reader = csv.DictReader(io.StringIO(content.decode()))
    done, sampled, limit = 0, False, ROWS
    session = db.session
    with tenant_scope(tenant_id):
        start = time.perf_counter()
        for line, row in enumerate(reader, start=2):
            baseline_row(session, tenant_id, user_id, line, row)
            session.expunge_all()  # keep the identity map from growing, as a job would
            done += 1
            if done == BASELINE_PROBE:
                projected = (time.perf_counter() - start) / done * ROWS
                if projected > BASELINE_BUDGET_S:
                    sampled, limit = True, min(ROWS, BASELINE_SAMPLE)
                    print(f"  baseline projected {projected:.0f} s for {ROWS} rows: sampling")
            if done >= limit:
                break
        elapsed = time.perf_counter() - start
    return done, elapsed, sampled


def profile_batch(tenant_id: int, user_id: int) -> None:
    content = make_csv(PROFILE_ROWS, offset=700_000_000)
    profiler = cProfile.Profile()
    with tenant_scope(tenant_id):
        imp = new_import(tenant_id, user_id, "profile.csv", content)
        profiler.enable()
        counts = imports.run_import(db.session, imp, after_batch=db.session.commit)
        db.session.commit()
        profiler.disable()
    assert counts["created"] == PROFILE_ROWS, counts
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    print(
        f"\nprofile of a {PROFILE_ROWS}-row import (one writer: the calling thread): "
        f"{total:.2f} s under cProfile"
    )
    wanted = {
        "_parse_row": "_parse_row (parser thread)",
        "normalize_contact_phone": "phone normalisation (phonenumbers)",
        "normalize_email": "normalize_email",
        "write": "BatchWriter.write (SQL + bulk rows)",
        "copy_new": "BatchWriter.copy_new (ids, 3 COPYs)",
        "next_ids": "bulk.next_ids (sequence)",
        "copy_lines": "bulk.copy_lines (COPY)",
        "copy_expert": "cursor.copy_expert",
        "execute": "cursor.execute (SQL round trips)",
        "flush": "Session.flush",
        "commit": "Session.commit",
    }
    for (filename, _lineno, fn), (_cc, nc, _tt, ct, _callers) in sorted(
        stats.stats.items(), key=lambda kv: -kv[1][3]
    ):
        if fn in wanted and (
            "app/" in filename
            or "sqlalchemy/orm/session" in filename
            or fn in ("execute", "copy_expert")
            and "psycopg2" in filename
            or fn == "execute"
            and "extras" in filename
        ):
            print(f"  {wanted[fn]:<40} {ct:6.2f} s cumulative {ct / total * 100:5.1f}%  calls {nc}")
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    app = bench_app(DATABASE)
    try:
        with app.app_context():
            acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
            owner = db.session.scalars(
                select(AppUser).where(AppUser.email == "owner@acme.example")
            ).one()
            tenant_id, user_id = acme.id, owner.id
            before = db.session.scalar(
                select(func.count()).select_from(Contact).where(Contact.tenant_id == tenant_id)
            )
            content = make_csv(ROWS, offset=0)
            print(f"CSV: {ROWS} rows, {len(content) / 1e6:.1f} MB; Acme has {before} contacts")

            counts, real_s = real_import(tenant_id, user_id, "contacts.csv", content)
            assert counts == {
                "rows": ROWS,
                "created": ROWS,
                "updated": 0,
                "unchanged": 0,
                "errors": 0,
            }, counts
            real_rps = ROWS / real_s
            print(
                f"run_import (new)       {ROWS} rows {real_s:7.1f} s {real_rps:9.0f} rows/s", counts
            )

            counts2, again_s = real_import(tenant_id, user_id, "contacts.csv", content)
            assert counts2["unchanged"] == ROWS, counts2
            again_rps = ROWS / again_s
            print(
                f"run_import (re-import) {ROWS} rows {again_s:7.1f} s {again_rps:9.0f} rows/s",
                counts2,
            )

            second = make_csv(ROWS, offset=500_000_000)
            done, base_s, sampled = baseline_import(tenant_id, user_id, second)
            base_rps = done / base_s
            note = f" (sample of {done}, extrapolated)" if sampled else ""
            print(
                f"baseline row-by-row    {done} rows {base_s:7.1f} s {base_rps:9.0f} rows/s{note}"
            )
            if sampled:
                print(f"  -> {ROWS} rows would take ~{ROWS / base_rps:.0f} s")
            ratio = real_rps / base_rps
            print(f"ratio run_import / baseline: {ratio:.1f}x (goal >= {GOAL_RATIO}x)")
            met = real_rps >= GOAL_RPS and ratio >= GOAL_RATIO
            print(
                f"verdict: {'MET' if met else 'NOT MET'} ({real_rps:.0f} rows/s vs goal {GOAL_RPS})"
            )
            profile_batch(tenant_id, user_id)
            db.session.remove()
            db.engine.dispose()
    finally:
        drop_database()


if __name__ == "__main__":
    main()
