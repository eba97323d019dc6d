"""Contacts and tags of a tenant (P2), their consent log (P9) and exports (P20)."""

from __future__ import annotations

from typing import Any

from flask import (
    Response,
    abort,
    flash,
    g,
    has_request_context,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_appbuilder import action, expose
from flask_appbuilder.fieldwidgets import BS3TextAreaFieldWidget, BS3TextFieldWidget
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder.urltools import get_filter_args
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import ValidationError as WTFormsValidationError

from app.extensions import db
from app.models.contact import ConsentAction, ConsentSource, ConsentState, Contact, Tag
from app.services import audit, contact_export, contacts, tenant_roles
from app.services.consent import record_consent
from app.services.exceptions import ValidationError
from app.services.phones import whatsapp_id
from app.services.tenants import normalize_email
from app.tenancy import TenantModelView, current_tenant_id
from app.views._format import ist
from app.views._forms import ServiceValidator
from app.views._scale import CappedCountInterface

EXPORT_PERMISSION = ("can_export", "Contacts")
CONSENT_ACTION_LABELS = {
    ConsentAction.opt_in: "Opted in",
    ConsentAction.opt_out: "Opted out",
    ConsentAction.resume: "Resumed",
    ConsentAction.objection: "Objected to marketing",
    ConsentAction.objection_withdrawn: "Withdrew the objection",
}
CONSENT_STATE_LABELS = {
    ConsentState.unknown: "Unknown",
    ConsentState.opted_in: "Opted in",
    ConsentState.opted_out: "Opted out",
}


def _state_label(value: Any) -> str:
    return CONSENT_STATE_LABELS.get(value, str(value or "")) if value else ""


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _yes_no(value: Any) -> str:
    return "Yes" if value else "No"


def _tag_names(tags: Any) -> str:
    return ", ".join(t.name for t in tags or [])


# ---------------------------------------------------------------------------- search


class FilterContactQuery(BaseFilter):
    """Base filter: the list's search box (``?q=``), a name or a phone in any format."""

    name = "Search"
    arg_name = "contact_q"

    def apply(self, query: Any, value: Any) -> Any:
        condition = (
            contacts.search_condition(request.args.get("q")) if has_request_context() else None
        )
        return query if condition is None else query.filter(condition)


def _phone_valid(value: str) -> str:
    return contacts.normalize_contact_phone(value)[0]


def _phone_unique(form, field) -> None:
    tenant_id = current_tenant_id()
    if field.data and tenant_id is not None:
        wa_id = whatsapp_id(field.data)
        if contacts.phone_taken(db.session, tenant_id, wa_id, getattr(form, "_id", None)):
            raise WTFormsValidationError(contacts.DUPLICATE_PHONE)


def _phone_field() -> StringField:
    return StringField(
        "Phone",
        description="Any format: +91 98765 43210, 098765 43210, 9876543210; "
        "other countries with their + code.",
        validators=[ServiceValidator(_phone_valid), _phone_unique],
        widget=BS3TextFieldWidget(),
        render_kw={"inputmode": "tel"},
    )


# ----------------------------------------------------------------------------- forms


class ConsentForm(FlaskForm):
    action = SelectField(
        "Action",
        choices=[(a.value, CONSENT_ACTION_LABELS[a]) for a in ConsentAction],
        validators=[DataRequired()],
    )
    source = SelectField(
        "Source",
        choices=[(s.value, s.value.replace("_", " ").capitalize()) for s in ConsentSource],
        validators=[DataRequired()],
    )
    evidence = TextAreaField(
        "Evidence",
        description="How the person agreed: form URL and time, signed slip number, the "
        "message they sent... Required for an opt-in.",
        widget=BS3TextAreaFieldWidget(),
    )


class TagForm(FlaskForm):
    tag = SelectField("Tag", coerce=int, validators=[DataRequired()])
    mode = RadioField(
        "Change",
        choices=[("add", "Add the tag"), ("remove", "Remove the tag")],
        default="add",
        validators=[DataRequired()],
    )


# ----------------------------------------------------------------------------- views


class ContactModelView(TenantModelView):
    """A tenant's contacts: search by any phone format, tags, consent, exports."""

    datamodel = CappedCountInterface(Contact, eager=("tags",))
    class_permission_name = "Contacts"
    route_base = "/contacts"
    list_title = "Contacts"
    show_title = "Contact"
    add_title = "New contact"
    edit_title = "Edit contact"
    # No delete here: erasing a person is a privacy request (P20), which keeps the proof.
    base_permissions = [
        "can_list",
        "can_show",
        "can_add",
        "can_edit",
        "can_export",
        "can_consent",
        "can_tag",
        "can_opt_out",
    ]
    exclude_route_methods = {"delete"}
    base_filters = [["id", FilterContactQuery, None]]
    base_order = ("display_name", "asc")
    list_template = "woffice/contact_list.html"
    show_template = "woffice/contact_show.html"
    add_row_message = "Contact added."
    edit_row_message = "Contact saved."

    list_columns = ["name", "phone", "tags", "consent_state", "last_inbound_at"]
    order_columns = ["phone", "consent_state", "last_inbound_at"]
    search_columns = [
        "display_name",
        "profile_name",
        "phone",
        "email",
        "tags",
        "consent_state",
        "marketing_objection",
        "last_inbound_at",
    ]
    show_fieldsets = [
        (
            "Contact",
            {"fields": ["display_name", "profile_name", "phone", "wa_id", "email", "tags"]},
        ),
        (
            "Consent",
            {"fields": ["consent_state", "marketing_objection", "messageable"]},
        ),
        ("Notes", {"fields": ["notes"]}),
        ("Record", {"fields": ["last_inbound_at", "created_at", "updated_at"]}),
    ]
    add_columns = edit_columns = ["display_name", "phone", "email", "notes", "tags"]
    add_form_extra_fields = {"phone": _phone_field()}
    edit_form_extra_fields = {"phone": _phone_field()}
    validators_columns = {
        "email": [ServiceValidator(normalize_email, optional=True)],
    }
    label_columns = {
        "name": "Name",
        "display_name": "Name",
        "profile_name": "WhatsApp profile name",
        "wa_id": "WhatsApp id",
        "consent_state": "Consent",
        "marketing_objection": "Objects to marketing",
        "messageable": "Campaigns allowed",
        "last_inbound_at": "Last inbound",
        "created_at": "Created",
        "updated_at": "Updated",
    }
    description_columns = {
        "display_name": "How your team calls this person.",
        "tags": "Tags group contacts for filters and campaigns.",
    }
    formatters_columns = {
        "tags": _tag_names,
        "consent_state": _state_label,
        "marketing_objection": _yes_no,
        "messageable": _yes_no,
        "profile_name": _blank,
        "email": _blank,
        "notes": _blank,
        "last_inbound_at": ist,
        "created_at": ist,
        "updated_at": ist,
    }

    # -------------------------------------------------------------- add / edit hooks

    def pre_add(self, item: Contact) -> None:
        super().pre_add(item)
        self._complete(item)
        item.consent_state = ConsentState.unknown
        item.marketing_objection = False

    def pre_update(self, item: Contact) -> None:
        self._complete(item)

    @staticmethod
    def _complete(item: Contact) -> None:
        item.wa_id = whatsapp_id(item.phone)
        item.display_name = (item.display_name or "").strip() or None
        item.notes = (item.notes or "").strip() or None

    # ------------------------------------------------------------------- show page

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        pk = self._deserialize_pk_if_composite(pk)
        widgets = self._show(pk)  # 404 outside the tenant
        contact = self.datamodel.get(pk, self._base_filters)
        return self.render_template(
            self.show_template,
            pk=pk,
            title=self.show_title,
            widgets=widgets,
            related_views=self._related_views,
            contact=contact,
            consent_labels=CONSENT_ACTION_LABELS,
        )

    # --------------------------------------------------------------------- consent

    @expose("/<int:pk>/consent", methods=["GET", "POST"])
    @has_access
    def consent(self, pk: int):
        """Record an opt-in (with evidence), opt-out, objection or its withdrawal."""
        contact = self._get_or_404(pk)
        form = ConsentForm()
        if form.validate_on_submit():
            try:
                record_consent(
                    db.session,
                    contact,
                    form.action.data,
                    form.source.data,
                    evidence=form.evidence.data,
                    actor_id=g.user.id,
                )
            except ValidationError as exc:
                db.session.rollback()
                form.evidence.errors = [*form.evidence.errors, str(exc)]
            else:
                db.session.commit()
                flash("Consent recorded.", "success")
                return redirect(url_for(".show", pk=contact.id))
        return self.render_template(
            "woffice/contact_consent.html",
            title=f"Consent of {contact.name}",
            form=form,
            contact=contact,
        )

    @action(
        "opt_out",
        "Opt out",
        "Record an opt-out for the selected contacts? They will get no more campaigns.",
        "fa-ban",
    )
    def opt_out_action(self, items):
        items = items if isinstance(items, list) else [items]
        for item in items:
            if item.consent_state != ConsentState.opted_out:
                record_consent(
                    db.session,
                    item,
                    ConsentAction.opt_out,
                    ConsentSource.tenant_action,
                    actor_id=g.user.id,
                )
        db.session.commit()
        flash(f"{len(items)} contact(s) opted out.", "success")
        return redirect(self.get_redirect())

    # ------------------------------------------------------------------------ tags

    @action("tag", "Add or remove a tag", "", "fa-tags")
    def tag_action(self, items):
        items = items if isinstance(items, list) else [items]
        return redirect(url_for(".tag", rowid=[i.id for i in items]))

    @expose("/tag", methods=["GET", "POST"])
    @has_access
    def tag(self):
        """Add a tag to, or remove it from, the contacts chosen on the list."""
        rowids = request.values.getlist("rowid")
        chosen = [self._get_or_404(pk) for pk in rowids]
        if not chosen:
            abort(404)
        form = TagForm()
        form.tag.choices = [
            (t.id, t.name) for t in db.session.scalars(select(Tag).order_by(Tag.name))
        ]
        if form.validate_on_submit():
            tag = db.session.get(Tag, form.tag.data)
            if tag is None or tag.tenant_id != current_tenant_id():
                abort(404)
            for contact in chosen:
                if form.mode.data == "add" and tag not in contact.tags:
                    contact.tags.append(tag)
                elif form.mode.data == "remove" and tag in contact.tags:
                    contact.tags.remove(tag)
            db.session.commit()
            verb = "added to" if form.mode.data == "add" else "removed from"
            flash(f"Tag {tag.name!r} {verb} {len(chosen)} contact(s).", "success")
            return redirect(url_for(".list"))
        return self.render_template(
            "woffice/contact_tag.html",
            title="Add or remove a tag",
            form=form,
            contacts=chosen,
        )

    # ---------------------------------------------------------------------- export

    @expose("/export.csv")
    @expose("/export.json")
    @has_access
    def export(self):
        """The filtered list as CSV or JSON, streamed; every export is audited (P20)."""
        fmt = "json" if request.path.endswith(".json") else "csv"
        get_filter_args(self._filters, disallow_if_not_in_search=False)
        query = db.session.query(Contact)
        query = self._filters.get_joined_filters(self._base_filters).apply_all(query)
        stmt = query.order_by(None).order_by(Contact.id).statement
        rows = db.session.execute(
            select(func.count()).select_from(stmt.order_by(None).subquery())
        ).scalar()
        audit.record("contacts.exported", format=fmt, rows=rows)
        db.session.commit()
        guard = tenant_roles.permission_guard(g.user.id, EXPORT_PERMISSION)
        if fmt == "json":
            body, mimetype = contact_export.export_json(stmt, guard), "application/json"
        else:
            body, mimetype = contact_export.export_csv(stmt, guard), "text/csv"
        return Response(
            stream_with_context(body),
            mimetype=mimetype,
            headers={"Content-Disposition": f"attachment; filename=contacts.{fmt}"},
        )


def _unique_tag_name(form, field) -> None:
    name = (field.data or "").strip()
    field.data = name
    tenant_id = current_tenant_id()
    if not name or tenant_id is None:
        return
    stmt = select(Tag.id).where(Tag.tenant_id == tenant_id, func.lower(Tag.name) == name.lower())
    if getattr(form, "_id", None):
        stmt = stmt.where(Tag.id != int(form._id))
    if db.session.execute(stmt.limit(1)).first():
        raise WTFormsValidationError("A tag with this name already exists.")


class TagModelView(TenantModelView):
    """A tenant's tags (deleting one removes it from its contacts)."""

    datamodel = SQLAInterface(Tag)
    class_permission_name = "Tags"
    route_base = "/tags"
    list_title = "Tags"
    show_title = "Tag"
    add_title = "New tag"
    edit_title = "Rename tag"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]
    base_order = ("name", "asc")
    list_columns = ["name"]
    show_columns = ["name"]
    add_columns = edit_columns = ["name"]
    search_columns = ["name"]
    validators_columns = {"name": [_unique_tag_name]}
