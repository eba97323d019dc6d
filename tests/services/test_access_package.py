"""Access packages and portability exports (issue 7, P20): what they hold, and nothing more."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs.access import build_package, schedule_package
from app.models.audit import AuditEvent
from app.models.login_event import LoginEvent
from app.models.mixins import utcnow
from app.models.privacy import (
    ArtifactKind,
    PrivacyArtifact,
    PrivacyRequest,
    RequestType,
    SubjectKind,
)
from app.services import access_package
from app.services.access_sections import SECRET_COLUMNS
from tests.services.access_world import build_world, open_access_request, rows, unzip

CONTACT_SECTIONS = (
    "contact",
    "tags",
    "consent_log",
    "conversations",
    "messages",
    "campaign_messages",
    "privacy_requests",
)


@pytest.fixture
def world(tenant_a, tenant_b):
    return build_world(tenant_a, tenant_b)


def test_contact_package_holds_every_section_of_that_contact_only(world):
    request = open_access_request(world.subject, SubjectKind.contact)
    artifact = access_package.build(request)

    files = unzip(artifact)
    names = list(files)
    assert names[0] == "README.txt" and names[-1] == "manifest.json"
    for section in CONTACT_SECTIONS:
        assert f"{section}.json" in files and f"{section}.csv" in files, section
        assert section in files["README.txt"].decode()
    [record] = rows(files, "contact")
    assert record["id"] == world.subject.id and record["phone"] == "+919811100001"
    assert rows(files, "tags") == [{"tag": "access-vip"}]
    consent = rows(files, "consent_log")
    assert [c["action"] for c in consent] == ["opt_in", "objection"]
    assert consent[0]["evidence"] == "form for Subject Person"
    assert len(rows(files, "conversations")) == 1
    messages = rows(files, "messages")
    assert [m["body"] for m in messages] == [f"Subject Person says hello #{i}" for i in range(5)]
    [recipient] = rows(files, "campaign_messages")
    assert recipient["campaign_name"] == "Access test campaign"
    assert recipient["parameters"] == {"1": "Subject Person"}
    assert [r["id"] for r in rows(files, "privacy_requests")] == [request.id]
    # CSV and JSON hold the same rows; the manifest counts them.
    reader = list(csv.DictReader(io.StringIO(files["messages.csv"].decode())))
    assert [r["body"] for r in reader] == [m["body"] for m in messages]
    assert '"messages.json": 5' in files["manifest.json"].decode()
    assert artifact.counts["messages"] == 5
    # Nobody else's data: not the neighbour in the same tenant, not the other tenant.
    everything = b"".join(files.values()).decode()
    for other in (world.neighbour, world.stranger):
        assert other.display_name not in everything
        assert other.phone not in everything
    assert artifact.kind == ArtifactKind.access_package
    assert artifact.filename.endswith(".zip") and artifact.content_type == "application/zip"
    assert artifact.size == len(bytes(db.session.get(PrivacyArtifact, artifact.id).content))


def test_user_package_has_account_logins_memberships_and_no_secrets(user_by_email):
    user = user_by_email("owner@acme.example")
    user.tf_totp_secret = "TOTPSECRETVALUE123456"
    user.tf_primary_method = "authenticator"
    user.mf_recovery_codes = ["recovery-code-aaaa-1111", "recovery-code-bbbb-2222"]
    user.us_totp_secrets = '{"1": "USTOTPSECRETVALUE"}'
    for outcome in ("ok", "bad_password"):
        db.session.add(
            LoginEvent(
                user_id=user.id,
                identity_hash="0" * 64,
                ip="203.0.113.7",
                user_agent="Firefox/1",
                success=outcome == "ok",
                outcome=outcome,
            )
        )
    db.session.flush()
    request = open_access_request(user, SubjectKind.user, created_by=user, email=user.email)

    files = unzip(access_package.build(request))

    [account] = rows(files, "account")
    assert account["email"] == "owner@acme.example" and account["first_name"] == "Rohan"
    assert account["tf_primary_method"] == "authenticator"
    assert not SECRET_COLUMNS.intersection(account)
    assert [m["role"] for m in rows(files, "memberships")] == ["Tenant Admin"]
    logins = rows(files, "logins")
    assert [e["outcome"] for e in logins][-2:] == ["ok", "bad_password"]
    assert all(e["user_id"] == user.id for e in logins) and "identity_hash" not in logins[0]
    # This request and any the user filed before (the demo has one by this owner).
    mine = select(PrivacyRequest.id).where(
        (PrivacyRequest.subject_user_id == user.id) | (PrivacyRequest.created_by_id == user.id)
    )
    expected = sorted(db.session.scalars(mine))
    assert request.id in expected
    assert sorted(r["id"] for r in rows(files, "privacy_requests")) == expected
    everything = b"".join(files.values()).decode()
    for secret in (
        user.password,
        user.fs_uniquifier,
        "TOTPSECRETVALUE123456",
        "USTOTPSECRETVALUE",
        "recovery-code-aaaa-1111",
        "0" * 64,
    ):
        assert secret and secret not in everything


def test_tenant_package_holds_the_tenant_without_secrets_or_other_tenants(
    world, tenant_a, user_by_email
):
    tenant_a.wa_access_token = "EAAG-secret-access-token"
    db.session.flush()
    request = open_access_request(tenant_a, SubjectKind.tenant)

    files = unzip(access_package.build(request))

    [tenant] = rows(files, "tenant")
    assert tenant["slug"] == "acme" and "wa_access_token" not in tenant
    emails = {u["email"] for u in rows(files, "users")}
    assert {"owner@acme.example", "agent@acme.example"} <= emails
    assert not any("bharatfoods" in e or "xigmapro" in e for e in emails)
    contact_ids = {c["id"] for c in rows(files, "contacts")}
    assert {world.subject.id, world.neighbour.id} <= contact_ids
    assert world.stranger.id not in contact_ids
    bodies = {m["body"] for m in rows(files, "messages")}
    assert "Neighbour Person says hello #2" in bodies
    assert not any(b and b.startswith("Stranger") for b in bodies)
    assert len(rows(files, "campaign_recipients")) == 2
    for section in ("message_templates", "campaigns", "contact_imports", "invoices", "payments"):
        assert f"{section}.csv" in files
    everything = b"".join(files.values()).decode()
    assert "EAAG-secret-access-token" not in everything
    assert user_by_email("owner@acme.example").password not in everything


def test_portability_export_is_the_crm_contact_export(world, tenant_a, client, login):
    request = open_access_request(
        tenant_a, SubjectKind.tenant, rtype=RequestType.portability, email="owner@acme.example"
    )
    artifact = access_package.build_portability(request)
    db.session.commit()
    files = unzip(artifact)

    login("owner@acme.example")
    for fmt in ("csv", "json"):
        response = client.get(f"/contacts/export.{fmt}")
        assert response.status_code == 200
        assert files[f"contacts.{fmt}"] == response.data, fmt
    assert artifact.kind == ArtifactKind.portability_export
    assert "Subject Person" in files["contacts.csv"].decode()
    assert "Stranger Person" not in files["contacts.csv"].decode()


def test_expiry_defaults_to_seven_days_and_follows_the_setting(app, world, monkeypatch):
    request = open_access_request(world.subject, SubjectKind.contact)
    now = utcnow()
    artifact = access_package.build(request, now=now)
    assert artifact.expires_at == now + timedelta(days=7)
    monkeypatch.setitem(app.config, "PRIVACY_DOWNLOAD_DAYS", 2)
    assert access_package.expiry(now) == now + timedelta(days=2)
    assert access_package.current_artifact(request, ArtifactKind.access_package) == artifact
    assert (
        access_package.current_artifact(
            request, ArtifactKind.access_package, now=now + timedelta(days=8)
        )
        is None
    )


def test_job_builds_once_audits_counts_only_and_emails_the_link(world, run_jobs, mailbox):
    request = open_access_request(world.subject, SubjectKind.contact, email="subject@mail.example")
    schedule_package(request.id)
    db.session.commit()
    run_jobs("privacy", "mail")
    build_package(request.id, tenant_id=request.tenant_id)  # a second run: nothing new
    run_jobs("privacy", "mail")

    artifacts = db.session.scalars(
        select(PrivacyArtifact).where(PrivacyArtifact.request_id == request.id)
    ).all()
    assert len(artifacts) == 1
    [message] = mailbox.to("subject@mail.example")
    assert request.reference in str(message["Subject"])
    link = mailbox.link_in(message, r"http://localhost/privacy/download/\S+")
    assert re.fullmatch(r"http://localhost/privacy/download/[\w.\-]+", link)
    [event] = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "privacy_artifact.created")
    ).all()
    assert "messages:5" in event.details["row_counts"]
    assert event.details["bytes"] == artifacts[0].size
    assert "Subject Person" not in str(event.details) and "subject@mail" not in str(event.details)


def test_job_refuses_a_request_whose_identity_is_unconfirmed(world):
    request = open_access_request(world.subject, SubjectKind.contact)
    request.status = "identity_pending"
    db.session.flush()
    assert build_package(request.id, tenant_id=request.tenant_id) == {"skipped": 1}
    assert access_package.current_artifact(request, ArtifactKind.access_package) is None


def test_an_unidentified_subject_cannot_be_packaged(tenant_a):
    from app.models.privacy import RequestChannel
    from app.services import privacy

    request = privacy.open_request(
        request_type=RequestType.access,
        subject_kind=SubjectKind.contact,
        subject=None,
        tenant=tenant_a,
        channel=RequestChannel.email,
        requester_email="someone@mail.example",
    )
    with pytest.raises(access_package.AccessPackageError):
        access_package.build(request)


def test_zip_is_valid_and_its_order_is_stable(world):
    request = open_access_request(world.subject, SubjectKind.contact)
    first = access_package.build(request)
    second = access_package.build(request, now=first.created_at)
    names = [list(unzip(a)) for a in (first, second)]
    assert names[0] == names[1]
    content = bytes(db.session.get(PrivacyArtifact, first.id).content)
    assert zipfile.ZipFile(io.BytesIO(content)).testzip() is None
