"""Overhead of the audit trail on a tenant edit (issue 3; goal: at most 15% slower).

Baseline: the same edit with automatic audit capture switched off (the after_flush
listener removed) in the same run. Blocks of requests alternate on/off so drift on a
shared machine hits both alike.

Run: ``.venv/bin/python -m bench.bench_audit`` (PostgreSQL on 127.0.0.1; creates and
drops its own database ``woffice_bench``).
"""

from __future__ import annotations

import re

from sqlalchemy import event, select

from app.extensions import db
from app.models import Tenant
from app.services import audit
from bench._setup import bench_app, summary, timed
from tests.conftest import LoginHelper, tenant_form_data

BLOCKS = 6
PER_BLOCK = 50


def main() -> None:
    app = bench_app()
    session_class = db.session.session_factory.class_
    client = app.test_client()
    LoginHelper(client)("admin@xigmapro.example")
    with app.app_context():
        tenant = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
        fields = tenant_form_data(tenant)
        url = f"/tenants/edit/{tenant.id}"
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page).group(1)
    counter = iter(range(10**9))

    def edit() -> None:
        data = {**fields, "city": f"Mumbai {next(counter)}", "csrf_token": token}
        response = client.post(url, data=data)
        assert response.status_code == 302, response.status_code

    timed(edit, 30)  # warm up
    on: list[float] = []
    off: list[float] = []
    for _ in range(BLOCKS):
        on += timed(edit, PER_BLOCK)
        event.remove(session_class, "after_flush", audit._capture)
        off += timed(edit, PER_BLOCK)
        event.listen(session_class, "after_flush", audit._capture)
    base = summary("POST /tenants/edit, audit capture OFF (baseline)", off)
    with_audit = summary("POST /tenants/edit, audit capture ON", on)
    print(f"requests/s  off {1000 / base:6.1f}   on {1000 / with_audit:6.1f}")
    print(f"ratio on/off: {with_audit / base:.3f}x  ({(with_audit / base - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
