"""Deletion of a tenant, a contact, a user (issue 7; P18, P19).

A doomed tenant gets a bit of everything (contacts, tags, consent log, conversations,
messages, pending statuses, a template, a campaign with recipients, an import, webhooks,
users, login history, another request's export, invoices, a credit note, payments, a
subscription, a payment webhook), then is deleted through the job. The tables checked
are discovered from the metadata, so a table added later is covered automatically.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import deletion as deletion_jobs
from app.models import (
    AppUser,
    AuditEvent,
    Campaign,
    CampaignRecipient,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    Contact,
    ContactImport,
    Conversation,
    Invoice,
    LoginEvent,
    Message,
    MessageDirection,
    MessageStatus,
    MessageTemplate,
    Payment,
    PendingStatus,
    PrivacyArtifact,
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
    Role,
    SubjectKind,
    Tag,
    TemplateCategory,
    TemplateStatus,
    Tenant,
    TenantStatus,
    WebhookInbox,
)
from app.models.billing import BillingEvent, DocumentType, Subscription, SubscriptionStatus
from app.models.mixins import utcnow
from app.models.privacy import ArtifactKind
from app.models.tenant_role import TenantRole
from app.services import audit, deletion, deletion_certificate, deletion_steps, invoices, privacy

NAME = "Zanzibar Spice House"
LEGAL = "Zanzibar Spice House Private Limited"
EMAIL = "owner@zanzibar-spice.example"
PHONE = "+919812345678"
GSTIN = "27AAACZ1234K1Z5"
STREET = "42 Peppercorn Lane"
CONTACT_PHONES = [f"+9198700{n:05d}" for n in range(1, 7)]


def _tenant_table_names() -> list[str]:
    return sorted(t.name for t in db.Model.metadata.sorted_tables if "tenant_id" in t.c)


def _counts_by_tenant() -> dict[tuple[str, int], int]:
    counts = {}
    for name in _tenant_table_names():
        table = db.Model.metadata.tables[name]
        rows = db.session.execute(
            select(table.c.tenant_id, func.count())
            .where(table.c.tenant_id.is_not(None))
            .group_by(table.c.tenant_id)
        )
        counts.update({(name, tenant_id): n for tenant_id, n in rows})
    return counts


def _staff(email: str, first: str) -> AppUser:
    existing = db.session.scalar(select(AppUser).where(AppUser.email == email))
    if existing is not None:
        return existing
    role = db.session.scalar(select(Role).where(Role.name == "Compliance"))
    user = AppUser(
        first_name=first,
        last_name="Staff",
        email=email,
        username=email,
        active=True,
        roles=[role] if role else [],
    )
    db.session.add(user)
    db.session.flush()
    return user


def _world() -> dict[str, Any]:
    """A tenant with a bit of everything; returns the ids and values to check."""
    tenant = Tenant(
        name=NAME,
        legal_name=LEGAL,
        slug="zanzibar",
        contact_email=EMAIL,
        contact_phone=PHONE,
        gstin=GSTIN,
        address_line1=STREET,
        city="Pune",
        state_code="27",
        postal_code="411001",
        wa_phone_number_id="1098765",
    )
    db.session.add(tenant)
    db.session.flush()
    t = tenant.id
    admin_role = db.session.scalar(select(Role).where(Role.name == "Tenant Admin"))
    admin_permissions = list(admin_role.permissions[:2])
    owner = AppUser(
        first_name="Zubin",
        last_name="Spicer",
        email=EMAIL,
        username=EMAIL,
        active=True,
        tenant_id=t,
        phone=PHONE,
        roles=[admin_role],
    )
    # The tenant's own role (issue 8): an ab_role row that must go with the tenant.
    packer = TenantRole(tenant_id=t, label="Packer", role=Role(name=f"t{t}/Packer"))
    packer.role.permissions = admin_permissions
    agent = AppUser(
        first_name="Asha",
        last_name="Agentova",
        email="agent@zanzibar-spice.example",
        username="agent@zanzibar-spice.example",
        active=True,
        tenant_id=t,
        roles=[packer.role],
    )
    db.session.add_all([owner, agent, packer])
    db.session.flush()
    # The owner acted: the audit trail points at them (so they are anonymised, not deleted).
    token = audit.set_job_context("test-job", owner.id)
    audit.record("test.owner_acted", tenant_id=t)
    audit.reset_job_context(token)
    db.session.add(
        LoginEvent(
            user_id=agent.id, identity_hash="x" * 64, ip="10.1.2.3", success=True, outcome="ok"
        )
    )
    tags = [Tag(tenant_id=t, name="vip"), Tag(tenant_id=t, name="wholesale")]
    contacts = [
        Contact(
            tenant_id=t,
            phone=p,
            wa_id=p[1:],
            display_name=f"Customer {i}",
            email=f"c{i}@buyer.example",
            tags=tags[: i % 3],
        )
        for i, p in enumerate(CONTACT_PHONES)
    ]
    db.session.add_all(contacts)
    db.session.flush()
    template = MessageTemplate(
        tenant_id=t,
        name="diwali",
        language="en",
        category=TemplateCategory.marketing,
        status=TemplateStatus.approved,
    )
    db.session.add(template)
    db.session.flush()
    campaign = Campaign(tenant_id=t, name="Diwali", template_id=template.id, created_by_id=agent.id)
    db.session.add(campaign)
    db.session.flush()
    for i, contact in enumerate(contacts):
        db.session.add(
            ConsentEvent(
                tenant_id=t,
                contact_id=contact.id,
                action=ConsentAction.opt_in,
                source=ConsentSource.web_form,
                evidence=f"form {contact.phone}",
            )
        )
        conv = Conversation(tenant_id=t, contact_id=contact.id, assignee_id=agent.id)
        db.session.add(conv)
        db.session.flush()
        for k in range(3):
            db.session.add(
                Message(
                    tenant_id=t,
                    conversation_id=conv.id,
                    direction=MessageDirection.inbound,
                    body=f"hello {k} {i}",
                    wa_message_id=f"wamid.z{i}.{k}",
                    status=MessageStatus.received,
                )
            )
        db.session.add(
            CampaignRecipient(
                tenant_id=t,
                campaign_id=campaign.id,
                contact_id=contact.id,
                wa_id=contact.wa_id,
                wa_message_id=f"wamid.zc{i}",
            )
        )
    db.session.add(
        PendingStatus(
            tenant_id=t,
            wa_message_id="wamid.zc0",
            status=MessageStatus.delivered,
            occurred_at=utcnow(),
        )
    )
    db.session.add(
        ContactImport(
            tenant_id=t, filename="list.csv", content=f"phone\n{CONTACT_PHONES[0]}\n".encode()
        )
    )
    db.session.add(
        WebhookInbox(
            source="whatsapp",
            content_hash="z" * 64,
            tenant_id=t,
            payload=json.dumps({"from": CONTACT_PHONES[0]}),
        )
    )
    _billing(tenant)
    other = privacy.open_request(
        request_type=RequestType.access,
        subject_kind=SubjectKind.tenant,
        subject=tenant,
        channel=RequestChannel.email,
        requester_email=EMAIL,
    )
    db.session.add(
        PrivacyArtifact(
            request_id=other.id,
            kind=ArtifactKind.access_package,
            filename="package.zip",
            content_type="application/zip",
            content=b"personal data",
            size=13,
            sha256="0" * 64,
        )
    )
    db.session.flush()
    return {"tenant": tenant, "owner": owner, "agent": agent, "contacts": contacts}


def _billing(tenant: Tenant) -> None:
    t = tenant.id
    db.session.add(
        Subscription(
            tenant_id=t,
            dodo_subscription_id="sub_zanzibar",
            status=SubscriptionStatus.active,
            tax_id=GSTIN,
        )
    )
    for n in (1, 2):
        payment = Payment(
            tenant_id=t,
            dodo_payment_id=f"pay_zanzibar_{n}",
            status="succeeded",
            currency="INR",
            total_amount=1_179_882,
            tax_amount=179_982,
            customer_email=EMAIL,
            paid_at=utcnow() - timedelta(days=n),
            retain_until=invoices.retention_date(utcnow().date()),
        )
        db.session.add(payment)
        db.session.flush()
        invoice = invoices.issue_invoice(payment, tenant, None, billing={"country": "IN"})
    invoices.issue_credit_note(invoice, "ref_zanzibar", None)
    db.session.add(
        BillingEvent(
            webhook_id="wh_zanzibar",
            event_type="payment.succeeded",
            payload={"payment_id": "pay_zanzibar_1"},
            tenant_id=t,
        )
    )


def _approved(subject_kind: SubjectKind, subject: Any, tenant: Tenant | None = None):
    preparer = _staff("prep@xigmapro.example", "Prakash")
    approver = _staff("appr@xigmapro.example", "Anita")
    request = privacy.open_request(
        request_type=RequestType.deletion,
        subject_kind=subject_kind,
        subject=subject,
        channel=RequestChannel.email,
        requester_email="requester@example.org",
        tenant=tenant,
    )
    privacy.start(request, preparer)
    plan = deletion.build_plan(request)
    privacy.submit_for_approval(request, preparer, plan)
    privacy.approve(request, approver)
    db.session.flush()
    return request, plan


def _certificate_text(request_id: int) -> tuple[str, PrivacyArtifact]:
    artifact = db.session.scalars(
        select(PrivacyArtifact).where(
            PrivacyArtifact.request_id == request_id,
            PrivacyArtifact.kind == ArtifactKind.deletion_certificate,
        )
    ).one()
    reader = PdfReader(io.BytesIO(artifact.content))
    return "\n".join(page.extract_text() for page in reader.pages), artifact


def _personal_values(world: dict[str, Any]) -> list[str]:
    values = [
        NAME,
        LEGAL,
        EMAIL,
        PHONE,
        PHONE[1:],
        GSTIN,
        STREET,
        "Zubin",
        "Agentova",
        "agent@zanzibar-spice.example",
    ]
    for c in world["contacts"]:
        values += [c.phone, c.wa_id, c.email]
    return values


def _assert_tenant_gone(tenant_id: int, world_values: list[str], counts_before: dict) -> None:
    db.session.expire_all()
    kept = {"audit_event", "privacy_request", "incident_tenant"}
    for name in _tenant_table_names():
        table = db.Model.metadata.tables[name]
        rows = db.session.scalar(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        )
        if name == "ab_user":  # only anonymised tombstones stay
            users = db.session.scalars(
                select(AppUser)
                .where(AppUser.tenant_id == tenant_id)
                .execution_options(skip_tenant_scope=True)
            ).all()
            for user in users:
                assert user.email == f"deleted-{user.id}@invalid" and not user.active
                assert not user.first_name and not user.last_name and user.phone is None
                assert user.roles == [] and user.password is None
        elif name not in kept:
            assert rows == 0, f"{name} still has {rows} rows of the deleted tenant"
    # The tenant's own roles are gone from FAB's tables too.
    assert db.session.scalars(select(Role).where(Role.name.like(f"t{tenant_id}/%"))).all() == []
    # Billing survives, unlinked, with the buyer frozen and a retention date.
    docs = db.session.scalars(
        select(Invoice).where(Invoice.buyer["legal_name"].as_string() == LEGAL)
    ).all()
    assert {d.doc_type for d in docs} == {DocumentType.invoice, DocumentType.credit_note}
    assert len(docs) == 3 and all(d.tenant_id is None and d.retain_until for d in docs)
    assert all(d.buyer["email"] == EMAIL for d in docs)
    payments = db.session.scalars(
        select(Payment).where(Payment.dodo_payment_id.like("pay_zanzibar_%"))
    ).all()
    assert len(payments) == 2 and all(p.tenant_id is None and p.retain_until for p in payments)
    # The tenant row is a tombstone.
    tenant = db.session.get(Tenant, tenant_id)
    assert tenant.status == TenantStatus.deleted
    assert NAME not in tenant.name and tenant.gstin is None and EMAIL != tenant.contact_email
    assert tenant.wa_phone_number_id is None
    # Other tenants untouched.
    after = _counts_by_tenant()
    for key, n in counts_before.items():
        if key[1] != tenant_id and key[0] != "audit_event":
            assert after.get(key) == n, key
    _assert_no_personal_data_in_audit(world_values)


def _assert_no_personal_data_in_audit(values: list[str]) -> None:
    events = db.session.scalars(select(AuditEvent)).all()
    blob = json.dumps(
        [[e.details, e.changes, e.fields, e.actor_label, e.object_id] for e in events],
        default=str,
    )
    for value in values:
        assert value not in blob, value


def _plan_counts(plan: dict[str, Any]) -> dict[str, int]:
    return {row["table"]: row["rows"] for row in plan["delete"]}


def test_plan_lists_deletions_and_retention_with_gst_dates(app):
    world = _world()
    request, plan = _approved(SubjectKind.tenant, world["tenant"])
    counts = _plan_counts(plan)
    assert counts["message"] == 18 and counts["contact"] == 6 and counts["conversation"] == 6
    assert counts["campaign_recipient"] == 6 and counts["consent_event"] == 6
    assert counts["contact_tag"] == 6 and counts["tag"] == 2 and counts["pending_status"] == 1
    assert counts["privacy_artifact"] == 1 and counts["webhook_inbox"] == 1
    assert counts["ab_user"] == 1  # the agent; the owner is anonymised
    assert [(row["table"], row["rows"]) for row in plan["anonymise"]] == [
        ("ab_user", 1),
        ("tenant", 1),
    ]
    retained = {row["category"]: row for row in plan["retain"]}
    assert retained["Invoices"]["rows"] == 2 and retained["Credit notes"]["rows"] == 1
    assert retained["Payments"]["rows"] == 2
    until = retained["Invoices"]["retain_until"]
    assert until and retained["Invoices"]["basis"].startswith("GST s.36 (CGST Act): retained until")
    assert retained["Audit events"]["rows"] >= 1
    json.dumps(plan)  # stored as JSON
    assert request.deletion_plan == plan


def test_tenant_deletion_removes_every_tenant_row_and_certifies_it(app):
    world = _world()
    tenant_id = world["tenant"].id
    values = _personal_values(world)
    before = _counts_by_tenant()
    request, plan = _approved(SubjectKind.tenant, world["tenant"])
    result = deletion_jobs.run_deletion(request.id, batch_size=4)
    assert result["done"] == 1
    _assert_tenant_gone(tenant_id, values, before)
    request = db.session.get(PrivacyRequest, request.id)
    assert request.status == RequestStatus.completed and request.deletion_progress["done"]
    text, artifact = _certificate_text(request.id)
    assert artifact.sha256 == hashlib.sha256(artifact.content).hexdigest()
    assert request.reference in text and "Anita Staff" in text and "Prakash Staff" in text
    for table, rows in _plan_counts(plan).items():
        category = deletion_steps.CATEGORIES[table]
        assert f"{category} ({table}): {rows} deleted" in text, (table, rows)
    assert "1 anonymised" in text
    assert "GST s.36 (CGST Act): retained until" in text
    # The other request's export is gone; the certificate stays.
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(PrivacyArtifact)
            .where(
                PrivacyArtifact.kind == ArtifactKind.access_package,
                PrivacyArtifact.filename == "package.zip",
            )
        )
        == 0
    )
    # Running it again changes nothing.
    assert deletion_jobs.run_deletion(request.id)["skipped"] == 1


def test_a_crashed_deletion_resumes_to_the_same_end_state(app, monkeypatch):
    world = _world()
    tenant_id = world["tenant"].id
    values = _personal_values(world)
    before = _counts_by_tenant()
    request, plan = _approved(SubjectKind.tenant, world["tenant"])
    first = deletion_jobs.run_deletion(request.id, batch_size=2, stop_after=5)
    assert first == {"done": 0, "batches": 5}
    db.session.expire_all()
    assert (
        db.session.scalar(
            select(func.count()).select_from(Message).where(Message.tenant_id == tenant_id)
        )
        == 18 - 10
    )
    # A crash in the middle of a later batch: that batch rolls back, nothing else.
    real = deletion._run_batch
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 12:
            raise RuntimeError("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(deletion, "_run_batch", crashing)
    with pytest.raises(RuntimeError):
        deletion_jobs.run_deletion(request.id, batch_size=2)
    monkeypatch.setattr(deletion, "_run_batch", real)
    progress = db.session.get(PrivacyRequest, request.id).deletion_progress
    assert not progress.get("done")
    deletion_jobs.run_deletion(request.id, batch_size=2)
    _assert_tenant_gone(tenant_id, values, before)
    text, _artifact = _certificate_text(request.id)
    for table, rows in _plan_counts(plan).items():
        assert f"({table}): {rows} deleted" in text, (table, rows)


def test_contact_deletion_removes_its_conversations_messages_and_consent(app):
    world = _world()
    victim, neighbour = world["contacts"][1], world["contacts"][2]
    t, victim_id, neighbour_id = world["tenant"].id, victim.id, neighbour.id
    request, plan = _approved(SubjectKind.contact, victim)
    assert _plan_counts(plan)["message"] == 3
    deletion_jobs.run_deletion(request.id)
    db.session.expire_all()
    for model, column in (
        (Contact, Contact.id),
        (Conversation, Conversation.contact_id),
        (ConsentEvent, ConsentEvent.contact_id),
        (CampaignRecipient, CampaignRecipient.contact_id),
    ):
        assert (
            db.session.scalar(select(func.count()).select_from(model).where(column == victim_id))
            == 0
        ), model
    assert (
        db.session.scalar(select(func.count()).select_from(Message).where(Message.tenant_id == t))
        == 15
    )
    assert db.session.get(Contact, neighbour_id) is not None
    assert db.session.get(Tenant, t).status != TenantStatus.deleted
    text, _artifact = _certificate_text(request.id)
    assert "Messages (message): 3 deleted" in text and "Contacts (contact): 1 deleted" in text
    assert db.session.get(PrivacyRequest, request.id).status == RequestStatus.completed


def test_user_deletion_deletes_or_anonymises_the_account(app):
    world = _world()
    quiet = AppUser(
        first_name="Quiet",
        last_name="User",
        email="quiet@zanzibar-spice.example",
        username="quiet@zanzibar-spice.example",
        active=True,
        tenant_id=world["tenant"].id,
    )
    db.session.add(quiet)
    db.session.flush()
    quiet_id, owner_id = quiet.id, world["owner"].id
    for subject_id in (quiet_id, owner_id):
        request, _plan = _approved(SubjectKind.user, db.session.get(AppUser, subject_id))
        deletion_jobs.run_deletion(request.id)
    db.session.expire_all()
    assert db.session.get(AppUser, quiet_id) is None
    owner = db.session.get(AppUser, owner_id)
    assert owner.email == f"deleted-{owner_id}@invalid" and not owner.active
    assert owner.roles == [] and owner.first_name == "" and owner.phone is None
    assert db.session.get(Tenant, world["tenant"].id).status != TenantStatus.deleted


def test_a_deletion_without_approval_does_not_run(app):
    world = _world()
    request = privacy.open_request(
        request_type=RequestType.deletion,
        subject_kind=SubjectKind.tenant,
        subject=world["tenant"],
        channel=RequestChannel.email,
        requester_email=EMAIL,
    )
    with pytest.raises(deletion.DeletionError):
        deletion.run(request.id)


def test_the_sweeper_resumes_a_stalled_deletion(app, run_jobs):
    world = _world()
    request, _plan = _approved(SubjectKind.tenant, world["tenant"])
    request.approved_at = utcnow() - timedelta(hours=1)
    db.session.flush()
    assert deletion_jobs.resume_deletions()["resumed"] == 1
    run_jobs("privacy")
    db.session.expire_all()
    assert db.session.get(PrivacyRequest, request.id).status == RequestStatus.completed


def test_schedule_deletion_enqueues_after_the_approval_commits(app, run_jobs):
    world = _world()
    request, _plan = _approved(SubjectKind.contact, world["contacts"][0])
    deletion_jobs.schedule_deletion(request.id)
    assert run_jobs("privacy") == 0  # nothing before the commit
    db.session.commit()
    assert run_jobs("privacy") == 1
    db.session.expire_all()
    assert db.session.get(PrivacyRequest, request.id).status == RequestStatus.completed


def test_every_tenant_table_is_deleted_or_kept_for_a_reason(app):
    world = _world()
    request, _plan = _approved(SubjectKind.tenant, world["tenant"])
    planned = {step.name for step in deletion_steps.steps_for(request)}
    for name in _tenant_table_names():
        assert name in planned or name in deletion_steps.RETAINED, name


def test_the_certificate_renders_the_same_bytes_every_time(app):
    facts = {
        "reference": "PR-000001",
        "subject_label": "Tenant #1 (acme)",
        "received_at": utcnow(),
        "approved_at": utcnow(),
        "completed_at": utcnow(),
        "approver": "A (#1)",
        "preparer": "B (#2)",
        "counts": [{"table": "message", "category": "Messages", "deleted": 3}],
        "retained": [],
    }
    assert deletion_certificate.render(facts) == deletion_certificate.render(facts)
