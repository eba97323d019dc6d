"""`flask woffice ...` commands: roles sync, demo data, worker."""

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


@woffice.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker_command(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker inside this app context (one app per process)."""
    from rq import Worker
    from rq.serializers import JSONSerializer

    from app.jobs import QUEUES, get_queue, redis_connection

    conn = redis_connection()
    if conn is None:
        raise click.UsageError("REDIS_URL is not set: jobs run inline, no worker is needed.")
    names = queues or QUEUES
    worker = Worker([get_queue(n) for n in names], connection=conn, serializer=JSONSerializer)
    worker.work(burst=burst, with_scheduler=True)


def register_cli(app: Flask) -> None:
    """Attach the command group to the app."""
    app.cli.add_command(woffice)
