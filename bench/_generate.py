"""Bulk data for benchmarks, written with ``INSERT ... SELECT generate_series`` (no ORM)."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.extensions import db


def step(label: str, sql: str, **params) -> None:
    """Run one statement, commit, and print its row count and duration."""
    start = time.perf_counter()
    result = db.session.execute(text(sql), params)
    db.session.commit()
    print(f"  {label:<48} {result.rowcount:>9} rows {time.perf_counter() - start:7.1f} s")


def generate_contacts(tenant_id: int, contacts: int, offset: int) -> None:
    """``contacts`` contacts of ``tenant_id``: phones +91 9<offset + i>, unique WhatsApp ids."""
    step(
        f"contacts of tenant {tenant_id}",
        """
        INSERT INTO contact (tenant_id, phone, wa_id, display_name, profile_name,
                             consent_state, marketing_objection, created_at, updated_at)
        SELECT :t, '+919' || lpad((:o + i)::text, 9, '0'), '919' || lpad((:o + i)::text, 9, '0'),
               'Customer ' || substr(md5(i::text), 1, 10), 'P' || i,
               (ARRAY['unknown', 'opted_in', 'opted_out'])[1 + i % 3], false,
               now() - make_interval(secs => i), now()
        FROM generate_series(1, :n) AS i
        """,
        t=tenant_id,
        o=offset,
        n=contacts,
    )
