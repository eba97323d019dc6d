"""Demo compliance registers (issue 7): the policy in force and the sub-processors.

Policy 1.0 is the shipped policy text (``app/static/privacy-policy.txt``, the seed in
``shared/seeds``), published and in force since its "Last updated" date. The
sub-processors are the ones the policy names (Meta for the Cloud API, Dodo Payments)
and the service providers it lists by kind (hosting and database, email delivery):
their names, locations and DPA dates are demo values for Compliance to replace.
Safe to rerun: existing rows are left alone. The caller commits.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models.privacy import PolicyVersion, SubProcessor

# "Last updated: 1 May 2025", 00:00 IST, stored as naive UTC.
POLICY_1_0_AT = datetime(2025, 4, 30, 18, 30)

DEMO_SUB_PROCESSORS = [
    {
        "name": "Meta Platforms (WhatsApp Cloud API)",
        "purpose": "Routes WhatsApp messages between tenants and their contacts (Cloud API).",
        "data_categories": "WhatsApp phone numbers, profile names, message content and "
        "delivery status",
        "location": "Meta data centres (global)",
        "dpa_date": date(2025, 4, 1),
    },
    {
        "name": "Dodo Payments",
        "purpose": "Subscription payments and refunds (merchant of record).",
        "data_categories": "Billing name, email and address; payment status. No card or UPI "
        "details reach Woffice.",
        "location": "India",
        "dpa_date": date(2025, 4, 10),
    },
    {
        "name": "Hosting and database provider",
        "purpose": "Runs the application servers, PostgreSQL, Redis and backups.",
        "data_categories": "All platform data (accounts, CRM contacts, conversations, "
        "billing records), encrypted in transit and sensitive fields at rest",
        "location": "India (Mumbai region)",
        "dpa_date": date(2025, 3, 20),
    },
    {
        "name": "Transactional email provider",
        "purpose": "Delivers account, invitation, invoice and notice emails.",
        "data_categories": "Recipient name and email address, message content",
        "location": "India",
        "dpa_date": date(2025, 3, 25),
    },
]


def policy_text() -> str:
    """The shipped privacy policy text."""
    return (Path(current_app.static_folder) / "privacy-policy.txt").read_text("utf-8").strip()


def seed_demo_registers() -> int:
    """Create policy 1.0 and the demo sub-processors if missing; returns how many."""
    created = 0
    if db.session.scalar(select(PolicyVersion.id).where(PolicyVersion.version == "1.0")) is None:
        db.session.add(
            PolicyVersion(
                version="1.0",
                summary="The privacy policy of BizSenti Woffice as published on 1 May 2025.",
                full_text=policy_text(),
                material=False,
                published_at=POLICY_1_0_AT,
                effective_at=POLICY_1_0_AT,
            )
        )
        created += 1
    existing = set(db.session.scalars(select(SubProcessor.name)))
    for spec in DEMO_SUB_PROCESSORS:
        if spec["name"] not in existing:
            db.session.add(SubProcessor(**spec))
            created += 1
    db.session.flush()
    return created
