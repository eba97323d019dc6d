"""Downloads of access packages (issue 7, P20): who may, expiry, audit, no caching."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.mixins import utcnow
from app.models.privacy import PrivacyArtifact, SubjectKind
from app.services import access_package
from tests.services.access_world import build_world, open_access_request


@pytest.fixture
def package(tenant_a, tenant_b, user_by_email):
    """An access package for a contact, requested in-app by Acme's tenant admin."""
    world = build_world(tenant_a, tenant_b)
    owner = user_by_email("owner@acme.example")
    request = open_access_request(
        world.subject, SubjectKind.contact, created_by=owner, email="subject@mail.example"
    )
    artifact = access_package.build(request)
    db.session.commit()
    return request, artifact


def _get(client, url):
    """GET with the body read inside the request (the test client otherwise streams it
    later, in whatever context the test is in)."""
    return client.get(url, buffered=True)


def _token_url(request, artifact) -> str:
    return f"/privacy/download/{access_package.download_token(artifact, request)}"


def _content(artifact) -> bytes:
    return bytes(db.session.get(PrivacyArtifact, artifact.id).content)


def _downloads(artifact) -> list[AuditEvent]:
    return db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "privacy_artifact.downloaded",
            AuditEvent.object_id == str(artifact.id),
        )
    ).all()


def _assert_file(response, artifact) -> None:
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{artifact.filename}"'
    assert "no-store" in response.headers["Cache-Control"]
    assert response.data == _content(artifact)


def test_requester_downloads_with_the_emailed_link_and_it_is_audited(client, package):
    request, artifact = package
    response = _get(client, _token_url(request, artifact))

    _assert_file(response, artifact)
    [event] = _downloads(artifact)
    assert event.details["via"] == "emailed link" and event.actor_label == "anonymous"
    assert event.tenant_id == request.tenant_id
    assert db.session.get(PrivacyArtifact, artifact.id).downloads == 1
    _get(client, _token_url(request, artifact))
    assert db.session.get(PrivacyArtifact, artifact.id).downloads == 2


def test_a_forged_or_stale_token_is_404(client, package):
    request, artifact = package
    url = _token_url(request, artifact)
    assert _get(client, url[:-2] + "xx").status_code == 404
    request.requester_email = "someone.else@mail.example"  # the link was for the old one
    db.session.commit()
    assert _get(client, url).status_code == 404
    assert not _downloads(artifact)


def test_the_link_expires(client, package, login):
    request, artifact = package
    artifact.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    response = _get(client, _token_url(request, artifact))
    assert response.status_code == 410
    assert "This download link has expired" in response.get_data(as_text=True)
    login("owner@acme.example")
    assert _get(client, f"/privacy/downloads/{artifact.id}").status_code == 410
    assert not _downloads(artifact)
    assert db.session.get(PrivacyArtifact, artifact.id).downloads == 0


def test_a_purged_artifact_link_says_expired(client, package):
    request, artifact = package
    url = _token_url(request, artifact)
    db.session.delete(db.session.get(PrivacyArtifact, artifact.id))
    db.session.commit()
    assert _get(client, url).status_code == 410


def test_the_requesting_admin_downloads_from_the_account_page(client, package, login):
    request, artifact = package
    login("owner@acme.example")
    page = client.get("/account/").get_data(as_text=True)
    assert 'id="privacy-downloads"' in page and f"/privacy/downloads/{artifact.id}" in page

    response = _get(client, f"/privacy/downloads/{artifact.id}")
    _assert_file(response, artifact)
    [event] = _downloads(artifact)
    assert event.details["via"] == "account" and event.actor_label.startswith("Tenant Admin")


def test_compliance_downloads_from_the_request(client, package, login, user_by_email):
    _request, artifact = package
    login("compliance@xigmapro.example")
    response = _get(client, f"/privacy/downloads/{artifact.id}")
    _assert_file(response, artifact)
    [event] = _downloads(artifact)
    assert event.details["via"] == "compliance"
    assert event.actor_id == user_by_email("compliance@xigmapro.example").id


@pytest.mark.parametrize(
    "email",
    ["agent@acme.example", "owner@bharatfoods.example", "billing@xigmapro.example"],
)
def test_anyone_else_gets_404(client, package, login, email):
    _request, artifact = package
    login(email)
    assert _get(client, f"/privacy/downloads/{artifact.id}").status_code == 404
    assert _get(client, f"/privacy/downloads/{artifact.id + 1000}").status_code == 404
    assert 'id="privacy-downloads"' not in client.get("/account/").get_data(as_text=True)
    assert not _downloads(artifact)


def test_signed_out_visitors_are_sent_to_sign_in(client, package):
    _request, artifact = package
    response = _get(client, f"/privacy/downloads/{artifact.id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_download_url_helper(app, package):
    from app.views.privacy_downloads import download_url

    _request, artifact = package
    assert download_url(artifact) == f"/privacy/downloads/{artifact.id}"
