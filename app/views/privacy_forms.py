"""Forms of the privacy request screens (Compliance and the account page)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional

from app.extensions import db
from app.models.privacy import RequestType, SubjectKind
from app.models.tenant import Tenant
from app.services.privacy import MAX_EXTENSION_DAYS
from app.services.privacy_intake import ABOUT_ACCOUNT, ABOUT_CONTACT, ABOUT_ME

TYPE_LABELS = {
    RequestType.access: "Access (a copy of the data)",
    RequestType.correction: "Correction",
    RequestType.deletion: "Deletion",
    RequestType.portability: "Portability (export)",
    RequestType.objection: "Objection (stop processing)",
}
SUBJECT_LABELS = {
    SubjectKind.user: "An account user",
    SubjectKind.tenant: "A whole tenant (account closure)",
    SubjectKind.contact: "A contact of a tenant",
}


def tenant_choices() -> list[tuple[str, str]]:
    tenants = db.session.scalars(
        select(Tenant).order_by(Tenant.name).execution_options(skip_tenant_scope=True)
    )
    return [("", "— none (platform staff) —")] + [
        (str(t.id), f"{t.name} ({t.slug})") for t in tenants
    ]


class LogRequestForm(FlaskForm):
    """A request received by email with the subject "Privacy Request" (P21)."""

    request_type = SelectField(
        "Type", choices=[(t.value, label) for t, label in TYPE_LABELS.items()]
    )
    subject_kind = SelectField(
        "About", choices=[(k.value, label) for k, label in SUBJECT_LABELS.items()]
    )
    tenant = SelectField("Tenant", choices=[], validate_choice=False)
    subject_email = StringField(
        "User's email",
        validators=[Optional(), Length(max=320)],
        description="For a user: the account's email (no tenant: platform staff).",
    )
    subject_phone = StringField(
        "Contact's phone",
        validators=[Optional(), Length(max=40)],
        description="For a contact: the number in any format.",
    )
    requester_email = EmailField(
        "Requester's email",
        validators=[DataRequired("Enter the sender's email."), Email(), Length(max=320)],
    )
    requester_name = StringField("Requester's name", validators=[Optional(), Length(max=200)])
    received_at = DateTimeLocalField(
        "Received at (IST)",
        format="%Y-%m-%dT%H:%M",
        validators=[DataRequired("When did the email arrive (IST)?")],
        description="The email's arrival time: the 7 business days count from its IST date.",
    )
    identity_verified = BooleanField(
        "The requester's identity is already verified",
        description="Unticked: the request waits in 'identity pending' until you confirm it.",
    )
    details = TextAreaField("Details", validators=[Optional(), Length(max=5000)])


class InAppRequestForm(FlaskForm):
    """A signed-in tenant user's request from the account page."""

    request_type = SelectField(
        "I want", choices=[(t.value, label) for t, label in TYPE_LABELS.items()]
    )
    # Every value reaches the service, which explains what this user may not ask.
    about = SelectField(
        "About", choices=[(ABOUT_ME, "Me (my user account)")], validate_choice=False
    )
    contact_phone = StringField(
        "Contact's phone",
        validators=[Optional(), Length(max=40)],
        description="Only for a request on behalf of a contact.",
    )
    details = TextAreaField("Details", validators=[Optional(), Length(max=5000)])

    def offer_admin_choices(self, tenant_name: str, *, account: bool, contact: bool) -> None:
        """Closing the account is a Tenant Admin's; filing for a contact is granted by
        the "file requests about contacts" permission (issue 8's role matrix)."""
        choices = [(ABOUT_ME, "Me (my user account)")]
        if account:
            choices.append(
                (ABOUT_ACCOUNT, f"Close the account: delete all of {tenant_name}'s data")
            )
        if contact:
            choices.append((ABOUT_CONTACT, "A contact of our business (on their behalf)"))
        self.about.choices = choices


class ExtendForm(FlaskForm):
    days = IntegerField(
        "Business days", validators=[DataRequired(), NumberRange(1, MAX_EXTENSION_DAYS)]
    )
    reason = StringField("Reason", validators=[DataRequired("An extension needs a reason.")])


class ReasonForm(FlaskForm):
    reason = TextAreaField("Reason", validators=[Optional(), Length(max=2000)])


class CorrectionForm(FlaskForm):
    where = StringField(
        "Object corrected",
        validators=[Optional(), Length(max=200)],
        description='e.g. "Contact #42" or "User #7".',
    )
    fields = StringField(
        "Fields corrected",
        validators=[Optional(), Length(max=500)],
        description="Field names, comma-separated (e.g. display_name, email).",
    )
    note = TextAreaField("Note", validators=[Optional(), Length(max=2000)])
