"""`flask woffice ...` commands: roles sync, demo data, worker, key rotation."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.extensions import appbuilder, db

woffice = AppGroup("woffice", help="Woffice back-office commands.")


@woffice.command("sync-roles")
def sync_roles_command() -> None:
    """Create FAB permissions for every view and sync the declared roles (safe to rerun)."""
    from app.services.roles import sync_roles

    report = sync_roles(appbuilder, current_app.config["WOFFICE_ROLES"])
    db.session.commit()
    for role, count in report.items():
        click.echo(f"{role}: {count} permissions")


@woffice.command("seed-demo")
def seed_demo_command() -> None:
    """Load the demo tenants and users (idempotent)."""
    from app.services.demo import seed_demo
    from app.services.roles import sync_roles

    sync_roles(appbuilder, current_app.config["WOFFICE_ROLES"])
    created = seed_demo(db.session)
    db.session.commit()
    click.echo(f"demo data ready ({created} new rows); every demo password is demo-pass-2026")


@woffice.command("audit-verify")
def audit_verify_command() -> None:
    """Walk every audit hash chain; report the first broken link of each (exit 1 if any)."""
    from app.services.audit import verify_chains

    checked, problems = verify_chains(db.session)
    for problem in problems:
        click.echo(f"BROKEN {problem}", err=True)
    if problems:
        click.get_current_context().exit(1)
    click.echo(f"audit trail intact: {checked} events verified")


@woffice.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--fork/--no-fork",
    default=False,
    help="Run each job in a forked child (RQ's default) instead of in this process.",
)
def worker_command(queues: tuple[str, ...], burst: bool, fork: bool) -> None:
    """Run an RQ worker inside this app context (one app per process).

    Jobs run in this process by default (RQ's SimpleWorker): the app, its database
    pool and its caches are built once and reused, as DESIGN asks. Forking a child per
    job cost 200-270 ms per job here (new database connections, cold caches), which
    capped a billing worker near 4 jobs/s. Timeouts still apply (SIGALRM); `--fork`
    restores per-job isolation where a job could leak memory or crash the interpreter.
    """
    from rq import SimpleWorker, Worker
    from rq.serializers import JSONSerializer

    from app.jobs import QUEUES, get_queue, redis_connection

    conn = redis_connection()
    if conn is None:
        raise click.UsageError("REDIS_URL is not set: jobs run inline, no worker is needed.")
    names = queues or QUEUES
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class([get_queue(n) for n in names], connection=conn, serializer=JSONSerializer)
    worker.work(burst=burst, with_scheduler=True)


@woffice.command("sweep-campaigns")
def sweep_campaigns_command() -> None:
    """Run the campaign sweeper once, here (stale claims, scheduled starts, lost jobs)."""
    from app.jobs.campaigns import sweep_campaigns

    click.echo(sweep_campaigns())


@woffice.command("sweep-billing")
def sweep_billing_command() -> None:
    """Run the billing sweeper once, here (lost events and PDFs, grace, reminders)."""
    from app.jobs.billing import sweep_billing

    click.echo(sweep_billing())


@woffice.command("cron")
def cron_command() -> None:
    """Enqueue the periodic and daily jobs (run ONE of these per deployment).

    Every CAMPAIGN_SWEEP_INTERVAL_S: the campaign sweeper; every BILLING_SWEEP_INTERVAL_S:
    the billing sweeper; every 5 minutes: unfinished approved deletions; daily (IST): the
    privacy worklist digest (09:00) and the retention purge (02:00). See app/jobs/schedule.py.
    """
    from app.jobs import redis_connection
    from app.jobs.schedule import run_forever

    redis = redis_connection()
    if redis is None:
        raise click.UsageError(
            "REDIS_URL is not set: run `flask woffice sweep-campaigns` and `sweep-billing`."
        )
    run_forever(redis)


@woffice.command("rotate-keys")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Rows per transaction.",
)
def rotate_keys_command(batch_size: int) -> None:
    """Re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEYS key.

    Commits after each batch; safe to interrupt and run again (values already under the
    newest key are skipped). Exits with status 1 when some value no key can open.
    """
    from app.services.exceptions import EncryptionKeyError
    from app.services.secrets import rotate_secrets, secret_tables

    tables = secret_tables()
    click.echo(
        "encrypted columns: " + ", ".join(f"{t.name}.{c.name}" for t in tables for c in t.columns)
    )
    rotated = current = rows = 0
    unreadable: list[tuple[str, str, object]] = []
    try:
        for batch in rotate_secrets(db.session, batch_size=batch_size, tables=tables):
            db.session.commit()
            rows += batch.rows
            rotated += batch.rotated
            current += batch.current
            unreadable += batch.unreadable
            click.echo(
                f"{batch.table} ids {batch.first_pk}-{batch.last_pk}: {batch.rows} rows, "
                f"{batch.rotated} re-encrypted, {batch.current} already current"
                + (f", {len(batch.unreadable)} unreadable" if batch.unreadable else "")
            )
    except EncryptionKeyError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"done: {rows} rows, {rotated} values re-encrypted, {current} already current, "
        f"{len(unreadable)} unreadable"
    )
    if unreadable:
        for table, column, pk in unreadable:
            click.echo(f"cannot decrypt {table}.{column} of id {pk} with any key", err=True)
        click.echo(
            "Keep the old keys until these are fixed (old key restored or secret re-entered).",
            err=True,
        )
        click.get_current_context().exit(1)


def register_cli(app: Flask) -> None:
    """Attach the command group to the app."""
    app.cli.add_command(woffice)
