"""Access package for a contact with 100k messages (issue 7): time and peak RSS <= 150 MB.

Re-creates its own database ``woffice_bench_access`` (demo data), adds to Acme one
contact with a consent log and one conversation of ``BENCH_MESSAGES`` messages (bodies
of 40-100 characters; ``INSERT ... SELECT generate_series``), plus 20k messages of
another contact that must stay out, and opens two access requests for the contact.

Two measurements, each in a fresh process whose ``ru_maxrss`` is the figure:

* ``direct`` (``--measure <request id>``): starts the app, takes its RSS baseline, runs
  `access_package.build` and commits (the job's work without RQ around it), and reports
  wall time and ``ru_maxrss`` at each step (imports, ``create_app``, build).
* ``worker``: the production way, ``flask woffice worker privacy --burst`` (RQ's
  SimpleWorker: the job runs in the worker process, the app is built once) on Redis
  ``BENCH_REDIS_URL`` (default db 6), after ``build_package`` was enqueued; the figure is
  the worker's ``ru_maxrss`` from ``wait4``.

Linux hands a child the parent's RSS high-water mark: a process started by ``fork``/``exec``
begins with ``ru_maxrss`` at least the parent's peak. This bench therefore prepares the
data in a subprocess too, and its main process imports nothing heavy before both
measurements; each measured process reports what it inherited (``ru_maxrss`` before its
own imports), which must stay far below the figures. The main process checks each stored
ZIP: it opens, its manifest counts every message, the first and last messages parse, the
other contact is absent. The database is dropped at the end.

Run: ``.venv/bin/python -m bench.bench_access_package`` (PostgreSQL and Redis on
127.0.0.1). ``BENCH_MODE=direct|worker|both`` (default both).
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

# Only the standard library at module level: this process starts the measured ones, and
# its own peak would become theirs (see the docstring).

DATABASE = "woffice_bench_access"
DATABASE_URI = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"  # BenchConfig's
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 100_000))
OTHER_MESSAGES = 20_000
GOAL_MB = 150


def _config(redis_url: str | None = None):
    """The testing configuration on this bench's database (no bench/test-suite imports:
    the measured process must load what a worker loads, not pytest and aiosmtpd)."""
    from config import TestingConfig

    return type(
        "AccessBenchConfig",
        (TestingConfig,),
        {"SQLALCHEMY_DATABASE_URI": DATABASE_URI, "REDIS_URL": redis_url},
    )


def _rss_now_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _hwm_kib() -> int:
    """VmHWM: this process's own RSS high-water mark (nothing inherited)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _contact_with_messages(tenant_id: int, wa_id: str, name: str, messages: int) -> int:
    from sqlalchemy import text

    from app.extensions import db
    from bench._generate import step

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


def prepare(requests: int) -> list[int]:
    """The data and ``requests`` access requests for the subject; returns their ids."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Contact, Tenant
    from app.models.privacy import RequestChannel, RequestType, SubjectKind
    from app.services import privacy
    from bench._generate import step
    from bench._setup import bench_app

    app = bench_app(DATABASE)
    with app.app_context():
        acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        contact_id = _contact_with_messages(acme.id, "919900000001", "Bench Subject", MESSAGES)
        _contact_with_messages(acme.id, "919900000002", "Bench Other", OTHER_MESSAGES)
        step("ANALYZE", "ANALYZE message, conversation, contact")
        ids = []
        for _ in range(requests):
            request = privacy.open_request(
                request_type=RequestType.access,
                subject_kind=SubjectKind.contact,
                subject=db.session.get(Contact, contact_id),
                channel=RequestChannel.email,
                requester_email="bench.subject@mail.example",
            )
            db.session.flush()
            ids.append(request.id)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return ids


def measure(request_id: int) -> dict:
    """In this process: build the package once, as the job does, and report ``ru_maxrss``
    after each step (KiB)."""
    marks = {"inherited": _peak_kib()}  # before any import: what the launcher handed down
    from app import create_app
    from app.extensions import db
    from app.models.privacy import PrivacyRequest
    from app.services import access_package

    marks["imports"] = _peak_kib()
    if os.environ.get("BENCH_STORE_CHUNK"):  # to see what the storing step costs
        access_package.STORE_CHUNK = int(os.environ["BENCH_STORE_CHUNK"])
    app = create_app(_config())
    marks["create_app"] = _peak_kib()
    after_create_app = _rss_now_kib()
    with app.app_context():
        request = db.session.get(PrivacyRequest, request_id)
        baseline_rss, baseline_peak = _rss_now_kib(), _peak_kib()
        start = time.perf_counter()
        artifact = access_package.build(request)
        db.session.commit()
        elapsed = time.perf_counter() - start
        marks["build"] = _peak_kib()
        return {
            "artifact_id": artifact.id,
            "bytes": artifact.size,
            "rows": artifact.counts,
            "seconds": elapsed,
            "marks_kib": marks,
            "after_create_app_rss_kib": after_create_app,
            "baseline_rss_kib": baseline_rss,
            "baseline_peak_kib": baseline_peak,
            "peak_kib": _peak_kib(),
            "hwm_kib": _hwm_kib(),
            "end_rss_kib": _rss_now_kib(),
        }


def enqueue(request_id: int) -> None:
    """Empty this bench's Redis database, then queue the job as the view does."""
    from redis import Redis

    from app import create_app
    from app.extensions import db
    from app.jobs.access import schedule_package

    Redis.from_url(REDIS_URL).flushdb()  # BENCH_REDIS_URL names a database of its own
    app = create_app(_config(REDIS_URL))
    with app.app_context():
        schedule_package(request_id, base_url="http://bench.example/")
        db.session.commit()  # enqueue_after_commit: the job is queued now


def run_worker(request_id: int) -> dict:
    """``flask woffice worker privacy --burst`` in a child; its ``ru_maxrss`` from wait4."""
    subprocess.run(
        [sys.executable, "-m", "bench.bench_access_package", "--enqueue", str(request_id)],
        check=True,
        capture_output=True,
    )
    env = dict(
        os.environ,
        WOFFICE_ENV="testing",
        TEST_DATABASE_URL=DATABASE_URI,
        TEST_REDIS_URL=REDIS_URL,
    )
    command = [sys.executable, "-m", "flask", "--app", "run", "woffice", "worker"]
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        worker = subprocess.Popen([*command, "privacy", "--burst"], env=env, stdout=devnull)
        _, status, usage = os.wait4(worker.pid, 0)
        worker.returncode = os.waitstatus_to_exitcode(status)
    if worker.returncode != 0:
        raise RuntimeError(f"the worker exited with {worker.returncode}")
    return {"peak_kib": usage.ru_maxrss, "wall": time.perf_counter() - start}


def worker_result(request_id: int) -> dict:
    """The worker's job (from RQ's registry) and the artifact it stored."""
    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer
    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models.privacy import PrivacyArtifact

    redis = Redis.from_url(REDIS_URL)
    queue = Queue("privacy", connection=redis, serializer=JSONSerializer)
    job_ids = queue.finished_job_registry.get_job_ids()
    failed = queue.failed_job_registry.get_job_ids()
    if failed or len(job_ids) != 1:
        raise RuntimeError(f"worker: finished {job_ids}, failed {failed}")
    job = queue.fetch_job(job_ids[0])
    app = create_app(_config())
    with app.app_context():
        artifact = db.session.scalars(
            select(PrivacyArtifact).where(PrivacyArtifact.request_id == request_id)
        ).one()
        artifact_id, size = artifact.id, artifact.size
        db.session.remove()
        db.engine.dispose()
    return {
        "artifact_id": artifact_id,
        "bytes": size,
        "job_seconds": (job.ended_at - job.started_at).total_seconds(),
        "result": job.return_value(),
    }


def check(artifact_id: int) -> None:
    from app import create_app
    from app.extensions import db
    from app.models.privacy import PrivacyArtifact

    app = create_app(_config())
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
    from bench import _setup

    _setup.drop_database(DATABASE)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _verdict(peak_kib: int) -> str:
    peak_mb = peak_kib * 1024 / 1e6
    return f"{'OK' if peak_mb <= GOAL_MB else 'OVER'} ({peak_mb:.1f} MB vs goal {GOAL_MB} MB)"


def _report_direct(r: dict) -> None:
    marks = r["marks_kib"]
    where = next(name for name, kib in marks.items() if kib == r["peak_kib"])
    print(
        f"direct: {r['rows']['messages']} messages, ZIP {r['bytes'] / 1e6:.1f} MB, "
        f"{r['seconds']:.1f} s ({r['rows']['messages'] / r['seconds']:.0f} messages/s)\n"
        f"  ru_maxrss after: start {_mib(marks['inherited'])} (inherited), imports "
        f"{_mib(marks['imports'])}, create_app {_mib(marks['create_app'])}, build "
        f"{_mib(marks['build'])}\n"
        f"  RSS after create_app {_mib(r['after_create_app_rss_kib'])}, baseline "
        f"{_mib(r['baseline_rss_kib'])}, end {_mib(r['end_rss_kib'])}; build's delta "
        f"{(r['peak_kib'] - r['baseline_peak_kib']) / 1024:+.1f} MiB\n"
        f"  peak {_mib(r['peak_kib'])} (VmHWM {_mib(r['hwm_kib'])}), reached in {where} "
        f"-> {_verdict(r['peak_kib'])}"
    )


def main() -> None:
    mode = os.environ.get("BENCH_MODE", "both")
    start = time.perf_counter()
    if os.environ.get("BENCH_REUSE_REQUEST"):  # measure again on data already there
        ids = {"direct": int(os.environ["BENCH_REUSE_REQUEST"])}
        mode = "direct"  # the job would skip a request whose package exists
    else:
        out = subprocess.run(  # a child: this process must stay small (see the docstring)
            [sys.executable, "-m", "bench.bench_access_package", "--prepare"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
        lines = out.splitlines()
        print("\n".join(lines[:-1]))
        ids = dict(zip(("direct", "worker"), json.loads(lines[-1]), strict=True))
    print(f"data ready in {time.perf_counter() - start:.0f} s (requests {ids})\n")
    direct = worker = None
    try:
        if mode in ("direct", "both"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.bench_access_package", "--measure"]
                + [str(ids["direct"])],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            direct = json.loads(out.strip().splitlines()[-1])
        if mode in ("worker", "both"):
            worker = run_worker(ids["worker"])
        # Only now may this process grow: nothing is started after the checks.
        if direct:
            check(direct["artifact_id"])
        if worker:
            worker.update(worker_result(ids["worker"]))
            check(worker["artifact_id"])
    finally:
        if worker is not None or mode != "direct":
            from redis import Redis

            Redis.from_url(REDIS_URL).flushdb()
        if not os.environ.get("BENCH_KEEP"):
            drop_database()
    if direct:
        _report_direct(direct)
    if worker:
        print(
            f"worker (flask woffice worker privacy --burst): job {worker['job_seconds']:.1f} s, "
            f"ZIP {worker['bytes'] / 1e6:.1f} MB, process wall {worker['wall']:.1f} s\n"
            f"  peak {_mib(worker['peak_kib'])} -> {_verdict(worker['peak_kib'])}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--measure", type=int)
    parser.add_argument("--enqueue", type=int)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare(2)))
    elif args.measure:
        print(json.dumps(measure(args.measure)))
    elif args.enqueue:
        enqueue(args.enqueue)
    else:
        main()
