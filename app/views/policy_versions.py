"""Privacy policy versions for Compliance (P24): `PolicyVersionView` (/policy-versions).

Drafts are edited freely; Publish (POST, CSRF) is the notice: every active Tenant Admin
is emailed (mail queue, after commit) and users see the banner until they acknowledge.
A published version is immutable. The rules live in `app.services.policy`.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, url_for
from flask_appbuilder import ModelView, expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from wtforms.validators import ValidationError as WTFormsValidationError

from app.extensions import db
from app.jobs.registers import send_after_commit
from app.models.mixins import utcnow
from app.models.privacy import PolicyVersion
from app.services import policy
from app.services.exceptions import ValidationError, WofficeError
from app.views._format import ist, yes_no
from app.views._registers import ShowWithActions, checked_form, from_ist, ist_field, to_ist


def _notice_kept(form: Any, field: Any) -> None:
    """Form check of the 7-day notice rule for a draft (notice counts from now)."""
    material = bool(getattr(form, "material", None) and form.material.data)
    try:
        policy.check_notice(material, from_ist(field.data), utcnow())
    except ValidationError as exc:
        raise WTFormsValidationError(str(exc)) from exc


class PolicyVersionView(ShowWithActions, ModelView):
    """Privacy policy versions: draft, publish (the notice), then read-only."""

    datamodel = SQLAInterface(PolicyVersion)
    class_permission_name = "PrivacyPolicyVersions"
    route_base = "/policy-versions"
    list_title = "Privacy policy versions"
    show_title = "Privacy policy version"
    add_title = "New privacy policy version"
    edit_title = "Edit draft policy version"
    show_template = "woffice/policy_version_show.html"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete", "can_publish"]
    base_order = ("created_at", "desc")
    list_columns = ["version", "summary", "material", "published_at", "effective_at"]
    show_columns = ["version", "summary", "material", "published_at", "effective_at", "created_at"]
    add_columns = edit_columns = ["version", "summary", "full_text", "material", "effective_local"]
    search_columns = ["version", "material", "published_at", "effective_at"]
    label_columns = {
        "published_at": "Published (notice)",
        "effective_at": "Takes effect",
        "full_text": "Full text",
        "material": "Material change",
        "created_at": "Created",
    }
    description_columns = {
        "material": f"A material change takes effect at least {policy.NOTICE_DAYS} days "
        "after it is published (the notice).",
        "summary": "What changes, in a few lines: it goes into the notice email and banner.",
    }
    formatters_columns = {
        "published_at": lambda v: ist(v) if v else "Draft (not published)",
        "effective_at": ist,
        "created_at": ist,
        "material": yes_no,
    }
    add_form_extra_fields = edit_form_extra_fields = {
        "effective_local": ist_field(
            "Takes effect (IST)",
            "When this version replaces the one in force.",
            extra=(_notice_kept,),
        ),
    }

    def prefill_form(self, form: Any, pk: Any) -> None:
        row = self.datamodel.get(pk)
        if row is not None and not form.effective_local.data:
            form.effective_local.data = to_ist(row.effective_at)

    def _stamp(self, item: PolicyVersion) -> None:
        local = getattr(item, "effective_local", None)
        if local is not None:
            item.effective_at = from_ist(local)
        policy.validate(item)

    def pre_add(self, item: PolicyVersion) -> None:
        self._stamp(item)
        item.created_by_id = g.user.id

    def pre_update(self, item: PolicyVersion) -> None:
        try:
            policy.check_editable(item)
            self._stamp(item)
        except WofficeError:
            db.session.rollback()  # FAB only flashes: drop the form's changes too
            raise

    def pre_delete(self, item: PolicyVersion) -> None:
        policy.check_editable(item)

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk: Any) -> Any:
        row = self.datamodel.get(pk)
        if row is not None and row.published_at is not None:
            flash(f"Version {row.version} is published and cannot change.", "warning")
            return redirect(url_for(".show", pk=row.id))
        return super().edit(pk)

    def show_title_for(self, row: Any) -> str:
        return f"Privacy policy {row.version}"

    def show_context(self, row: Any) -> dict[str, Any]:
        return {
            "earliest": ist(policy.earliest_effective(utcnow())),
            "acknowledged": policy.acknowledgement_count(row),
        }

    @expose("/publish/<pk>", methods=["POST"])
    @has_access
    def publish(self, pk: Any) -> Any:
        """Publish (the notice): emails to every active Tenant Admin after commit."""
        row = self.datamodel.get(pk) or abort(404)
        checked_form()
        url = url_for("policy_notice.version", label=row.version, _external=True)
        try:
            emails = policy.publish(row, g.user, url)
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=row.id))
        sent = send_after_commit(emails)
        db.session.commit()
        flash(f"Version {row.version} published; notice sent to {sent} tenant admin(s).", "success")
        return redirect(url_for(".show", pk=row.id))
