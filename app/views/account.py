"""My account: profile, password, two-factor, recent sign-ins (P5, P15)."""

from __future__ import annotations

from flask import current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

from app.extensions import db
from app.services import login_throttle, privacy_intake
from app.services.exceptions import WofficeError
from app.services.phones import normalize_phone
from app.views._format import ist
from app.views._forms import ServiceValidator
from app.views.privacy_forms import InAppRequestForm

CONTACT_REQUEST_PERMISSION = ("can_contact_request", "MyAccountView")


class ProfileForm(FlaskForm):
    first_name = StringField("First name", validators=[DataRequired(), Length(max=64)])
    last_name = StringField("Last name", validators=[DataRequired(), Length(max=64)])
    phone = StringField("Phone", validators=[ServiceValidator(normalize_phone, optional=True)])
    submit = SubmitField("Save profile")


def browser_label(user_agent: str | None) -> str:
    """A short "Browser on OS" label from a User-Agent header."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for key, name in (
                ("Edg/", "Edge"),
                ("OPR/", "Opera"),
                ("HeadlessChrome", "Headless Chrome"),
                ("Chrome/", "Chrome"),
                ("Firefox/", "Firefox"),
                ("Safari/", "Safari"),
                ("python-requests", "script"),
                ("Werkzeug", "test client"),
            )
            if key in ua
        ),
        "Unknown browser",
    )
    system = next(
        (
            name
            for key, name in (
                ("Windows", "Windows"),
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("Mac OS", "macOS"),
                ("Linux", "Linux"),
            )
            if key in ua
        ),
        "unknown OS",
    )
    return f"{browser} on {system}"


class MyAccountView(BaseView):
    """Every signed-in user's own page."""

    route_base = "/account"
    default_view = "index"
    # can_contact_request has no endpoint: it lets the privacy form file for a contact.
    base_permissions = ["can_index", "can_privacy_request", "can_contact_request"]

    @expose("/", methods=["GET", "POST"])
    @has_access
    def index(self):
        user = g.user
        form = ProfileForm(obj=user)
        if request.method == "POST" and form.validate_on_submit():
            user.first_name = form.first_name.data.strip()
            user.last_name = form.last_name.data.strip()
            user.phone = form.phone.data
            db.session.commit()
            flash("Profile saved.", "success")
            return redirect(url_for("MyAccountView.index"))
        return self._render(form, _privacy_form(user))

    def _render(self, form: FlaskForm, privacy_form: InAppRequestForm | None):
        user = g.user
        logins = login_throttle.recent_logins(db.session, user.id)
        return self.render_template(
            "woffice/account.html",
            form=form,
            user=user,
            logins=logins,
            browser_label=browser_label,
            title="My account",
            privacy_form=privacy_form,
            privacy_requests=privacy_intake.requests_of(user),
        )

    @expose("/privacy-request", methods=["POST"])
    @has_access
    def privacy_request(self):
        """A signed-in tenant user's privacy request (P20): identity verified by sign-in."""
        user = g.user
        privacy_form = _privacy_form(user)
        if privacy_form is None:
            flash("Platform staff have no tenant account to make a request about.", "warning")
            return redirect(url_for("MyAccountView.index"))
        if privacy_form.validate_on_submit():
            try:
                found = privacy_intake.file_in_app(
                    user,
                    request_type=privacy_form.request_type.data,
                    about=privacy_form.about.data,
                    contact_phone=privacy_form.contact_phone.data or "",
                    details=privacy_form.details.data or "",
                    may_file_for_contacts=_may_file_for_contacts(),
                )
            except WofficeError as exc:
                db.session.rollback()
                flash(str(exc), "danger")
            else:
                db.session.commit()
                flash(
                    f"Privacy request {found.reference} received; we answer by "
                    f"{ist(found.due_at)}.",
                    "success",
                )
                return redirect(url_for("MyAccountView.index") + "#privacy-requests")
        return self._render(ProfileForm(obj=user), privacy_form)


def _privacy_form(user) -> InAppRequestForm | None:
    """The account page's privacy request form (tenant users only)."""
    if user.tenant_id is None:
        return None
    privacy_form = InAppRequestForm()
    privacy_form.offer_admin_choices(
        user.tenant.name,
        account=privacy_intake.is_tenant_admin(user),
        contact=_may_file_for_contacts(),
    )
    return privacy_form


def _may_file_for_contacts() -> bool:
    return bool(current_app.appbuilder.sm.has_access(*CONTACT_REQUEST_PERMISSION))
