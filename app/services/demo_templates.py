"""Demo message templates of the demo tenants (idempotent).

The same five templates the local fake Cloud API serves for every WABA by default
(``tests.fakes.cloud_parts.default_templates``; a test keeps the two in step), so the
demo has templates before its first sync, and "Sync from WhatsApp" in ``make run``
then only fills in the WhatsApp ids and the sync time.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.campaign import MessageTemplate, TemplateCategory, TemplateStatus
from app.models.tenant import Tenant

_VARIABLE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")

# (name, category, status, body): language en_US.
DEMO_TEMPLATES = (
    (
        "order_shipped",
        TemplateCategory.utility,
        TemplateStatus.approved,
        "Hi {{1}}, order {{2}} shipped.",
    ),
    (
        "festive_offer",
        TemplateCategory.marketing,
        TemplateStatus.approved,
        "Hi {{customer_name}}, {{discount}} off this week only!",
    ),
    (
        "welcome",
        TemplateCategory.marketing,
        TemplateStatus.approved,
        "Welcome to our store, {{1}}!",
    ),
    ("login_code", TemplateCategory.authentication, TemplateStatus.approved, "Your code is {{1}}."),
    ("old_promo", TemplateCategory.marketing, TemplateStatus.paused, "Sale {{1}}"),
)
DEMO_LANGUAGE = "en_US"


def demo_body(body: str) -> tuple[str, dict[str, Any]]:
    """(parameter format, BODY component) of a demo body, in Graph's listing shape."""
    names = list(dict.fromkeys(_VARIABLE.findall(body)))
    fmt = "POSITIONAL" if all(n.isdigit() for n in names) else "NAMED"
    component: dict[str, Any] = {"type": "BODY", "text": body}
    if names and fmt == "POSITIONAL":
        component["example"] = {"body_text": [[f"example{n}" for n in names]]}
    elif names:
        component["example"] = {
            "body_text_named_params": [{"param_name": n, "example": f"example_{n}"} for n in names]
        }
    return fmt, component


def seed_demo_templates(session: Session, tenant: Tenant) -> int:
    """The demo templates of one tenant that it does not have yet; returns how many."""
    have = set(
        session.scalars(
            select(MessageTemplate.name).where(
                MessageTemplate.tenant_id == tenant.id, MessageTemplate.language == DEMO_LANGUAGE
            )
        )
    )
    created = 0
    for name, category, status, body in DEMO_TEMPLATES:
        if name in have:
            continue
        fmt, component = demo_body(body)
        session.add(
            MessageTemplate(
                tenant_id=tenant.id,
                name=name,
                language=DEMO_LANGUAGE,
                category=category,
                status=status,
                parameter_format=fmt,
                components=[component],
            )
        )
        created += 1
    session.flush()
    return created
