"""Unbound extension objects; `create_app` binds them (flaskr pattern)."""

from __future__ import annotations

from typing import Any

from flask_appbuilder import AppBuilder
from flask_appbuilder.models.sqla import Model
from flask_mailman import Mail
from flask_migrate import Migrate
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


db = SQLAlchemy(model_class=Model, session_options={"class_": AppSession})
migrate = Migrate()
appbuilder = AppBuilder()
security = Security()
mail = Mail()
csrf = CSRFProtect()
