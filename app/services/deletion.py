"""Deletion of a tenant, a contact or a user account (issue 7; P18, P19).

A deletion request gets a **plan** (`build_plan`): per table, how many rows go, and what
is kept and why. After a second Compliance user approves it, the deletion job calls
`run`, which works through the plan's steps in dependency order (children before
parents, from the metadata's foreign keys), one batch per transaction:

* each batch locks the request row, reads the progress, deletes up to ``batch_size``
  rows by keyset (``key > last ORDER BY key LIMIT n``, so it never rescans what is
  gone) and writes the progress in the same transaction: a crash loses at most the
  batch in flight and a rerun resumes exactly there; two runs of one request take turns;
* rows are deleted with Core statements and explicit ids (the ORM's tenant hooks and
  per-row audit capture are bypassed on purpose); each finished step is audited once,
  with counts only;
* users are deleted, or anonymised where something still needs the row (the audit
  trail's actor ids, a campaign's author...): email ``deleted-<id>@invalid``, names
  cleared, inactive, new ``fs_uniquifier``, roles and keys removed;
* billing records (invoices, credit notes, payments, subscriptions, payment webhooks)
  are kept for the GST retention period with their frozen buyer; their ``tenant_id``
  becomes NULL. Audit events are kept: they hold no personal data by construction.

When every step is done, the tenant (if that was the subject) becomes a tombstone
(status deleted, particulars cleared), the certificate is rendered and stored, and the
request is completed, in one transaction. Tables added later with a ``tenant_id`` are
deleted with the tenant automatically; keeping one needs an entry in `RETAINED`.

Speed: deleting a conversation makes PostgreSQL look up its messages (the FK's cascade
check), which needs an index on ``message (conversation_id)``; see docs/benchmarks.md.

Services never commit: `run` calls ``after_batch`` (the job passes the session's
commit) after each batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, delete, func, select, true, update

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.billing import DocumentType, Invoice, Payment
from app.models.mixins import utcnow
from app.models.privacy import (
    ArtifactKind,
    PrivacyArtifact,
    PrivacyRequest,
    RequestStatus,
    RequestType,
    SubjectKind,
)
from app.models.tenant import TenantStatus
from app.services import audit, privacy
from app.services.deletion_steps import (
    DEFAULT_BATCH_SIZE,
    RETAINED,
    RUNNABLE,
    DeletionError,
    Step,
    process_users,
    referenced_users,
    steps_for,
    table_named,
)
from app.tenancy import tenant_scope

# ------------------------------------------------------------------------------- plan

TENANT_TOMBSTONE = {
    "table": "tenant",
    "category": "Tenant record",
    "rows": 1,
    "reason": "Kept as a tombstone (id, status deleted) that the billing records and the "
    "audit trail point to: name, contact details, GSTIN, address and WhatsApp settings "
    "cleared",
}


def _skip_tables(steps: list[Step]) -> set[str]:
    return {s.name for s in steps if s.action == "delete"}


def _count(step: Step) -> int:
    return db.session.scalar(select(func.count()).select_from(step.table).where(step.where)) or 0


def _retained_rows(request: PrivacyRequest) -> list[dict[str, Any]]:
    """What stays, with its legal basis and the date it may be purged."""
    if request.subject_kind != SubjectKind.tenant:
        return [_kept_audit(request)]
    tenant_id = request.tenant_id
    rows = []
    for doc_type, label in (
        (DocumentType.invoice, "Invoices"),
        (DocumentType.credit_note, "Credit notes"),
    ):
        count, until = db.session.execute(
            select(func.count(), func.max(Invoice.retain_until)).where(
                Invoice.tenant_id == tenant_id, Invoice.doc_type == doc_type
            )
        ).one()
        rows.append(_billing_row("invoice", label, count, until))
    count, until = db.session.execute(
        select(func.count(), func.max(Payment.retain_until)).where(Payment.tenant_id == tenant_id)
    ).one()
    rows.append(_billing_row("payment", "Payments", count, until))
    latest = max((r["retain_until"] for r in rows if r["retain_until"]), default=None)
    for name in ("subscription", "billing_event"):
        table = table_named(name)
        count = db.session.scalar(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        )
        rows.append(
            _billing_row(name, RETAINED[name][1], count, latest and date.fromisoformat(latest))
        )
    return [*rows, _kept_audit(request), *_kept_registers(tenant_id)]


def _kept_registers(tenant_id: int) -> list[dict[str, Any]]:
    """The privacy requests and incident links of the tenant (compliance registers)."""
    rows = []
    for name in ("privacy_request", "incident_tenant"):
        table = table_named(name)
        count = db.session.scalar(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        )
        rows.append(
            {
                "table": name,
                "category": RETAINED[name][1],
                "rows": int(count or 0),
                "basis": RETAINED[name][2],
                "retain_until": None,
                "note": "Linked to the anonymised tenant record.",
            }
        )
    return rows


def _billing_row(table: str, label: str, count: int, until: date | None) -> dict[str, Any]:
    basis = RETAINED[table][2]
    return {
        "table": table,
        "category": label,
        "rows": int(count or 0),
        "basis": f"{basis}: retained until {until:%d %b %Y}" if until else basis,
        "retain_until": until.isoformat() if until else None,
        "note": "Kept with the buyer's details frozen on the document; "
        "no longer linked to the tenant (tenant_id becomes empty).",
    }


def _kept_audit(request: PrivacyRequest) -> dict[str, Any]:
    where = AuditEvent.tenant_id == request.tenant_id if request.tenant_id else true()
    if request.subject_kind == SubjectKind.user:
        where = AuditEvent.actor_id == request.subject_user_id
    elif request.subject_kind == SubjectKind.contact:
        where = and_(
            AuditEvent.object_type == "contact",
            AuditEvent.object_id == str(request.subject_contact_id),
        )
    count = db.session.scalar(select(func.count()).select_from(AuditEvent).where(where))
    return {
        "table": "audit_event",
        "category": "Audit events",
        "rows": int(count or 0),
        "basis": RETAINED["audit_event"][2],
        "retain_until": None,
        "note": "Ids only: the events keep no names, emails, phones or addresses.",
    }


def build_plan(request: PrivacyRequest) -> dict[str, Any]:
    """The plan shown before approval: per table the rows to delete, and what is kept.

    JSON-safe: ``delete`` and ``anonymise`` are lists of ``{table, category, rows}`` (an
    anonymise row also has ``reason``), in the order the job runs; ``retain`` lists
    ``{table, category, rows, basis, retain_until (ISO date or None), note}``, e.g.
    invoices with basis "GST s.36 (CGST Act): retained until 31 Mar 2034";
    ``total_delete`` sums the deletions.

    :raises DeletionError: if the request is not a deletion or names no subject.
    """
    if request.request_type != RequestType.deletion:
        raise DeletionError("Only a deletion request has a deletion plan.")
    with tenant_scope(None):
        steps = steps_for(request)
        skip = _skip_tables(steps)
        delete_rows, anonymise = [], []
        for step in steps:
            if step.action == "detach":
                continue
            if step.action == "users":
                ids = list(db.session.scalars(select(step.table.c.id).where(step.where)))
                keep = referenced_users(ids, skip)
                delete_rows.append(_plan_row(step, len(ids) - len(keep)))
                anonymise.append(
                    {
                        **_plan_row(step, len(keep)),
                        "reason": "Referenced by the audit trail "
                        "or records that stay: name, email and phone cleared, sign-in disabled",
                    }
                )
            else:
                delete_rows.append(_plan_row(step, _count(step)))
        if request.subject_kind == SubjectKind.tenant:
            anonymise.append(TENANT_TOMBSTONE)
        return {
            "subject_kind": str(request.subject_kind),
            "subject_label": request.subject_label,
            "computed_at": utcnow().isoformat(timespec="seconds"),
            "delete": delete_rows,
            "anonymise": anonymise,
            "retain": _retained_rows(request),
            "total_delete": sum(r["rows"] for r in delete_rows),
        }


def _plan_row(step: Step, rows: int) -> dict[str, Any]:
    return {"table": step.name, "category": step.category, "rows": int(rows)}


# -------------------------------------------------------------------------------- run


def _progress_of(request_id: int) -> tuple[dict[str, Any], RequestStatus]:
    """The request's progress and status, its row locked until this batch commits."""
    pr = PrivacyRequest.__table__
    row = db.session.execute(
        select(pr.c.deletion_progress, pr.c.status).where(pr.c.id == request_id).with_for_update()
    ).one()
    progress = dict(row.deletion_progress or {})
    progress.setdefault("steps", {})
    progress.setdefault("started_at", utcnow().isoformat(timespec="seconds"))
    return progress, RequestStatus(row.status)


def _save_progress(request_id: int, progress: dict[str, Any]) -> None:
    progress["updated_at"] = utcnow().isoformat(timespec="seconds")
    db.session.execute(
        update(PrivacyRequest.__table__)
        .where(PrivacyRequest.__table__.c.id == request_id)
        .values(deletion_progress=progress)
    )


def _run_batch(step: Step, state: dict[str, Any], size: int, skip: set[str]) -> int:
    """One batch of ``step`` after ``state["last"]``; returns how many keys it took.

    The batch is the next ``size`` keys; the write names them by their range (two
    parameters, and an index range scan), not by a list of ids.
    """
    key = step.table.c[step.key]
    where = step.where if state.get("last") is None else and_(step.where, key > state["last"])
    query = select(key).where(where).order_by(key).limit(size)
    if step.key != "id":
        query = query.distinct()
    if step.action == "users":
        ids = list(db.session.scalars(query))
        for name, n in process_users(step, ids, skip).items():
            state[name] = state.get(name, 0) + n
        taken, upto = len(ids), (ids[-1] if ids else None)
    else:
        batch = query.subquery()
        taken, upto = db.session.execute(select(func.count(), func.max(batch.c[0]))).one()
    if not taken:
        return 0
    in_batch = and_(where, key <= upto)
    if step.action == "detach":
        result = db.session.execute(update(step.table).where(in_batch).values(tenant_id=None))
        state["detached"] = state.get("detached", 0) + result.rowcount
    elif step.action == "delete":
        result = db.session.execute(delete(step.table).where(in_batch))
        state["deleted"] = state.get("deleted", 0) + result.rowcount
    state["last"] = upto
    return int(taken)


def _approved_request(request_id: int) -> PrivacyRequest:
    request = db.session.get(PrivacyRequest, request_id)
    if request is None or request.request_type != RequestType.deletion:
        raise DeletionError(f"No deletion request #{request_id}.")
    if request.approved_by_id is None:
        raise DeletionError("A deletion runs only after its approval.")
    return request


def run(
    request_id: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stop_after: int | None = None,
    *,
    after_batch: Callable[[], None] | None = None,
    deadline: float | None = None,
    pause: float = 0.0,
) -> dict[str, Any]:
    """Carry out an approved deletion, one batch per ``after_batch`` (the job commits).

    Stops early (returning ``done: False``) after ``stop_after`` batches or at the
    monotonic ``deadline``; calling again resumes where it stopped. A completed
    request is left alone. ``pause`` seconds between batches leave the database room.

    :raises DeletionError: if the request is not an approved deletion.
    """
    commit = after_batch or (lambda: None)
    with tenant_scope(None):
        request = _approved_request(request_id)
        if request.status == RequestStatus.completed:
            return {"done": True, "batches": 0, "skipped": True}
        steps = steps_for(request)
        budget = _Budget(stop_after, deadline, pause)
        skip = _skip_tables(steps)
        for step in steps:
            stopped = _run_step(request, step, skip, batch_size, commit, budget)
            if stopped is not None:
                return stopped
        return {"done": True, "batches": budget.batches, **_finish(request_id)}


@dataclass
class _Budget:
    """How far one call of `run` may go: a number of batches, a monotonic deadline."""

    stop_after: int | None
    deadline: float | None
    pause: float = 0.0
    batches: int = 0

    def spent(self) -> bool:
        return (self.stop_after is not None and self.batches >= self.stop_after) or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )


def _run_step(
    request: PrivacyRequest,
    step: Step,
    skip: set[str],
    size: int,
    commit: Callable[[], None],
    budget: _Budget,
) -> dict[str, Any] | None:
    """Batches of ``step`` until it is done (None) or the run must stop (its result)."""
    while True:
        progress, status = _progress_of(request.id)  # locks the request row
        state = progress["steps"].setdefault(step.name, {"done": False})
        if state["done"] or status not in RUNNABLE or budget.spent():
            commit()
            if state["done"]:
                return None
            return {"done": status == RequestStatus.completed, "batches": budget.batches}
        if "retained" not in progress:  # what stays, frozen before anything goes
            progress["retained"] = _retained_rows(request)
        taken = _run_batch(step, state, size, skip)
        state["done"] = taken < size
        progress["current"] = step.name
        if state["done"]:
            _audit_step(request.id, request.tenant_id, step, state)
        _save_progress(request.id, progress)
        commit()
        budget.batches += 1
        if budget.pause and not state["done"]:
            time.sleep(budget.pause)


def _audit_step(request_id: int, tenant_id: int | None, step: Step, state: dict[str, Any]) -> None:
    counts = {k: v for k, v in state.items() if k in ("deleted", "anonymised", "detached")}
    audit.record(
        "privacy_request.deletion_step",
        tenant_id=tenant_id,
        request_id=request_id,
        table=step.name,
        **counts,
    )


# ----------------------------------------------------------------------------- finish


def tombstone_values(tenant_id: int) -> dict[str, Any]:
    """What a deleted tenant's row keeps: its id, status and non-personal settings."""
    return {
        "status": TenantStatus.deleted.value,
        "name": f"Deleted tenant #{tenant_id}",
        "legal_name": f"Deleted tenant #{tenant_id}",
        "slug": f"deleted-{tenant_id}",
        "contact_email": f"deleted-tenant-{tenant_id}@invalid",
        "contact_phone": "",
        "billing_email": None,
        "gstin": None,
        "address_line1": "",
        "address_line2": None,
        "city": "",
        "postal_code": "",
        "wa_phone_number_id": None,
        "wa_business_account_id": None,
        "wa_display_number": None,
        "wa_access_token": None,
        "wa_app_secret": None,
        "updated_at": utcnow(),
    }


def _finish(request_id: int) -> dict[str, Any]:
    """Tombstone the tenant, store the certificate, complete the request (one transaction)."""
    # Here: the certificate renderer loads reportlab (~12 MiB per process).
    from app.services import deletion_certificate

    progress, status = _progress_of(request_id)
    if status == RequestStatus.completed:  # another run finished it while this one waited
        return {"deleted": sum(c["deleted"] for c in deletion_certificate.deleted_counts(progress))}
    request = db.session.get(PrivacyRequest, request_id)
    if request.subject_kind == SubjectKind.tenant:
        tenant = table_named("tenant")
        db.session.execute(
            update(tenant)
            .where(tenant.c.id == request.tenant_id)
            .values(**tombstone_values(request.tenant_id))
        )
        progress["steps"]["tenant"] = {"done": True, "anonymised": 1}
    counts = deletion_certificate.deleted_counts(progress)
    privacy.complete(request, None, resolution=_resolution(counts))
    facts = deletion_certificate.certificate_facts(request, progress)
    pdf = deletion_certificate.render(facts)
    db.session.add(
        PrivacyArtifact(
            request_id=request.id,
            kind=ArtifactKind.deletion_certificate,
            filename=f"{request.reference}-deletion-certificate.pdf",
            content_type="application/pdf",
            content=pdf,
            size=len(pdf),
            sha256=hashlib.sha256(pdf).hexdigest(),
            expires_at=None,
        )
    )
    progress["done"] = True
    progress["finished_at"] = utcnow().isoformat(timespec="seconds")
    _save_progress(request_id, progress)
    return {"deleted": sum(c["deleted"] for c in counts)}


def _resolution(counts: list[dict[str, Any]]) -> str:
    deleted = sum(c["deleted"] for c in counts)
    anonymised = sum(c["anonymised"] for c in counts)
    return f"Deleted {deleted} rows, anonymised {anonymised}; see the deletion certificate."
