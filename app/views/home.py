"""The landing page: what each kind of user can do next."""

from __future__ import annotations

from flask import g, redirect, url_for
from flask_appbuilder import IndexView, expose
from sqlalchemy import func, select

from app.extensions import db
from app.models.tenant import Tenant
from app.models.user import AppUser


class HomeView(IndexView):
    index_template = "woffice/index.html"

    @expose("/")
    def index(self):
        user = g.user
        if not user or not user.is_authenticated:
            return redirect(url_for("security.login"))
        stats = {}
        if user.tenant_id is None:
            stats["tenants"] = dict(
                db.session.execute(
                    select(Tenant.status, func.count(Tenant.id)).group_by(Tenant.status)
                ).all()
            )
        stats["team"] = db.session.execute(
            select(func.count(AppUser.id)).where(AppUser.active.is_(True))
        ).scalar()
        return self.render_template(
            self.index_template, appbuilder=self.appbuilder, user=user, stats=stats, title="Home"
        )
