"""Compliance registers (issue 7): sub-processors (P11), incidents (P16), age (P23),
policy versions (P24) through their screens."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import (
    Incident,
    IncidentSeverity,
    PolicyVersion,
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
    SubProcessor,
)
from app.models.user import AppUser
from app.services import incidents, users
from app.services.demo_registers import seed_demo_registers

COMPLIANCE = "compliance@xigmapro.example"


def option_value(html: str, select_name: str, label: str) -> str:
    block = re.search(rf'<select[^>]*name="{select_name}"[^>]*>(.*?)</select>', html, re.S)
    assert block, f"no select {select_name}"
    found = re.search(rf'<option[^>]*value="([^"]+)"[^>]*>\s*{re.escape(label)}\s*<', block[1])
    assert found, f"no option {label!r}"
    return found[1]


def csrf_in(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html)[1]


def find_user(email: str) -> AppUser | None:
    db.session.expire_all()
    return db.session.scalars(
        select(AppUser).where(AppUser.email == email).execution_options(skip_tenant_scope=True)
    ).first()


# ------------------------------------------------------------------ sub-processors


def test_every_role_reads_the_sub_processors_only_compliance_edits(app, client, login):
    seed_demo_registers()
    db.session.commit()
    login("agent@acme.example")
    page = client.get("/sub-processors/list/")
    assert page.status_code == 200
    assert "Dodo Payments" in page.text and "Meta Platforms" in page.text
    assert 'href="/sub-processors/add"' not in page.text
    assert client.get("/sub-processors/add").status_code == 403
    row = db.session.scalars(select(SubProcessor).where(SubProcessor.name == "Dodo Payments")).one()
    assert client.get(f"/sub-processors/edit/{row.id}").status_code == 403
    assert client.get(f"/sub-processors/show/{row.id}").status_code == 200
    login.logout()

    login("owner@acme.example")
    assert client.get("/sub-processors/list/").status_code == 200
    assert client.get("/sub-processors/add").status_code == 403
    login.logout()

    login(COMPLIANCE)
    form = client.get("/sub-processors/add")
    assert form.status_code == 200
    saved = client.post(
        "/sub-processors/add",
        data={
            "name": "SMS gateway",
            "purpose": "One-time codes",
            "data_categories": "Phone numbers",
            "location": "India",
            "dpa_date": "2026-01-15",
            "csrf_token": csrf_in(form.text),
        },
    )
    assert saved.status_code == 302
    assert db.session.scalars(select(SubProcessor).where(SubProcessor.name == "SMS gateway")).one()


# ----------------------------------------------------------------------- incidents


def _incident(title: str, detected_ago: timedelta, tenants=()) -> Incident:
    incident = Incident(
        title=title,
        description="Credentials of a support laptop were phished.",
        severity=IncidentSeverity.high,
        detected_at=utcnow() - detected_ago,
    )
    incident.affected_tenants = list(tenants)
    db.session.add(incident)
    db.session.commit()
    return incident


def test_the_cert_in_clock_at_one_and_seven_hours(app):
    incident = Incident(detected_at=utcnow())
    at = incident.detected_at
    one = incidents.clock(incident, at + timedelta(hours=1))
    assert (one.label, one.overdue) == ("5 h left", False)
    assert one.deadline == at + timedelta(hours=6)
    seven = incidents.clock(incident, at + timedelta(hours=7))
    assert (seven.label, seven.overdue) == ("overdue by 1 h", True)
    assert incidents.clock(incident, at + timedelta(hours=1, minutes=48)).label == "4 h 12 min left"


def test_the_register_shows_the_countdown_server_side(app, client, login):
    fresh = _incident("Phished laptop", timedelta(minutes=59, seconds=30))
    late = _incident("Leaked backup", timedelta(hours=7, seconds=30))
    login(COMPLIANCE)
    page = client.get("/incidents/list/").text
    fresh_row = page[page.index(f'id="clock-{fresh.id}"') :]
    assert "5 h left" in fresh_row[: fresh_row.index("</tr>")]
    late_row = page[page.index(f'id="clock-{late.id}"') :]
    assert "overdue by 1 h" in late_row[: late_row.index("</tr>")]
    assert "nonce=" in page  # the ticking script carries the CSP nonce
    show = client.get(f"/incidents/show/{fresh.id}").text
    assert "5 h left" in show


def test_the_register_is_for_compliance_only(app, client, login):
    login("owner@acme.example")
    assert client.get("/incidents/list/").status_code == 403
    assert client.get("/policy-versions/list/").status_code == 403
    assert client.get("/privacy-accounts/list/").status_code == 403


def test_mark_reported_records_time_and_reference(app, client, login, csrf_token):
    incident = _incident("Phished laptop", timedelta(hours=2))
    login(COMPLIANCE)
    token = csrf_token(f"/incidents/show/{incident.id}")
    empty = client.post(f"/incidents/report/{incident.id}", data={"csrf_token": token})
    assert empty.status_code == 302
    db.session.expire_all()
    assert db.session.get(Incident, incident.id).reported_at is None
    done = client.post(
        f"/incidents/report/{incident.id}",
        data={"csrf_token": token, "reference": "CERTIn-2026-1127-42", "reported_local": ""},
    )
    assert done.status_code == 302
    db.session.expire_all()
    row = db.session.get(Incident, incident.id)
    assert row.report_reference == "CERTIn-2026-1127-42"
    assert row.reported_at is not None
    assert "reported with 3 h" in client.get(f"/incidents/show/{incident.id}").text


def test_notifying_affected_tenants_emails_their_admins_once(
    app, client, login, csrf_token, mailbox, run_jobs, tenant_a
):
    incident = _incident("Phished laptop", timedelta(hours=2), [tenant_a])
    login(COMPLIANCE)
    token = csrf_token(f"/incidents/show/{incident.id}")
    first = client.post(f"/incidents/notify/{incident.id}", data={"csrf_token": token})
    assert first.status_code == 302
    run_jobs("mail")
    recipients = [str(m["To"]) for m in mailbox.messages]
    assert recipients == ["owner@acme.example"]  # tenant A's one active admin
    assert "Phished laptop" in mailbox.text(mailbox.messages[0])
    db.session.expire_all()
    assert db.session.get(Incident, incident.id).tenants_notified_at is not None

    again = client.post(f"/incidents/notify/{incident.id}", data={"csrf_token": token})
    assert again.status_code == 302
    assert "were notified on" in client.get(again.headers["Location"]).text
    run_jobs("mail")
    assert len(mailbox.messages) == 1
    assert client.post(f"/incidents/notify/{incident.id}").status_code == 400  # no CSRF


# ----------------------------------------------------------------------------- age


def test_a_platform_admin_must_attest_the_new_users_age(app, client, login):
    login("admin@xigmapro.example")
    html = client.get("/users/add").text
    assert 'name="age_confirm"' in html
    data = {
        "first_name": "Ravi",
        "last_name": "Menon",
        "email": "ravi@acme.example",
        "phone": "",
        "tenant": option_value(html, "tenant", "Acme Traders"),
        "active": "y",
        "roles": [option_value(html, "roles", "Agent")],
        "password": "created-pass-2026",
        "conf_password": "created-pass-2026",
        "csrf_token": csrf_in(html),
    }
    refused = client.post("/users/add", data=data)
    assert refused.status_code == 200
    assert "adults (18+) only" in refused.text
    assert find_user("ravi@acme.example") is None

    accepted = client.post("/users/add", data={**data, "age_confirm": "y"})
    assert accepted.status_code == 302, accepted.text
    assert find_user("ravi@acme.example").age_confirmed_at is not None


def test_an_invitation_cannot_be_accepted_without_the_age_attestation(app, client, user_by_email):
    owner = user_by_email("owner@acme.example")
    invited = users.invite_user(
        db.session,
        owner,
        owner.tenant_id,
        email="minor.maybe@acme.example",
        first_name="Kiran",
        last_name="Rao",
        role_names=["Agent"],
    )
    db.session.commit()
    path = f"/invitation/{users.invitation_token(invited)}"
    form = client.get(path)
    refused = client.post(
        path,
        data={
            "password": "kiran-pass-2026",
            "password_confirm": "kiran-pass-2026",
            "csrf_token": csrf_in(form.text),
        },
    )
    assert refused.status_code == 200
    assert "adults (18+) only" in refused.text
    user = find_user("minor.maybe@acme.example")
    assert user.password is None and user.age_confirmed_at is None


def test_an_account_without_attestation_is_asked_to_confirm(
    app, client, login, user_by_email, csrf_token
):
    user_by_email("agent@acme.example").age_confirmed_at = None
    db.session.commit()
    login("agent@acme.example")
    assert 'id="age-banner"' in client.get("/").text
    token = csrf_token("/account/")
    client.post("/policy/confirm-age", data={"csrf_token": token, "next": "/"})
    assert find_user("agent@acme.example").age_confirmed_at is None  # box not ticked
    client.post("/policy/confirm-age", data={"csrf_token": token, "age_confirm": "y"})
    assert find_user("agent@acme.example").age_confirmed_at is not None
    assert 'id="age-banner"' not in client.get("/").text


def test_flagging_a_minor_deactivates_and_opens_a_deletion_request(
    app, client, login, csrf_token, user_by_email
):
    agent = user_by_email("agent@bharatfoods.example")

    def requests_about_agent() -> set[int]:
        return set(
            db.session.scalars(
                select(PrivacyRequest.id).where(PrivacyRequest.subject_user_id == agent.id)
            )
        )

    before = requests_about_agent()  # the demo may hold some already
    login(COMPLIANCE)
    show = client.get(f"/privacy-accounts/show/{agent.id}")
    assert show.status_code == 200 and 'id="flag-minor-form"' in show.text
    token = csrf_token(f"/privacy-accounts/show/{agent.id}")
    no_reason = client.post(f"/privacy-accounts/flag-minor/{agent.id}", data={"csrf_token": token})
    assert no_reason.status_code == 302
    assert find_user("agent@bharatfoods.example").active is True

    flagged = client.post(
        f"/privacy-accounts/flag-minor/{agent.id}",
        data={"csrf_token": token, "reason": "Their school emailed us; the holder is 16."},
    )
    assert flagged.status_code == 302
    user = find_user("agent@bharatfoods.example")
    assert user.active is False and user.minor_flagged_at is not None
    (opened,) = requests_about_agent() - before
    request = db.session.get(PrivacyRequest, opened)
    assert request.request_type == RequestType.deletion
    assert request.status == RequestStatus.received
    assert request.channel == RequestChannel.in_app
    assert request.requester_email == COMPLIANCE
    assert request.tenant_id == user.tenant_id
    assert "Account deactivated and flagged" in client.get(flagged.headers["Location"]).text
    # A second flag is refused; no second request.
    client.post(
        f"/privacy-accounts/flag-minor/{agent.id}", data={"csrf_token": token, "reason": "again"}
    )
    assert requests_about_agent() - before == {opened}
    # The flagged account can no longer sign in.
    login.logout()
    assert login("agent@bharatfoods.example").status_code == 200


# ---------------------------------------------------------------- policy versions


def test_compliance_drafts_publishes_and_cannot_edit_a_published_version(
    app, client, login, csrf_token, mailbox, run_jobs
):
    login(COMPLIANCE)
    form = client.get("/policy-versions/add")
    assert form.status_code == 200
    soon = (utcnow() + timedelta(days=6, hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "version": "2.0",
        "summary": "Adds an SMS sub-processor.",
        "full_text": "Privacy Policy\n\nVersion 2.0 text.",
        "material": "y",
        "effective_local": soon,
        "csrf_token": csrf_in(form.text),
    }
    refused = client.post("/policy-versions/add", data=data)
    assert refused.status_code == 200
    assert "needs 7 days' notice" in refused.text and "at the earliest" in refused.text
    assert not db.session.scalars(select(PolicyVersion).where(PolicyVersion.version == "2.0")).all()

    later = (utcnow() + timedelta(days=8, hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert (
        client.post("/policy-versions/add", data={**data, "effective_local": later}).status_code
        == 302
    )
    version = db.session.scalars(select(PolicyVersion).where(PolicyVersion.version == "2.0")).one()
    assert version.published_at is None
    assert abs(version.effective_at - (utcnow() + timedelta(days=8))) < timedelta(minutes=2)

    show = client.get(f"/policy-versions/show/{version.id}")
    assert 'id="policy-publish"' in show.text
    token = csrf_in(show.text)
    assert client.post(f"/policy-versions/publish/{version.id}").status_code == 400
    published = client.post(f"/policy-versions/publish/{version.id}", data={"csrf_token": token})
    assert published.status_code == 302
    db.session.expire_all()
    assert db.session.get(PolicyVersion, version.id).published_at is not None
    run_jobs("mail")
    assert {"owner@acme.example", "owner@bharatfoods.example"} <= {
        str(m["To"]) for m in mailbox.messages
    }

    assert "Acknowledged in the app by 0 user(s)" in client.get(published.headers["Location"]).text
    edit = client.get(f"/policy-versions/edit/{version.id}")
    assert edit.status_code == 302 and edit.headers["Location"].endswith(
        f"/policy-versions/show/{version.id}"
    )
    again = client.post(f"/policy-versions/publish/{version.id}", data={"csrf_token": token})
    assert "cannot change" in client.get(again.headers["Location"]).text

    public = client.get("/privacy-policy/versions/2.0")
    assert public.status_code == 200 and "Version 2.0 text." in public.text
    assert "takes effect" in public.text
    assert client.get("/privacy-policy/versions/none").status_code == 404


def test_compliance_records_an_incident_with_an_ist_detection_time(
    app, client, login, tenant_a, tenant_b
):
    login(COMPLIANCE)
    form = client.get("/incidents/add")
    assert form.status_code == 200
    data = {
        "title": "Exposed log bucket",
        "description": "A log bucket was public for 2 hours.",
        "severity": "high",
        "detected_local": "2026-11-27T10:30",  # IST: 05:00 UTC
        "affected_tenants": [
            option_value(form.text, "affected_tenants", tenant_a.name),
            option_value(form.text, "affected_tenants", tenant_b.name),
        ],
        "csrf_token": csrf_in(form.text),
    }
    assert client.post("/incidents/add", data=data).status_code == 302
    incident = db.session.scalars(
        select(Incident).where(Incident.title == "Exposed log bucket")
    ).one()
    assert incident.detected_at.isoformat() == "2026-11-27T05:00:00"
    assert incidents.deadline(incident).isoformat() == "2026-11-27T11:00:00"
    assert {t.slug for t in incident.affected_tenants} == {"acme", "bharatfoods"}
    show = client.get(f"/incidents/show/{incident.id}").text
    assert "27 Nov 2026, 16:30 IST" in show  # the deadline, shown in IST
    edit = client.get(f"/incidents/edit/{incident.id}")
    assert edit.status_code == 200 and 'value="2026-11-27T10:30"' in edit.text

    future = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    client.post("/incidents/add", data={**data, "title": "Later", "detected_local": future})
    assert not db.session.scalars(select(Incident).where(Incident.title == "Later")).all()
