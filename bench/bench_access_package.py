"""Access package for a contact with 100k messages (issue 7): time and peak RSS <= 150 MB.

Re-creates its own database ``woffice_bench_access`` (demo data), adds to Acme one
contact with a consent log and one conversation of ``BENCH_MESSAGES`` messages (bodies
of 40-100 characters; ``INSERT ... SELECT generate_series``), plus 20k messages of
another contact that must stay out, and opens an access request for the contact. Then a
fresh process (``--measure <request id>``) starts the app, takes its RSS baseline, runs
`access_package.build` and commits (the job's work without RQ around it: jobs run
inline here, Redis is not needed), and reports wall time and ``ru_maxrss``. The main
process checks the stored ZIP: it opens, its manifest counts every message, the first
and last messages parse, the other contact is absent. The database is dropped at the
end.

Run: ``.venv/bin/python -m bench.bench_access_package`` (PostgreSQL on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
import zipfile

from sqlalchemy import select, text

from app import create_app
from app.extensions import db
from app.models import Contact, Tenant
from app.models.privacy import (
    PrivacyArtifact,
    PrivacyRequest,
    RequestChannel,
    RequestType,
    SubjectKind,
)
from bench import _setup
from bench._generate import step
from bench._setup import BenchConfig, bench_app

DATABASE = "woffice_bench_access"
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 100_000))
OTHER_MESSAGES = 20_000
GOAL_MB = 150


class AccessBenchConfig(BenchConfig):
    SQLALCHEMY_DATABASE_URI = BenchConfig.SQLALCHEMY_DATABASE_URI.rsplit("/", 1)[0] + (
        f"/{DATABASE}"
    )


def _rss_now_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _contact_with_messages(tenant_id: int, wa_id: str, name: str, messages: int) -> int:
    contact_id = db.session.execute(
        text(
            "INSERT INTO contact (tenant_id, phone, wa_id, display_name, consent_state,"
            " marketing_objection, created_at, updated_at) VALUES (:t, :p, :w, :n,"
            " 'opted_in', false, now(), now()) RETURNING id"
        ),
        {"t": tenant_id, "p": "+" + wa_id, "w": wa_id, "n": name},
    ).scalar_one()
    db.session.execute(
        text(
            "INSERT INTO consent_event (tenant_id, contact_id, action, source, evidence,"
            " occurred_at) VALUES (:t, :c, 'opt_in', 'web_form', 'bench form', now())"
        ),
        {"t": tenant_id, "c": contact_id},
    )
    conversation_id = db.session.execute(
        text(
            "INSERT INTO conversation (tenant_id, contact_id, status, created_at, updated_at)"
            " VALUES (:t, :c, 'open', now(), now()) RETURNING id"
        ),
        {"t": tenant_id, "c": contact_id},
    ).scalar_one()
    db.session.commit()
    step(
        f"{messages} messages of {name}",
        """
        INSERT INTO message (tenant_id, conversation_id, direction, type, body, status,
                             wa_message_id, created_at, sent_at)
        SELECT :t, :c, (ARRAY['inbound', 'outbound'])[1 + i % 2], 'text',
               :n || ' message ' || i || ': ' || substr(md5(i::text), 1, 12) || ' '
                   || repeat('lorem ipsum ', 1 + i % 6),
               (ARRAY['received', 'read'])[1 + i % 2], 'wamid.' || :w || '.' || i,
               now() - make_interval(secs => :m - i), now() - make_interval(secs => :m - i)
        FROM generate_series(1, :m) AS i
        """,
        t=tenant_id,
        c=conversation_id,
        n=name,
        w=wa_id,
        m=messages,
    )
    return contact_id


def prepare() -> int:
    """The data and the request; returns the request id."""
    app = bench_app(DATABASE)
    with app.app_context():
        acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        contact_id = _contact_with_messages(acme.id, "919900000001", "Bench Subject", MESSAGES)
        _contact_with_messages(acme.id, "919900000002", "Bench Other", OTHER_MESSAGES)
        step("ANALYZE", "ANALYZE message, conversation, contact")
        from app.services import privacy

        request = privacy.open_request(
            request_type=RequestType.access,
            subject_kind=SubjectKind.contact,
            subject=db.session.get(Contact, contact_id),
            channel=RequestChannel.email,
            requester_email="bench.subject@mail.example",
        )
        db.session.commit()
        request_id = request.id
        db.session.remove()
        db.engine.dispose()
    return request_id


def measure(request_id: int) -> dict:
    """In this process: build the package once, as the job does, and report."""
    from app.services import access_package

    if os.environ.get("BENCH_STORE_CHUNK"):  # to see what the storing step costs
        access_package.STORE_CHUNK = int(os.environ["BENCH_STORE_CHUNK"])
    app = create_app(AccessBenchConfig)
    with app.app_context():
        request = db.session.get(PrivacyRequest, request_id)
        baseline_rss, baseline_peak = _rss_now_kib(), _peak_kib()
        start = time.perf_counter()
        artifact = access_package.build(request)
        db.session.commit()
        elapsed = time.perf_counter() - start
        return {
            "artifact_id": artifact.id,
            "bytes": artifact.size,
            "rows": artifact.counts,
            "seconds": elapsed,
            "baseline_rss_kib": baseline_rss,
            "baseline_peak_kib": baseline_peak,
            "peak_kib": _peak_kib(),
            "end_rss_kib": _rss_now_kib(),
        }


def check(artifact_id: int) -> None:
    app = create_app(AccessBenchConfig)
    with app.app_context():
        content = bytes(db.session.get(PrivacyArtifact, artifact_id).content)
        db.session.remove()
        db.engine.dispose()
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        assert zf.testzip() is None
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["files"]["messages.json"] == MESSAGES, manifest
        with zf.open("messages.json") as raw:
            lines = io.TextIOWrapper(raw, encoding="utf-8")
            assert lines.readline() == "[\n"
            first = json.loads(lines.readline().rstrip(",\n"))
            last = None
            for line in lines:
                if line.startswith("{"):
                    last = line
            assert first["body"].startswith("Bench Subject message 1:"), first
            assert json.loads(last.rstrip(",\n"))["body"].startswith(
                f"Bench Subject message {MESSAGES}:"
            )
        for name in zf.namelist():
            assert b"Bench Other" not in zf.read(name), name
        print(f"checked: {len(zf.namelist())} files, {MESSAGES} messages, other contact absent")


def drop_database() -> None:
    _setup.drop_database(DATABASE)


def main() -> None:
    start = time.perf_counter()
    if os.environ.get("BENCH_REUSE_REQUEST"):  # measure again on data already there
        request_id = int(os.environ["BENCH_REUSE_REQUEST"])
    else:
        request_id = prepare()
    print(f"data ready in {time.perf_counter() - start:.0f} s\n")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_access_package", "--measure", str(request_id)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        check(r["artifact_id"])
    finally:
        if not os.environ.get("BENCH_KEEP"):
            drop_database()
    base, peak = r["baseline_peak_kib"] / 1024, r["peak_kib"] / 1024
    peak_mb = r["peak_kib"] * 1024 / 1e6
    verdict = "OK" if peak_mb <= GOAL_MB else "OVER"
    print(
        f"access package: {r['rows']['messages']} messages, ZIP {r['bytes'] / 1e6:.1f} MB, "
        f"{r['seconds']:.1f} s ({r['rows']['messages'] / r['seconds']:.0f} messages/s)\n"
        f"RSS baseline {r['baseline_rss_kib'] / 1024:.1f} MiB (peak so far {base:.1f}), "
        f"peak {peak:.1f} MiB, delta {peak - base:+.1f} MiB, "
        f"end {r['end_rss_kib'] / 1024:.1f} MiB -> {verdict} ({peak_mb:.1f} MB vs goal "
        f"{GOAL_MB} MB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", type=int)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
    else:
        main()
