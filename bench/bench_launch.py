"""Launching a 1M-recipient campaign (issue 5) — goal: the launch takes <= 60 s.

What it does:

1. Re-creates its own database ``woffice_bench_launch`` (migrations, roles, demo data).
2. Generates ``BENCH_CONTACTS`` (1,000,000) contacts for Acme with one ``INSERT ...
   SELECT generate_series`` (phones +91 8xxxxxxxxx, unique WhatsApp ids), all tagged
   "launch audience" (a second INSERT ... SELECT into ``contact_tag``). Consent: every
   50th contact opted out, every 50th (offset 25) never opted in (``unknown``), every
   100th (offset 10) objecting to marketing, every 200th (offset 7) without a name
   (the mapping's fallback fills it); the rest opted in. Then ``ANALYZE``.
3. Creates an approved ``welcome`` template (``{{1}}``) and a draft campaign to the tag
   with the mapping ``body.1`` = the contact's name, fallback "friend".
4. Times `app.services.campaigns.launch` (lock, validate, the snapshot INSERT ...
   SELECT of every recipient with its frozen parameters and skip reason, the count by
   reason, the audit event) plus the commit, in the tenant's scope as the view runs it.
5. Prints the time, recipients/s, recipients by status and skip reason (checked against
   the generated shares), and drops the database.

Run: ``.venv/bin/python -m bench.bench_launch``. Knobs: ``BENCH_CONTACTS`` (1000000),
``BENCH_KEEP=1`` keeps the database.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import func, select, text

from app.extensions import db
from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    MessageTemplate,
    TemplateCategory,
    TemplateStatus,
)
from app.models.contact import Contact, Tag
from app.models.tenant import Tenant
from app.services import campaigns
from app.tenancy import tenant_scope
from bench import _setup
from bench._generate import step
from bench._setup import bench_app

DATABASE = "woffice_bench_launch"
CONTACTS = int(os.environ.get("BENCH_CONTACTS", 1_000_000))
GOAL_S = 60.0


def generate(tenant_id: int, tag_id: int) -> None:
    """The contacts (consent spread as in the module docstring) and their tag links."""
    before = db.session.scalar(select(func.coalesce(func.max(Contact.id), 0)))
    step(
        f"{CONTACTS:,} contacts",
        """
        INSERT INTO contact (tenant_id, phone, wa_id, display_name, profile_name,
                             consent_state, marketing_objection, created_at, updated_at)
        SELECT :t, '+918' || lpad(i::text, 9, '0'), '918' || lpad(i::text, 9, '0'),
               CASE WHEN i % 200 = 7 THEN NULL ELSE 'Customer ' || i END, NULL,
               CASE WHEN i % 50 = 0 THEN 'opted_out'
                    WHEN i % 50 = 25 THEN 'unknown' ELSE 'opted_in' END,
               i % 100 = 10, now(), now()
        FROM generate_series(1, :n) AS i
        """,
        t=tenant_id,
        n=CONTACTS,
    )
    step(
        "tag links",
        """
        INSERT INTO contact_tag (contact_id, tag_id)
        SELECT id, :g FROM contact WHERE tenant_id = :t AND id > :b
        """,
        t=tenant_id,
        g=tag_id,
        b=before,
    )
    start = time.perf_counter()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    print(f"  {'ANALYZE':<48} {'':>9}      {time.perf_counter() - start:7.1f} s")


def expected() -> dict[str, int]:
    """What the launch must find, counted like the generator (reason priority first)."""
    counts = {"pending": 0, "opted_out": 0, "objecting": 0, "not_opted_in": 0}
    for i in range(1, CONTACTS + 1):
        if i % 50 == 0:
            counts["opted_out"] += 1
        elif i % 100 == 10:
            counts["objecting"] += 1
        elif i % 50 == 25:
            counts["not_opted_in"] += 1
        else:
            counts["pending"] += 1
    return counts


def prepare() -> tuple[int, int]:
    """(tenant id, draft campaign id) on freshly generated data."""
    acme = db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
    tenant_id = acme.id
    tag = Tag(tenant_id=tenant_id, name="launch audience")
    template = MessageTemplate(
        tenant_id=tenant_id,
        name="welcome_bench",
        language="en_US",
        category=TemplateCategory.marketing,
        status=TemplateStatus.approved,
        components=[{"type": "BODY", "text": "Welcome to our store, {{1}}!"}],
    )
    db.session.add_all([tag, template])
    db.session.flush()
    campaign = Campaign(
        tenant_id=tenant_id,
        name="Launch bench",
        template_id=template.id,
        parameter_mapping={"body.1": {"source": "field", "value": "name", "fallback": "friend"}},
        include_tag_ids=[tag.id],
    )
    db.session.add(campaign)
    db.session.commit()
    campaign_id, tag_id = campaign.id, tag.id
    generate(tenant_id, tag_id)
    return tenant_id, campaign_id


def by_status(campaign_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(CampaignRecipient.status, CampaignRecipient.skip_reason, func.count())
        .where(CampaignRecipient.campaign_id == campaign_id)
        .group_by(CampaignRecipient.status, CampaignRecipient.skip_reason)
    ).all()
    return {(reason.value if reason else status.value): n for status, reason, n in rows}


def drop_database() -> None:
    _setup.drop_database(DATABASE)


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores; others sharing?)")
    app = bench_app(DATABASE)
    try:
        with app.app_context():
            tenant_id, campaign_id = prepare()
            with tenant_scope(tenant_id):
                campaign = db.session.get(Campaign, campaign_id)
                start = time.perf_counter()
                result = campaigns.launch(db.session, campaign)
                launched_s = time.perf_counter() - start
                db.session.commit()
                total_s = time.perf_counter() - start
            statuses = by_status(campaign_id)
            sample = db.session.execute(
                select(CampaignRecipient.wa_id, CampaignRecipient.parameters)
                .where(CampaignRecipient.campaign_id == campaign_id)
                .order_by(CampaignRecipient.id)
                .limit(8)
            ).all()
            db.session.remove()
            db.engine.dispose()
        report(result, statuses, launched_s, total_s, sample)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            drop_database()


def report(result, statuses: dict[str, int], launched_s: float, total_s: float, sample) -> None:
    recipients = sum(statuses.values())
    print(
        f"\nlaunch of {recipients:,} recipients: {launched_s:.1f} s in `launch`, "
        f"{total_s:.1f} s with the commit; {recipients / total_s:,.0f} recipients/s"
    )
    print(f"{'recipients by status':<32} {'count':>9} {'expected':>9}")
    want = expected()
    for key in ("pending", "opted_out", "objecting", "not_opted_in"):
        print(f"  {key:<30} {statuses.get(key, 0):>9,} {want[key]:>9,}")
    print(
        f"launch() reported: will send {result.will_send:,}, skipped "
        f"{ {k.value: v for k, v in result.skipped.items()} }"
    )
    print("first recipients' frozen parameters:", [(w, p) for w, p in sample[:8]])
    ok = statuses == {k: v for k, v in want.items() if v}
    print(
        f"counts as generated: {'yes' if ok else 'NO'}; goal <= {GOAL_S:.0f} s: "
        f"{'met' if total_s <= GOAL_S else 'NOT met'} (ratio {total_s / GOAL_S:.2f}x of the limit)"
    )


if __name__ == "__main__":
    main()
