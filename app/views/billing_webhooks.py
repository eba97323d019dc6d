"""Dodo Payments webhooks: ``POST /webhooks/dodo`` (Standard Webhooks, reference B).

Verify the signature over the raw body (`app.services.dodo.verify`), store the
allow-listed event once per ``webhook-id``, have `process_billing_event` run after the
commit, answer 200 at once (Dodo gives up after 15 s). A refused delivery answers 401
(400 for a signed body that is not an event), is audited and stores nothing.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.extensions import db
from app.jobs.billing import schedule_events
from app.services import audit, dodo

dodo_webhooks = Blueprint("dodo_webhooks", __name__, url_prefix="/webhooks")


@dodo_webhooks.post("/dodo")
def receive() -> Response:
    """A signed Dodo event: verify, store once, acknowledge; the job applies it."""
    raw = request.get_data(cache=False)
    headers = {name: request.headers.get(name, "") for name in dodo.HEADERS}
    try:
        event = dodo.verify(raw, headers)
    except dodo.DodoRejected as exc:
        db.session.rollback()
        audit.record("webhook.rejected", reason=exc.reason, source="dodo", size=len(raw))
        db.session.commit()
        return Response("Refused", status=exc.status, mimetype="text/plain")
    row = dodo.store(headers["webhook-id"], event)
    if row is not None:
        schedule_events()
    db.session.commit()
    return Response("ok" if row is not None else "duplicate", status=200, mimetype="text/plain")
