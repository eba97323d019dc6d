"""CSV import of contacts (issue 4): upload -> preview and column mapping -> job -> progress."""

from __future__ import annotations

import os
from typing import Any

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from app.extensions import db
from app.jobs import enqueue_after_commit
from app.jobs.contact_import import run_contact_import
from app.models.contact_import import ContactImport, ImportStatus
from app.services import audit
from app.services import contact_import as imports
from app.services.exceptions import ValidationError
from app.tenancy import TenantModelView, current_tenant_id
from app.views._format import ist
from app.views._forms import UploadLimits

STATUS_LABELS = {
    ImportStatus.uploaded: "Waiting for the column mapping",
    ImportStatus.queued: "Queued",
    ImportStatus.running: "Running",
    ImportStatus.done: "Done",
    ImportStatus.failed: "Failed",
}


def max_upload_bytes() -> int:
    return int(current_app.config.get("CONTACT_IMPORT_MAX_MB", 5)) * 1024 * 1024


def _upload_form() -> FlaskForm:
    class UploadForm(FlaskForm):
        file = FileField(
            "CSV file",
            description="UTF-8 CSV whose first line names the columns (phone, name, "
            "email, tags, notes, consent...).",
            validators=[
                FileRequired("Choose a CSV file."),
                UploadLimits({"csv"}, max_upload_bytes()),
            ],
        )

    return UploadForm()


def _status_label(value: Any) -> str:
    return STATUS_LABELS.get(value, str(value or ""))


class ContactImportView(TenantModelView):
    """A tenant's contact imports: upload a CSV, map its columns, follow the job."""

    datamodel = SQLAInterface(ContactImport)
    class_permission_name = "ContactImports"
    route_base = "/contact-imports"
    list_title = "Contact imports"
    show_title = "Contact import"
    base_permissions = ["can_list", "can_show", "can_upload", "can_mapping", "can_errors"]
    base_order = ("created_at", "desc")
    list_template = "woffice/contact_import_list.html"
    show_template = "woffice/contact_import_show.html"
    list_columns = [
        "created_at",
        "filename",
        "status",
        "total_rows",
        "created_count",
        "updated_count",
        "error_count",
    ]
    show_columns = [
        "filename",
        "status",
        "created_at",
        "finished_at",
        "total_rows",
        "processed_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "error_count",
    ]
    search_columns = ["filename", "status", "created_at"]
    order_columns = ["created_at", "filename", "status"]
    label_columns = {
        "created_at": "Uploaded",
        "finished_at": "Finished",
        "filename": "File",
        "total_rows": "Rows",
        "processed_rows": "Processed",
        "created_count": "Created",
        "updated_count": "Updated",
        "unchanged_count": "Unchanged",
        "error_count": "Rows with errors",
    }
    formatters_columns = {
        "status": _status_label,
        "created_at": ist,
        "finished_at": lambda v: ist(v) if v else "",
    }

    # ----------------------------------------------------------------------- upload

    @expose("/upload", methods=["GET", "POST"])
    @has_access
    def upload(self):
        """Step 1: upload the CSV (size, extension and content are checked)."""
        form = _upload_form()
        if form.validate_on_submit():
            upload = form.file.data
            content = upload.read()
            filename = os.path.basename(upload.filename or "contacts.csv")[:255]
            try:
                found = imports.preview(content)
            except ValidationError as exc:
                form.file.errors = [*form.file.errors, f"{filename}: {exc}"]
            else:
                imp = ContactImport(
                    tenant_id=current_tenant_id(),
                    created_by_id=g.user.id,
                    filename=filename,
                    content=content,
                    mapping=found.mapping,
                    total_rows=found.total_rows,
                    status=ImportStatus.uploaded,
                )
                db.session.add(imp)
                db.session.commit()
                return redirect(url_for(".mapping", pk=imp.id))
        return self.render_template(
            "woffice/contact_import_upload.html",
            title="Import contacts from a CSV file",
            form=form,
            max_mb=max_upload_bytes() // (1024 * 1024),
        )

    # ---------------------------------------------------------------------- mapping

    @expose("/<int:pk>/mapping", methods=["GET", "POST"])
    @has_access
    def mapping(self, pk: int):
        """Step 2: preview of the first rows; choose a field for each column; start."""
        imp = self._get_or_404(pk)
        if imp.status != ImportStatus.uploaded:
            return redirect(url_for(".show", pk=imp.id))
        found = imports.preview(imp.content)
        form = FlaskForm()  # CSRF only
        error = None
        current = dict(imp.mapping or found.mapping)
        if form.validate_on_submit():
            chosen = {
                header: request.form.get(f"map-{i}", "ignore")
                for i, header in enumerate(found.headers)
            }
            current = chosen
            try:
                imp.mapping = imports.validate_mapping(found.headers, chosen)
            except ValidationError as exc:
                error = str(exc)
            else:
                imp.status = ImportStatus.queued
                audit.record("contacts.import_queued", imp, rows=imp.total_rows)
                enqueue_after_commit("default", run_contact_import, imp.id, tenant_id=imp.tenant_id)
                db.session.commit()
                flash("Import started.", "success")
                return redirect(url_for(".show", pk=imp.id))
        return self.render_template(
            "woffice/contact_import_mapping.html",
            title=f"Map the columns of {imp.filename}",
            imp=imp,
            preview=found,
            current=current,
            fields=imports.FIELDS,
            labels=imports.FIELD_LABELS,
            form=form,
            error=error,
        )

    # ------------------------------------------------------------------------- show

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        pk = self._deserialize_pk_if_composite(pk)
        widgets = self._show(pk)  # 404 outside the tenant
        imp = self.datamodel.get(pk, self._base_filters)
        return self.render_template(
            self.show_template,
            pk=pk,
            title=self.show_title,
            widgets=widgets,
            related_views=self._related_views,
            imp=imp,
            status_label=_status_label(imp.status),
            in_progress=imp.status in (ImportStatus.queued, ImportStatus.running),
        )

    # ----------------------------------------------------------------------- errors

    @expose("/<int:pk>/errors.csv")
    @has_access
    def errors(self, pk: int):
        """The rows that were not imported, with line numbers and reasons (audited)."""
        imp = self._get_or_404(pk)
        if not imp.errors_csv:
            abort(404)
        audit.record("contacts.import_errors_downloaded", imp, rows=imp.error_count)
        db.session.commit()
        stem = os.path.splitext(imp.filename)[0] or "import"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100]
        return Response(
            imp.errors_csv,
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={safe}-errors.csv"},
        )
