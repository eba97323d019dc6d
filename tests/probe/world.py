"""The data side of the URL-map probe: each tenant's rows, ids, markers and digest.

Everything is derived from the database's own catalogue (reflected after the
migrations ran), not from a hand list of models, so a table added later is probed,
searched for leaked values and watched for changes without editing this file:

* a **tenant table** is any table with a ``tenant_id`` column, plus ``tenant`` itself
  (its ``id`` is the tenant) and ``ab_role`` (a custom role's row, owned through
  ``tenant_role.role_id``);
* a **child table** hangs off a tenant table by a foreign key and has no ``tenant_id``
  of its own (``ab_api_key`` through its user, ``privacy_artifact`` through its
  request, a role's permission links...): its rows belong to the parent's tenant.

`ensure_rows` gives a tenant the rows the demo lacks (campaigns and recipients, a
custom role and its member, an API key, a privacy download), so every main resource
has something to ask for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from flask_security import hash_password
from sqlalchemy import MetaData, String, Table, Text, select, text
from sqlalchemy.orm import Session

from app.models import AppUser, Tenant
from app.models.billing import BillingEvent
from app.models.campaign import Campaign, CampaignStatus
from app.models.contact import Contact, Tag
from app.models.mixins import utcnow
from app.models.privacy import ArtifactKind, PrivacyArtifact, PrivacyRequest
from app.services import api_keys, campaigns, tenant_roles
from app.services.demo import DEMO_PASSWORD
from tests.jobs.campaign_world import add_contacts, welcome_template

# Main resources every tenant must have at least one row of (the brief's list): the
# probe would prove nothing about a route whose table is empty for the other tenant.
MAIN_TABLES = (
    "contact",
    "conversation",
    "message",
    "campaign",
    "campaign_recipient",
    "message_template",
    "contact_import",
    "invoice",
    "payment",
    "privacy_request",
    "privacy_artifact",
    "ab_api_key",
    "tenant_role",
    "ab_user",
    "tag",
)
# Foreign keys that record who did something, not whose row it is: a platform plan
# created by a tenant user (none today) is still not that tenant's row.
AUTHOR_COLUMNS = frozenset({"created_by_fk", "changed_by_fk", "actor_id", "created_by_id"})
# Columns whose values identify a tenant's people and things on a page (names, phones,
# emails, WhatsApp ids, template/campaign names, invoice numbers, role labels, API key
# prefixes, file names): found in a response to another tenant, they are a leak.
MARKER_COLUMNS = frozenset(
    {
        "name",
        "display_name",
        "profile_name",
        "legal_name",
        "customer_business_name",
        "email",
        "contact_email",
        "customer_email",
        "phone",
        "contact_phone",
        "wa_id",
        "wa_display_number",
        "gstin",
        "buyer_gstin",
        "number",
        "label",
        "key_prefix",
        "filename",
        "reference",
        "subject_label",
        "dodo_payment_id",
        "dodo_subscription_id",
    }
)
MIN_MARKER = 6  # shorter values ("Anil", "IN") match unrelated text


@dataclass
class Catalogue:
    """Which tables belong to tenants, and how."""

    tables: dict[str, Table]
    owned: list[str] = field(default_factory=list)  # tenant_id column (or tenant/ab_role)
    children: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    @classmethod
    def reflect(cls, session: Session) -> Catalogue:
        meta = MetaData()
        meta.reflect(bind=session.connection())
        cat = cls(tables=dict(meta.tables))
        cat.owned = sorted(
            name for name, t in meta.tables.items() if "tenant_id" in t.c or name == "tenant"
        ) + ["ab_role"]
        for name, table in sorted(meta.tables.items()):
            if name in cat.owned:
                continue
            for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
                parent = fk.column.table.name
                if parent in cat.owned and fk.parent.name not in AUTHOR_COLUMNS:
                    # (parent table, this table's column, the parent's column)
                    cat.children[name] = (parent, fk.parent.name, fk.column.name)
                    break
        return cat

    def where(self, name: str) -> str:
        """SQL condition selecting the rows of table ``name`` owned by :tid."""
        if name == "tenant":
            return "id = :tid"
        if name == "ab_role":
            return "id IN (SELECT role_id FROM tenant_role WHERE tenant_id = :tid)"
        if name in self.children:
            parent, column, parent_column = self.children[name]
            inner = f"SELECT {parent_column} FROM {parent} WHERE {self.where(parent)}"
            return f"{column} IN ({inner})"
        return "tenant_id = :tid"

    def pk_column(self, name: str) -> str | None:
        """The single primary-key column of a table (None: composite or none)."""
        pk = list(self.tables[name].primary_key.columns)
        return pk[0].name if len(pk) == 1 else None


def owned_ids(session: Session, cat: Catalogue, tenant_id: int) -> dict[str, list[int]]:
    """Every row id of the tenant, per table (tables with a single-column key only)."""
    found: dict[str, list[int]] = {}
    for name in [*cat.owned, *cat.children]:
        pk = cat.pk_column(name)
        if pk is None:
            continue
        sql = f"SELECT {pk} FROM {name} WHERE {cat.where(name)} ORDER BY 1"
        ids = [row[0] for row in session.execute(text(sql), {"tid": tenant_id})]
        if ids and all(isinstance(i, int) for i in ids):
            found[name] = ids
    return found


def platform_ids(session: Session, cat: Catalogue, limit: int) -> dict[str, list[int]]:
    """The first ``limit`` ids of each table no tenant owns (plans, permissions...).

    No tenant has rows there, so there is no "other tenant's id" to try; what matters is
    that a tenant user is refused platform rows, which ``has_access`` decides before the
    id is read, so a few ids per table suffice (all would be thousands of requests).
    """
    found: dict[str, list[int]] = {}
    for name in sorted(set(cat.tables) - set(cat.owned) - set(cat.children)):
        pk = cat.pk_column(name)
        if pk is not None:
            sql = f"SELECT {pk} FROM {name} ORDER BY 1 LIMIT {int(limit)}"
            ids = [row[0] for row in session.execute(text(sql))]
            if ids and all(isinstance(i, int) for i in ids):
                found[name] = ids
    return found


def digest(session: Session, cat: Catalogue, tenant_id: int) -> dict[str, str]:
    """A hash of every row the tenant owns, per table, in one query."""
    parts = [
        f"SELECT '{name}' AS t, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
        f" FROM {name} x WHERE {cat.where(name)}"
        for name in [*cat.owned, *cat.children]
    ]
    rows = session.execute(text(" UNION ALL ".join(parts)), {"tid": tenant_id})
    return dict(rows.all())


def string_values(session: Session, cat: Catalogue, tenant_id: int) -> set[str]:
    """The tenant's values of the identifying columns (plus users' full names)."""
    values: set[str] = set()
    for name in [*cat.owned, *cat.children]:
        table = cat.tables[name]
        cols = [
            c.name
            for c in table.c
            if c.name in MARKER_COLUMNS and isinstance(c.type, String | Text)
        ]
        if name == "ab_user":
            cols += ["first_name || ' ' || last_name"]
        if not cols:
            continue
        sql = f"SELECT {', '.join(cols)} FROM {name} WHERE {cat.where(name)}"
        for row in session.execute(text(sql), {"tid": tenant_id}):
            values.update(v.strip() for v in row if isinstance(v, str))
    return values


def markers(session: Session, cat: Catalogue, tenant_id: int, prober_id: int) -> list[str]:
    """Values identifying ``tenant_id`` that the prober's tenant does not share."""
    own = string_values(session, cat, prober_id)
    theirs = string_values(session, cat, tenant_id)
    return sorted(v for v in theirs - own if len(v) >= MIN_MARKER)


# ------------------------------------------------------------------------ the rows


def ensure_rows(session: Session, tenant: Tenant, owner: AppUser) -> AppUser:
    """Give ``tenant`` a row in every main table; returns its custom-role member.

    Everything is named after the tenant's slug, so each value is unique to it and
    shows up in the markers.
    """
    slug, tid = tenant.slug, tenant.id
    tag_id, _ = add_contacts(session, tid, f"9177{tid:02d}", 2)
    template = welcome_template(session, tid)
    mapping = {"body.1": {"source": "field", "value": "name", "fallback": "friend"}}
    for label, launch in (("draft", False), ("launched", True)):
        campaign = Campaign(
            tenant_id=tid,
            name=f"Probe {label} campaign {slug}",
            template_id=template.id,
            parameter_mapping=mapping,
            include_tag_ids=[tag_id],
        )
        session.add(campaign)
        session.flush()
        if launch:
            campaigns.launch(session, campaign)
            assert campaign.status != CampaignStatus.draft
    role = tenant_roles.create_role(
        session,
        owner,
        tid,
        label=f"Probe Packers {slug}",
        cells=set(tenant_roles.available_cells(session)),
        description=f"Every cell of the matrix, for the {slug} probe",
    )
    member = AppUser(
        email=f"custom-role@{slug}.example",
        username=f"custom-role@{slug}.example",
        first_name="Custom",
        last_name=f"Member {slug}",
        active=True,
        password=hash_password(DEMO_PASSWORD),
        confirmed_at=utcnow(),
        age_confirmed_at=utcnow(),
        tenant_id=tid,
    )
    member.roles = [role.role]
    session.add(member)
    api_keys.create_key(session, owner, name=f"Probe sync key {slug}", scope="read-write")
    request = session.scalars(
        select(PrivacyRequest).where(PrivacyRequest.tenant_id == tid).order_by(PrivacyRequest.id)
    ).first()
    assert request is not None, f"the demo has no privacy request for {slug}"
    content = f"probe access package of {slug}".encode()
    session.add(
        PrivacyArtifact(
            request_id=request.id,
            kind=ArtifactKind.access_package,
            filename=f"probe-access-{slug}.zip",
            content_type="application/zip",
            content=content,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )
    )
    # A Dodo webhook delivery of the tenant (the platform's billing inbox), processed.
    session.add(
        BillingEvent(
            webhook_id=f"msg_probe_{slug}",
            event_type="payment.succeeded",
            payload={"type": "payment.succeeded", "data": {"probe": slug}},
            tenant_id=tid,
            processed_at=utcnow(),
        )
    )
    # A tag and contact with a name only this tenant has, for the list/search pages.
    session.add(Tag(tenant_id=tid, name=f"Probe tag {slug}"))
    session.add(
        Contact(
            tenant_id=tid,
            wa_id=f"9188{tid:02d}0001",
            phone=f"+9188{tid:02d}0001",
            display_name=f"Probe Contact {slug}",
        )
    )
    session.flush()
    return member
