"""The consent log (P9, P20): append-only events; a contact's state is derived from it.

`derive_state` is the rule; `record_consent` appends an event and refreshes the
denormalised ``Contact.consent_state`` / ``Contact.marketing_objection`` (kept for list
filters and campaign queries). Nothing updates or deletes a `ConsentEvent`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.models.contact import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
)
from app.models.mixins import utcnow
from app.services.exceptions import ValidationError

# Opting in needs proof of how the person agreed (WhatsApp Business policy, DPDP Act).
EVIDENCE_REQUIRED = frozenset({ConsentAction.opt_in})


class ConsentLogError(RuntimeError):
    """Something tried to change or remove a consent event."""


@dataclass(frozen=True)
class DerivedConsent:
    state: ConsentState
    marketing_objection: bool

    @property
    def messageable(self) -> bool:
        return self.state == ConsentState.opted_in and not self.marketing_objection


def derive_state(events: Iterable[ConsentEvent]) -> DerivedConsent:
    """Replay ``events`` (any order; applied oldest first) into the contact's state."""
    state, objection = ConsentState.unknown, False
    # Oldest first; an event not yet flushed (no id) counts as the newest of its time.
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.id is None, e.id or 0))
    for ev in ordered:
        action = ConsentAction(ev.action)
        if action in (ConsentAction.opt_in, ConsentAction.resume):
            state = ConsentState.opted_in
        elif action == ConsentAction.opt_out:
            state = ConsentState.opted_out
        elif action == ConsentAction.objection:
            objection = True
        elif action == ConsentAction.objection_withdrawn:
            objection = False
    return DerivedConsent(state, objection)


def record_consent(
    session: Session,
    contact: Contact,
    action: ConsentAction | str,
    source: ConsentSource | str,
    evidence: str | None = None,
    actor_id: int | None = None,
) -> ConsentEvent:
    """Append a consent event for ``contact`` and refresh its derived state."""
    action, source = ConsentAction(action), ConsentSource(source)
    evidence = (evidence or "").strip() or None
    if action in EVIDENCE_REQUIRED and not evidence:
        raise ValidationError("Describe how the person opted in (evidence).", "evidence")
    if contact.id is None:
        session.add(contact)
        session.flush()
    ev = ConsentEvent(
        contact_id=contact.id,
        tenant_id=contact.tenant_id,
        action=action,
        source=source,
        evidence=evidence,
        occurred_at=utcnow(),
        recorded_by_id=actor_id,
    )
    session.add(ev)
    session.flush()
    log = session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == contact.id))
    derived = derive_state(log)
    contact.consent_state = derived.state
    contact.marketing_objection = derived.marketing_objection
    session.flush()
    session.expire(contact, ["consent_events"])
    return ev


def _refuse(_mapper, _connection, _target) -> None:
    raise ConsentLogError("the consent log is append-only: events are never changed")


# Mapper-level guards: any ORM UPDATE or DELETE of a consent event fails at flush.
if not event.contains(ConsentEvent, "before_update", _refuse):
    event.listen(ConsentEvent, "before_update", _refuse)
    event.listen(ConsentEvent, "before_delete", _refuse)
