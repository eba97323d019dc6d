"""The public privacy request form and policy page (P21, P22): no account needed.

A request is opened only when the code emailed to the requester is confirmed
(`app.services.privacy_submissions`). Pages use the public layout and local assets only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import RadioField, StringField, SubmitField, TextAreaField

from app.extensions import db
from app.jobs import enqueue_after_commit
from app.jobs.mail import send_email
from app.models.mixins import utcnow
from app.models.privacy import PolicyVersion
from app.services import privacy_submissions as submissions
from app.services.privacy_submissions import (
    SubmissionClosedError,
    SubmissionCodeError,
    SubmissionInvalidError,
    SubmissionNotFoundError,
    SubmissionRateLimitedError,
)

privacy_public = Blueprint("privacy_public", __name__)


class PrivacyRequestForm(FlaskForm):
    # No validators here: the service checks every field (one place for the rules).
    request_type = RadioField(
        "What are you asking for?",
        choices=list(submissions.REQUEST_TYPES.items()),
        validate_choice=False,
    )
    who = RadioField(
        "Who are you?",
        choices=[
            (key, label[0].upper() + label[1:]) for key, (_, label) in submissions.WHO.items()
        ],
        validate_choice=False,
    )
    business = StringField("The business (its name or Woffice address)")
    name = StringField("Your name (optional)")
    email = StringField("Your email address")
    phone = StringField("Your phone or WhatsApp number (optional)")
    details = TextAreaField("Your request")
    submit = SubmitField("Send me a confirmation code")


class ConfirmCodeForm(FlaskForm):
    code = StringField("Confirmation code")
    submit = SubmitField("Confirm my request")


@privacy_public.route("/privacy-request", methods=["GET", "POST"])
def request_form():
    """The form; a valid submission emails a code and moves to the code page."""
    form = PrivacyRequestForm()
    if form.validate_on_submit():
        try:
            sent = submissions.submit(
                form.data,
                request.remote_addr,
                confirm_url=lambda t: url_for(".confirm", token=t, _external=True),
            )
        except SubmissionInvalidError as exc:
            for name, message in exc.errors.items():
                getattr(form, name).errors = [message]
        except SubmissionRateLimitedError as exc:
            db.session.commit()  # keep the audit event
            page = render_template(
                "woffice/privacy_request_limited.html", message=str(exc), title="Please wait"
            )
            return page, 429, {"Retry-After": str(exc.retry_after)}
        else:
            enqueue_after_commit("mail", send_email, sent.email)
            db.session.commit()
            flash(
                f"We sent a 6-digit code to {sent.submission.email}. Enter it below to "
                "confirm your request.",
                "success",
            )
            return redirect(url_for(".confirm", token=sent.submission.token))
    return render_template(
        "woffice/privacy_request.html",
        form=form,
        title="Privacy request",
        max_details=submissions.MAX_DETAILS,
    )


@privacy_public.route("/privacy-request/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """Enter the emailed code; the request is opened only if it is right."""
    try:
        submission = submissions.find(token)
    except SubmissionNotFoundError as exc:
        return _closed(str(exc), 404)
    if submission.confirmed_at is not None and request.method == "GET":
        return redirect(url_for(".done", token=token))
    form = ConfirmCodeForm()
    if form.validate_on_submit():
        try:
            opened = submissions.confirm(token, form.code.data or "")
        except SubmissionCodeError as exc:
            db.session.commit()  # the failed attempt counts
            form.code.errors = [str(exc)]
        except SubmissionClosedError as exc:
            db.session.commit()
            return _closed(str(exc), 410)
        else:
            enqueue_after_commit("mail", send_email, submissions.receipt_email(opened))
            db.session.commit()
            return redirect(url_for(".done", token=token))
    return render_template(
        "woffice/privacy_request_confirm.html",
        form=form,
        submission=submission,
        title="Confirm your privacy request",
    )


@privacy_public.route("/privacy-request/done/<token>")
def done(token: str):
    """The registered request: its reference and deadline."""
    try:
        submission = submissions.find(token)
    except SubmissionNotFoundError as exc:
        return _closed(str(exc), 404)
    opened = submissions.confirmed_request(submission)
    if opened is None:
        return redirect(url_for(".confirm", token=token))
    return render_template(
        "woffice/privacy_request_done.html", privacy_request=opened, title="Request registered"
    )


@privacy_public.route("/privacy-policy")
def policy():
    """The privacy policy in force: the latest published version, else the shipped text."""
    version = db.session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.published_at.is_not(None), PolicyVersion.effective_at <= utcnow())
        .order_by(PolicyVersion.effective_at.desc())
        .limit(1)
    ).first()
    if version is not None:
        text = version.full_text
    else:
        text = (Path(current_app.static_folder) / "privacy-policy.txt").read_text("utf-8")
    return render_template(
        "woffice/privacy_policy.html", policy_text=text, version=version, title="Privacy policy"
    )


def _closed(message: str, code: int):
    page = render_template(
        "woffice/privacy_request_closed.html", message=message, title="Privacy request"
    )
    return page, code
