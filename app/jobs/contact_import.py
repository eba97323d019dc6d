"""Contact import jobs (queue ``default``)."""

from __future__ import annotations

from app.extensions import db
from app.jobs._runtime import job
from app.models.contact_import import ContactImport, ImportStatus
from app.models.mixins import utcnow
from app.services.contact_import import WRITERS, run_import


@job
def run_contact_import(import_id: int, tenant_id: int | None = None) -> dict[str, int]:
    """Run one CSV import, committing after each batch so its page shows the progress.

    Safe to re-run: a finished import is left alone, and importing rows again changes
    nothing that already landed.
    """
    imp = db.session.get(ContactImport, import_id)
    if imp is None or imp.tenant_id != tenant_id:
        return {"rows": 0}
    if imp.status == ImportStatus.done:
        return {"rows": imp.processed_rows}
    imp.status = ImportStatus.running
    db.session.commit()
    try:
        return run_import(db.session, imp, after_batch=db.session.commit, writers=WRITERS)
    except Exception:
        db.session.rollback()
        imp = db.session.get(ContactImport, import_id)
        imp.status = ImportStatus.failed
        imp.finished_at = utcnow()
        db.session.commit()
        raise
