"""The deletion certificate (P18): a PDF stating what was deleted, when and on whose word.

It names the request, the subject by its non-personal label, the dates (received,
approved, completed; shown in IST), the preparer and the approver (staff), the rows
deleted or anonymised per category, and what was retained with its legal basis and
retain-until date. Rendering is deterministic (ReportLab's invariant mode, a creation
date fixed to the completion date), so the SHA-256 stored on the artifact can be
re-checked by rendering the same facts again.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from app.models.privacy import PrivacyRequest
from app.models.user import AppUser
from app.services.deletion_steps import CATEGORIES, RETAINED
from app.services.invoice_pdf import BOLD, FONT, MARGIN, PAGE_H, PRODUCER, RIGHT, clean, wrap

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

IST = ZoneInfo("Asia/Kolkata")
BOTTOM = 60.0
LINE = 13.0


def ist(value: datetime | None) -> str:
    """A stored (naive UTC) time as "27 Nov 2026, 21:52 IST"."""
    if value is None:
        return "-"
    return value.replace(tzinfo=UTC).astimezone(IST).strftime("%d %b %Y, %H:%M IST")


class _Writer:
    """Lines top to bottom, a new page when the current one is full."""

    def __init__(self, canvas: Canvas) -> None:
        self.c = canvas
        self.y = PAGE_H - MARGIN

    def line(self, text: str, *, font: str = FONT, size: float = 10, x: float = MARGIN) -> None:
        for part in wrap(clean(text), font, size, RIGHT - x) or [""]:
            if self.y < BOTTOM:
                self.c.showPage()
                self.y = PAGE_H - MARGIN
            self.c.setFont(font, size)
            self.c.drawString(x, self.y, part)
            self.y -= LINE if size <= 10 else size + 6

    def gap(self, points: float = 8) -> None:
        self.y -= points


def render(facts: dict[str, Any]) -> bytes:
    """The certificate of ``facts`` (`certificate_facts`)."""
    # Imported here: reportlab costs ~12 MiB in every web process that never renders.
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4, invariant=1, pageCompression=1)
    _metadata(canvas, facts)
    out = _Writer(canvas)
    out.line("Certificate of deletion", font=BOLD, size=16)
    out.line(f"Privacy request {facts['reference']}", size=11)
    out.gap()
    for label, value in (
        ("Subject", facts["subject_label"]),
        ("Request received", ist(facts.get("received_at"))),
        ("Deletion approved", ist(facts.get("approved_at"))),
        ("Deletion completed", ist(facts.get("completed_at"))),
        ("Prepared by", facts.get("preparer") or "-"),
        ("Approved by", facts.get("approver") or "-"),
    ):
        out.line(f"{label}: {value}")
    out.gap()
    _counts(out, facts.get("counts") or [])
    out.gap()
    _retained(out, facts.get("retained") or [])
    out.gap()
    out.line(
        "Rows were deleted from the live database in batches; backups roll over within "
        "their retention period. This certificate holds no personal data of the subject.",
        size=8,
    )
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def _metadata(canvas: Canvas, facts: dict[str, Any]) -> None:
    canvas.setTitle(f"Certificate of deletion {facts['reference']}")
    canvas.setSubject(clean(facts["subject_label"]))
    canvas.setCreator(PRODUCER)
    canvas.setProducer(PRODUCER)
    done = facts.get("completed_at") or datetime(2000, 1, 1)
    # Invariant mode fixes the timestamp; use the completion time instead of 2000-01-01.
    canvas.setDateFormatter(lambda *_ts: f"D:{done:%Y%m%d%H%M%S}+00'00'")


def _counts(out: _Writer, counts: list[dict[str, Any]]) -> None:
    out.line("Deleted or anonymised", font=BOLD, size=11)
    for row in counts:
        parts = [f"{row['deleted']} deleted"]
        if row.get("anonymised"):
            parts.append(f"{row['anonymised']} anonymised")
        if row.get("detached"):
            parts.append(f"{row['detached']} kept (billing, unlinked)")
        out.line(f"{row['category']} ({row['table']}): {', '.join(parts)}", x=MARGIN + 10)
    total = sum(int(r["deleted"]) for r in counts)
    anonymised = sum(int(r.get("anonymised", 0)) for r in counts)
    out.line(f"Total: {total} rows deleted, {anonymised} anonymised", font=BOLD, x=MARGIN + 10)


def _retained(out: _Writer, retained: list[dict[str, Any]]) -> None:
    out.line("Retained", font=BOLD, size=11)
    if not retained:
        out.line("Nothing.", x=MARGIN + 10)
    for row in retained:
        until = row.get("retain_until")
        until_text = ""
        if until and "until" not in row["basis"]:
            until_text = f"; retained until {date.fromisoformat(until):%d %b %Y}"
        out.line(
            f"{row['category']}: {row['rows']} rows. Basis: {row['basis']}{until_text}",
            x=MARGIN + 10,
        )


def deleted_counts(progress: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step: the category and rows deleted, anonymised and detached (kept)."""
    rows = []
    for name, state in (progress.get("steps") or {}).items():
        rows.append(
            {
                "table": name,
                "category": CATEGORIES.get(name)
                or (RETAINED[name][1] if name in RETAINED else "Tenant record"),
                "deleted": int(state.get("deleted", 0)),
                "anonymised": int(state.get("anonymised", 0)),
                "detached": int(state.get("detached", 0)),
            }
        )
    return rows


def certificate_facts(request: PrivacyRequest, progress: dict[str, Any]) -> dict[str, Any]:
    """What the certificate states (JSON-safe; no personal data of the subject)."""
    return {
        "reference": request.reference,
        "subject_label": request.subject_label,
        "subject_kind": str(request.subject_kind),
        "received_at": request.received_at,
        "approved_at": request.approved_at,
        "completed_at": request.completed_at,
        "approver": _staff_name(request.approved_by),
        "preparer": _staff_name(request.prepared_by),
        "counts": deleted_counts(progress),
        "retained": [r for r in progress.get("retained") or [] if r["rows"]],
    }


def _staff_name(user: AppUser | None) -> str:
    if user is None:
        return "-"
    name = f"{user.first_name or ''} {user.last_name or ''}".strip()
    return f"{name} (#{user.id})" if name else f"User #{user.id}"
