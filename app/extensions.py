"""Unbound extension objects; `create_app` binds them (flaskr pattern)."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask_appbuilder import AppBuilder
from flask_appbuilder.models.sqla import Model
from flask_mailman import Mail
from flask_security import Security
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FsaSession
from flask_wtf.csrf import CSRFProtect


class AppSession(FsaSession):
    """Flask-SQLAlchemy session that honours an explicit ``bind``.

    Flask-SQLAlchemy always picks the engine; the test suite binds the session to a
    connection that holds an outer transaction (SQLAlchemy's "joining a Session into an
    external transaction" recipe), so an explicit bind must win.
    """

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kw: Any):
        if bind is None and self.bind is not None:
            return self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kw)


class LazyMigrate:
    """Flask-Migrate, imported only when a migration runs.

    Importing ``flask_migrate`` imports Alembic, Mako and Pygments: +8.3 MiB of RSS in
    every web and RQ worker process, none of which migrates (issue 7, access package
    bench). ``init_app`` records what Flask-Migrate's would (``directory`` and ``db``
    under ``app.extensions["migrate"]``, the ``flask db`` command group); the first use
    of anything else (``flask db ...``, ``flask_migrate.upgrade()``, ``migrations/env.py``
    reading ``configure_args``) runs Flask-Migrate's own ``init_app``, which replaces
    both with the real objects.
    """

    def init_app(self, app: Flask, db: SQLAlchemy, directory: str) -> None:
        """Register the lazy extension state and the lazy ``db`` command group."""
        state = _LazyMigrateState(app, db, directory)
        app.extensions["migrate"] = state
        app.cli.add_command(_LazyDbGroup(state))


class _LazyMigrateState:
    """Stands in ``app.extensions["migrate"]`` until Flask-Migrate is needed."""

    def __init__(self, app: Flask, db: SQLAlchemy, directory: str) -> None:
        self.app = app
        self.db = db
        self.directory = str(directory)

    def load(self) -> Any:
        """Flask-Migrate's own extension state (initialised on the first call)."""
        real = self.app.extensions["migrate"]
        if real is self:
            from flask_migrate import Migrate

            Migrate().init_app(self.app, self.db, self.directory)
            real = self.app.extensions["migrate"]
        return real

    def __getattr__(self, name: str) -> Any:  # migrate, configure_args, metadata
        return getattr(self.load(), name)


class _LazyDbGroup(click.Group):
    """``flask db``: parses and runs Flask-Migrate's own group, imported on first use."""

    def __init__(self, state: _LazyMigrateState) -> None:
        super().__init__("db", help="Perform database migrations.")
        self.state = state

    def make_context(self, info_name: str | None, args: list[str], parent=None, **extra: Any):
        self.state.load()
        from flask_migrate.cli import db as db_group

        return db_group.make_context(info_name, args, parent=parent, **extra)


db = SQLAlchemy(model_class=Model, session_options={"class_": AppSession})
migrate = LazyMigrate()
appbuilder = AppBuilder()
security = Security()
mail = Mail()
csrf = CSRFProtect()
