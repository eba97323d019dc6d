"""The audit trail: automatic capture, one small API, and a verifiable hash chain.

* **Automatic.** An ``after_flush`` hook turns every insert, update and delete of every
  model (unless it sets ``__audit__ = False``) into an event with the names of the fields
  changed. Values are kept only for fields that are neither personal data
  (``__personal_fields__``) nor secrets (``__secret_fields__``): a personal field is
  recorded as changed with a keyed hash (HMAC) of its new value, a secret as changed.
  So a later erasure never has to rewrite history.
* **One API** for everything else: ``record(action, obj=None, **details)``.
* **Context** on every event: time (UTC), actor (id and a label frozen at the time,
  made of role names, never a name or email), tenant, IP, user agent, request id, job id.
* **Hash chain.** Events are appended to a chain: ``tenant:<id>`` for a tenant's
  transaction, ``platform`` otherwise. Each event stores its sequence number, the hash of
  the previous event and its own hash over its content. `verify_chains` recomputes them.

Concurrency: a transaction locks the head row of its chain (``SELECT ... FOR UPDATE``)
when it writes its first event and keeps the lock until it commits. Writers of one chain
are therefore ordered, while different tenants' chains proceed in parallel; every event
of a transaction goes to the one chain it chose first, so a transaction never waits on
two chains (no deadlock between chains).
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import event, insert, inspect, select, update
from sqlalchemy.orm import Session

from app.models.audit import AuditChainHead, AuditEvent
from app.models.mixins import audit_name, utcnow
from app.services.identity import hash_identifier
from app.tenancy import current_tenant_id

GENESIS = "0" * 64
PLATFORM_CHAIN = "platform"
# Bookkeeping columns that change on every save or login: not worth an event.
IGNORED_FIELDS = frozenset(
    {
        "updated_at",
        "changed_on",
        "changed_by_fk",
        "current_login_at",
        "last_login_at",
        "current_login_ip",
        "last_login_ip",
        "login_count",
        "last_login",
        "fail_login_count",
        "last_used_on",  # API keys: each use is its own api_key.used event
    }
)
ALWAYS_SECRET = frozenset(
    {
        "password",
        "fs_uniquifier",
        "tf_totp_secret",
        "tf_phone_number",
        "mf_recovery_codes",
        "us_totp_secrets",
        "key_hash",
        "lookup_hash",
    }
)


@dataclass
class JobContext:
    job_id: str | None
    actor_id: int | None = None


_job_context: ContextVar[JobContext | None] = ContextVar("woffice_audit_job", default=None)


def set_job_context(job_id: str | None, actor_id: int | None = None):
    """Mark the running code as a job (its events carry the job id); returns a reset token."""
    return _job_context.set(JobContext(job_id, actor_id))


def reset_job_context(token) -> None:
    _job_context.reset(token)


# ----------------------------------------------------------------------- the context


def request_id() -> str | None:
    """The id of the current request (from X-Request-ID when sane, else generated)."""
    if not has_request_context():
        return None
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = (
            incoming if 8 <= len(incoming) <= 64 and incoming.isprintable() else (uuid.uuid4().hex)
        )
    return g.request_id


def actor_label(user: Any) -> str:
    """ "Tenant Admin #12": roles and id, frozen at the time; never personal data."""
    if user is None or not getattr(user, "is_authenticated", False):
        return "anonymous"
    roles = ", ".join(sorted(r.name for r in getattr(user, "roles", []))) or "no role"
    return f"{roles} #{user.id}"[:120]


def _context() -> dict[str, Any]:
    job = _job_context.get()
    ctx: dict[str, Any] = {
        "actor_id": None,
        "actor_label": "system",
        "ip": None,
        "user_agent": None,
        "request_id": None,
        "job_id": job.job_id if job else None,
    }
    if job is not None:
        ctx["actor_id"] = job.actor_id
        ctx["actor_label"] = f"job{'' if job.actor_id is None else f' for #{job.actor_id}'}"
    if has_request_context():
        if job is None:  # an inline job keeps its own actor; the request gives the rest
            user = current_user._get_current_object() if current_user else None
            if user is not None and getattr(user, "is_authenticated", False):
                ctx["actor_id"] = user.id
            ctx["actor_label"] = actor_label(user)
        ctx["ip"] = request.remote_addr
        ctx["user_agent"] = (request.headers.get("User-Agent") or "")[:300] or None
        ctx["request_id"] = request_id()
    return ctx


# ------------------------------------------------------------------- values and hashes


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a column value (what is stored is what is hashed)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float | Decimal):
        return str(value)
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return str(value)


def event_hash(row: dict[str, Any]) -> str:
    """SHA-256 over an event's content and the previous hash (canonical JSON)."""
    content = {k: row.get(k) for k in HASHED_FIELDS}
    occurred = content["occurred_at"]
    content["occurred_at"] = occurred.isoformat() if isinstance(occurred, datetime) else occurred
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


HASHED_FIELDS = (
    "chain",
    "seq",
    "occurred_at",
    "actor_id",
    "actor_label",
    "tenant_id",
    "action",
    "object_type",
    "object_id",
    "fields",
    "changes",
    "details",
    "ip",
    "user_agent",
    "request_id",
    "job_id",
    "prev_hash",
)


# ------------------------------------------------------------------------ appending


def _chain_for(session: Session, tenant_id: int | None) -> str:
    chain = session.info.get("audit_chain")
    if chain is None:
        scope = current_tenant_id()
        owner = scope if scope is not None else tenant_id
        chain = f"tenant:{owner}" if owner is not None else PLATFORM_CHAIN
        session.info["audit_chain"] = chain
    return chain


def _lock_head(conn, chain: str) -> tuple[int, str]:
    table = AuditChainHead.__table__
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    conn.execute(
        dialect_insert(table)
        .values(chain=chain, seq=0, last_hash=GENESIS)
        .on_conflict_do_nothing(index_elements=["chain"])
    )
    row = conn.execute(
        select(table.c.seq, table.c.last_hash).where(table.c.chain == chain).with_for_update()
    ).one()
    return int(row.seq), row.last_hash


def append_events(session: Session, events: list[dict[str, Any]]) -> None:
    """Chain and insert events within the session's current transaction."""
    if not events:
        return
    conn = session.connection()
    chain = _chain_for(session, events[0].get("tenant_id"))
    seq, last_hash = _lock_head(conn, chain)
    context = _context()
    rows = []
    for item in events:
        seq += 1
        row = {
            **context,
            **item,
            "chain": chain,
            "seq": seq,
            "prev_hash": last_hash,
            "occurred_at": utcnow(),
        }
        for key in HASHED_FIELDS:
            row.setdefault(key, None)
        row["hash"] = last_hash = event_hash(row)
        rows.append(row)
    conn.execute(insert(AuditEvent.__table__), rows)
    conn.execute(
        update(AuditChainHead.__table__)
        .where(AuditChainHead.__table__.c.chain == chain)
        .values(seq=seq, last_hash=last_hash)
    )


def object_type(obj_or_cls: Any) -> str:
    """The audit name of a model instance or class."""
    return audit_name(obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls))


def object_id(obj: Any) -> str | None:
    """The primary key as text (also for rows inserted by the flush in progress, which
    have their key but no identity yet)."""
    state = inspect(obj)
    key = state.identity or state.mapper.primary_key_from_instance(obj)
    values = [v for v in (key or ()) if v is not None]
    return "-".join(str(v) for v in values) or None


def _object_tenant(obj: Any) -> int | None:
    from app.models.tenant import Tenant

    if isinstance(obj, Tenant):
        return obj.id
    return getattr(obj, "tenant_id", None) if hasattr(obj, "tenant_id") else None


def record(
    action: str,
    obj: Any = None,
    *,
    session: Session | None = None,
    tenant_id: int | None = None,
    **details: Any,
) -> None:
    """Record a business or security event (exports, job runs, webhook rejections...).

    ``details`` must not hold personal data: pass counts, ids, hashes, field names.
    """
    from app.extensions import db

    item: dict[str, Any] = {"action": action, "details": _plain_dict(details) or None}
    if hasattr(obj, "_get_current_object"):  # e.g. FST signals send current_user
        obj = obj._get_current_object()
    if obj is not None:
        item["object_type"] = object_type(obj)
        item["object_id"] = object_id(obj)
        item["tenant_id"] = _object_tenant(obj)
    if tenant_id is not None:
        item["tenant_id"] = tenant_id
    if item.get("tenant_id") is None:
        item["tenant_id"] = current_tenant_id()
    append_events(session or db.session(), [item])


def _plain_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in values.items()}


# -------------------------------------------------------------------- ORM capture


def _field_sets(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    personal = frozenset(getattr(cls, "__personal_fields__", ()))
    secret = frozenset(getattr(cls, "__secret_fields__", ())) | ALWAYS_SECRET
    return personal, secret


def _describe(
    key: str, new: Any, old: Any, personal: frozenset, secret: frozenset, include_old: bool
) -> Any:
    if key in secret:
        return {"changed": True}
    if key in personal:
        return {
            "changed": True,
            "hmac": hash_identifier(str(new)) if new not in (None, "") else None,
        }
    if include_old:
        return {"old": _plain(old), "new": _plain(new)}
    return {"new": _plain(new)}


def _changes(obj: Any, action: str) -> tuple[list[str], dict[str, Any], list[dict]]:
    state = inspect(obj)
    personal, secret = _field_sets(type(obj))
    fields: list[str] = []
    changes: dict[str, Any] = {}
    extra: list[dict] = []
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in IGNORED_FIELDS:
            continue
        hist = state.attrs[key].history
        if action == "create":
            new = getattr(obj, key)
            if new is None:
                continue
            fields.append(key)
            changes[key] = _describe(key, new, None, personal, secret, include_old=False)
        elif action == "update" and hist.has_changes():
            new = hist.added[0] if hist.added else None
            old = hist.deleted[0] if hist.deleted else None
            if _plain(new) == _plain(old) or (new in (None, "") and old in (None, "")):
                continue
            fields.append(key)
            changes[key] = _describe(key, new, old, personal, secret, include_old=True)
    for rel in state.mapper.relationships:
        if not rel.uselist or rel.secondary is None or action == "delete":
            continue
        hist = state.attrs[rel.key].history
        if not (hist.added or hist.deleted):
            continue
        added = sorted(_ref(x) for x in hist.added)
        removed = sorted(_ref(x) for x in hist.deleted)
        fields.append(rel.key)
        changes[rel.key] = {"added": added, "removed": removed}
        if rel.key == "roles":
            extra += [{"action": "role.granted", "details": {"role": r}} for r in added]
            extra += [{"action": "role.revoked", "details": {"role": r}} for r in removed]
    return fields, changes, extra


def _ref(obj: Any) -> str:
    """How a linked row appears in an event: its name, or "type#id" when its text could
    be personal data (e.g. a user's name)."""
    if getattr(type(obj), "__personal_fields__", ()):
        return f"{object_type(obj)}#{object_id(obj) or '?'}"
    return str(obj)


def _audited(obj: Any) -> bool:
    return getattr(type(obj), "__audit__", True) is not False


def _capture(session: Session, _flush_context: Any) -> None:
    events: list[dict[str, Any]] = []
    for action, objects in (
        ("create", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in objects:
            if not _audited(obj):
                continue
            if action == "update" and not session.is_modified(obj, include_collections=True):
                continue
            fields, changes, extra = _changes(obj, action)
            if action == "update" and not fields:
                continue
            base = {
                "object_type": object_type(obj),
                "object_id": object_id(obj),
                "tenant_id": _object_tenant(obj),
            }
            events.append(
                {**base, "action": action, "fields": fields or None, "changes": changes or None}
            )
            events += [{**base, **e, "details": e.get("details")} for e in extra]
    append_events(session, events)


def _reset_chain(session: Session, *_: Any) -> None:
    session.info.pop("audit_chain", None)


def install(session_class: type[Session]) -> None:
    """Attach automatic capture to a Session class (idempotent)."""
    if not event.contains(session_class, "after_flush", _capture):
        event.listen(session_class, "after_flush", _capture)
        event.listen(session_class, "after_commit", _reset_chain)
        event.listen(session_class, "after_rollback", _reset_chain)


# ----------------------------------------------------------------------- verifying


@dataclass
class ChainProblem:
    chain: str
    seq: int
    event_id: int | None
    reason: str

    def __str__(self) -> str:
        return (
            f"chain {self.chain!r}: broken at seq {self.seq} "
            f"(event id {self.event_id}): {self.reason}"
        )


def _event_row(ev: Any) -> dict[str, Any]:
    return {k: ev[k] for k in HASHED_FIELDS}


def verify_chains(session: Session, batch: int = 1000) -> tuple[int, list[ChainProblem]]:
    """Walk every chain; return (events checked, the first broken link of each chain)."""
    problems: list[ChainProblem] = []
    checked = 0
    heads = {h.chain: h for h in session.scalars(select(AuditChainHead))}
    chains = set(heads) | set(session.scalars(select(AuditEvent.chain).distinct()))
    for chain in sorted(chains):
        expected_seq, prev = 1, GENESIS
        problem = None
        for ev in _iter_chain(session, chain, batch):
            checked += 1
            if ev["seq"] != expected_seq:
                problem = ChainProblem(
                    chain, expected_seq, ev["id"], f"sequence jumps to {ev['seq']}"
                )
            elif ev["prev_hash"] != prev:
                problem = ChainProblem(
                    chain, ev["seq"], ev["id"], "previous-hash link does not match"
                )
            elif event_hash(_event_row(ev)) != ev["hash"]:
                problem = ChainProblem(
                    chain, ev["seq"], ev["id"], "content does not match its hash"
                )
            if problem:
                break
            expected_seq, prev = expected_seq + 1, ev["hash"]
        head = heads.get(chain)
        if (
            problem is None
            and head is not None
            and (head.seq != expected_seq - 1 or head.last_hash != prev)
        ):
            problem = ChainProblem(chain, expected_seq, None, "events are missing at the end")
        if problem:
            problems.append(problem)
    return checked, problems


def _iter_chain(session: Session, chain: str, batch: int) -> Iterator[Any]:
    """The chain's rows in order, as plain mappings (nothing kept in the session)."""
    table = AuditEvent.__table__
    last = 0
    while True:
        rows = (
            session.execute(
                select(table)
                .where(table.c.chain == chain, table.c.seq > last)
                .order_by(table.c.seq)
                .limit(batch)
            )
            .mappings()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1]["seq"]
