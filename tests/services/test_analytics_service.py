"""Usage analytics: exact figures from seeded messages and recipients, IST day boundaries
(18:30 UTC), ranges, active users, and tenant A never counting tenant B's rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientStatus
from app.models.contact import ConsentState, Contact
from app.models.conversation import Conversation, Message, MessageDirection, MessageStatus
from app.models.user import AppUser
from app.services import analytics
from app.services.exceptions import ValidationError
from app.tenancy import tenant_scope
from tests.services.test_campaigns_service import make_template

SPAN = analytics.DayRange(date(2025, 3, 1), date(2025, 3, 3))
OUT, IN = MessageDirection.outbound, MessageDirection.inbound
S = MessageStatus
R = RecipientStatus

# (UTC time, direction, status) for tenant A; the IST day is in the comment.
A_MESSAGES = [
    (datetime(2025, 2, 28, 18, 29, 59), OUT, S.read),  # 28 Feb 23:59:59 IST: outside
    (datetime(2025, 2, 28, 18, 30, 0), OUT, S.read),  # 1 Mar 00:00 IST
    (datetime(2025, 3, 1, 10, 0), OUT, S.delivered),  # 1 Mar
    (datetime(2025, 3, 1, 18, 29, 59), IN, S.received),  # 1 Mar 23:59:59
    (datetime(2025, 3, 1, 18, 30, 0), OUT, S.failed),  # 2 Mar 00:00
    (datetime(2025, 3, 2, 5, 0), OUT, S.sent),  # 2 Mar
    (datetime(2025, 3, 2, 6, 0), OUT, S.accepted),  # 2 Mar
    (datetime(2025, 3, 2, 7, 0), IN, S.received),  # 2 Mar
    (datetime(2025, 3, 2, 7, 30), IN, S.received),  # 2 Mar
    (datetime(2025, 3, 3, 18, 29, 59), OUT, S.read),  # 3 Mar 23:59:59
    (datetime(2025, 3, 3, 18, 30, 0), OUT, S.read),  # 4 Mar: outside
]
A_DAILY = {
    "read": [1, 0, 1],
    "delivered": [1, 0, 0],
    "sent": [0, 1, 0],
    "accepted": [0, 1, 0],
    "failed": [0, 1, 0],
    "inbound": [1, 2, 0],
}
B_MESSAGES = [
    (datetime(2025, 3, 1, 10, 0), OUT, S.read),
    (datetime(2025, 3, 1, 11, 0), OUT, S.read),
    (datetime(2025, 3, 1, 12, 0), OUT, S.read),
    (datetime(2025, 3, 2, 9, 0), IN, S.received),
]
B_DAILY = {
    "read": [3, 0, 0],
    "delivered": [0, 0, 0],
    "sent": [0, 0, 0],
    "accepted": [0, 0, 0],
    "failed": [0, 0, 0],
    "inbound": [0, 1, 0],
}
# A recipient: (status, attempts, replied).
A_CAMPAIGNS = [
    (
        "Spring sale",
        datetime(2025, 3, 1, 12, 0),
        [
            (R.read, 1, True),
            (R.read, 1, False),
            (R.delivered, 1, False),
            (R.sent, 1, False),
            (R.failed, 1, False),
            (R.skipped, 0, False),
            (R.skipped, 0, False),
            (R.pending, 0, False),
        ],
    ),
    ("Old news", datetime(2025, 2, 28, 18, 29), [(R.read, 1, False), (R.read, 1, False)]),
    ("Boundary", datetime(2025, 2, 28, 18, 30), [(R.failed, 2, False)]),
    ("Never launched", None, [(R.pending, 0, False)]),
]
A_FUNNEL = {
    "recipients": 9,
    "attempted": 6,
    "sent": 4,
    "delivered": 3,
    "read": 2,
    "replied": 1,
    "failed": 2,
    "skipped": 2,
}
SPRING_FUNNEL = {**A_FUNNEL, "recipients": 8, "attempted": 5, "failed": 1}
B_CAMPAIGNS = [
    ("B promo", datetime(2025, 3, 2, 8, 0), [(R.read, 1, True)] * 3),
]
B_FUNNEL = {
    "recipients": 3,
    "attempted": 3,
    "sent": 3,
    "delivered": 3,
    "read": 3,
    "replied": 3,
    "failed": 0,
    "skipped": 0,
}


@dataclass
class World:
    campaigns: dict[str, Campaign]


def seed_tenant(tenant_id: int, digit: int, messages: list, campaigns: list) -> World:
    """Messages on one conversation and campaigns with recipients, for one tenant."""
    with tenant_scope(tenant_id):
        contacts = [
            Contact(
                tenant_id=tenant_id,
                phone=f"+9199{digit}77{i:05d}",
                wa_id=f"9199{digit}77{i:05d}",
                display_name=f"Analytics {i}",
                consent_state=ConsentState.opted_in,
            )
            for i in range(10)
        ]
        db.session.add_all(contacts)
        conversation = Conversation(tenant_id=tenant_id, contact=contacts[0])
        db.session.add(conversation)
        for when, direction, status in messages:
            db.session.add(
                Message(
                    tenant_id=tenant_id,
                    conversation=conversation,
                    direction=direction,
                    status=status,
                    body="hello",
                    created_at=when,
                )
            )
        template = make_template(tenant_id, name=f"analytics_{digit}")
        found = {}
        for name, launched, recipients in campaigns:
            campaign = Campaign(
                tenant_id=tenant_id,
                name=name,
                template_id=template.id,
                status=CampaignStatus.completed if launched else CampaignStatus.draft,
                launched_at=launched,
                recipient_count=len(recipients),
            )
            db.session.add(campaign)
            db.session.flush()
            for (status, attempts, replied), contact in zip(recipients, contacts, strict=False):
                db.session.add(
                    CampaignRecipient(
                        tenant_id=tenant_id,
                        campaign_id=campaign.id,
                        contact_id=contact.id,
                        wa_id=contact.wa_id,
                        status=status,
                        attempts=attempts,
                        replied_at=launched + timedelta(hours=1) if replied else None,
                    )
                )
            found[name] = campaign
        db.session.commit()
    return World(found)


@pytest.fixture
def worlds(tenant_a, tenant_b) -> tuple[World, World]:
    return (
        seed_tenant(tenant_a.id, 1, A_MESSAGES, A_CAMPAIGNS),
        seed_tenant(tenant_b.id, 2, B_MESSAGES, B_CAMPAIGNS),
    )


def _sum(*dailies: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: [sum(v) for v in zip(*(d[k] for d in dailies), strict=True)] for k in A_DAILY}


# ----------------------------------------------------------------------------- ranges


def test_a_range_is_whole_ist_days_as_a_utc_interval():
    assert SPAN.days == [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    assert SPAN.start_utc == datetime(2025, 2, 28, 18, 30)
    assert SPAN.end_utc == datetime(2025, 3, 3, 18, 30)


@pytest.mark.parametrize(("value", "days"), [(None, 30), ("", 30), ("7", 7), ("90", 90)])
def test_parse_range_ends_today(value, days):
    span = analytics.parse_range(value, date(2026, 1, 10))
    assert span.last == date(2026, 1, 10) and len(span.days) == days


@pytest.mark.parametrize("value", ["0", "31", "-7", "abc", "7.5", "1e3", "365"])
def test_parse_range_refuses_other_values(value):
    with pytest.raises(ValidationError, match="Choose a range of 7, 30 or 90 days"):
        analytics.parse_range(value, date(2026, 1, 10))


def test_today_is_the_date_in_india():
    utc = ZoneInfo("UTC")
    assert analytics.today_ist(datetime(2026, 1, 9, 18, 29, tzinfo=utc)) == date(2026, 1, 9)
    assert analytics.today_ist(datetime(2026, 1, 9, 18, 30, tzinfo=utc)) == date(2026, 1, 10)


# --------------------------------------------------------------------- messages per day


def test_messages_per_day_by_status_with_ist_boundaries(worlds, tenant_a):
    daily = analytics.messages_per_day(db.session, tenant_a.id, SPAN)
    assert daily.days == SPAN.days
    assert daily.counts == A_DAILY
    assert daily.outbound == 6 and daily.total("inbound") == 3
    assert daily.rows()[1] == (
        date(2025, 3, 2),
        {"read": 0, "delivered": 0, "sent": 1, "accepted": 1, "failed": 1, "inbound": 2},
    )


def test_tenant_a_never_counts_tenant_b(worlds, tenant_a, tenant_b):
    assert analytics.messages_per_day(db.session, tenant_a.id, SPAN).counts == A_DAILY
    assert analytics.messages_per_day(db.session, tenant_b.id, SPAN).counts == B_DAILY
    assert analytics.campaign_funnels(db.session, tenant_a.id, SPAN).total == A_FUNNEL
    assert analytics.campaign_funnels(db.session, tenant_b.id, SPAN).total == B_FUNNEL


def test_inside_a_tenant_scope_even_an_unscoped_call_sees_one_tenant(worlds, tenant_a):
    """The guarantee layer: a caller passing None by mistake still gets tenant A only."""
    with tenant_scope(tenant_a.id):
        assert analytics.messages_per_day(db.session, None, SPAN).counts == A_DAILY
        assert analytics.campaign_funnels(db.session, None, SPAN).total == A_FUNNEL


def test_the_platform_sees_every_tenant(worlds):
    assert analytics.messages_per_day(db.session, None, SPAN).counts == _sum(A_DAILY, B_DAILY)
    total = analytics.campaign_funnels(db.session, None, SPAN)
    assert total.total == {k: A_FUNNEL[k] + B_FUNNEL[k] for k in A_FUNNEL}
    assert total.campaign_count == 3


def test_an_empty_range_has_a_zero_for_every_day(worlds, tenant_a):
    span = analytics.DayRange(date(2024, 1, 1), date(2024, 1, 7))
    daily = analytics.messages_per_day(db.session, tenant_a.id, span)
    assert daily.counts == {k: [0] * 7 for k in analytics.DAILY_SERIES}


# ---------------------------------------------------------------------- campaign funnels


def test_campaign_funnels_count_campaigns_launched_in_the_range(worlds, tenant_a):
    funnels = analytics.campaign_funnels(db.session, tenant_a.id, SPAN)
    assert funnels.total == A_FUNNEL
    assert funnels.campaign_count == 2
    # Newest launch first; "Old news" (28 Feb IST) and the draft are left out.
    assert [c.name for c in funnels.campaigns] == ["Spring sale", "Boundary"]
    assert funnels.campaigns[0].counts == SPRING_FUNNEL
    assert funnels.campaigns[1].counts["failed"] == 1


def test_the_listed_campaigns_are_capped_but_the_totals_are_not(worlds, tenant_a):
    funnels = analytics.campaign_funnels(db.session, tenant_a.id, SPAN, limit=1)
    assert [c.name for c in funnels.campaigns] == ["Spring sale"]
    assert funnels.total == A_FUNNEL and funnels.campaign_count == 2


def test_funnel_stages_are_the_campaign_screens_stages():
    from app.services.campaigns import STAGES

    assert set(analytics.FUNNEL_STAGES) <= set(STAGES)
    assert analytics.funnel_label("replied") == "Replied"


# ------------------------------------------------------------------ users and tenants


def _users(tenant_id: int) -> list[AppUser]:
    return list(
        db.session.scalars(
            select(AppUser)
            .where(AppUser.tenant_id == tenant_id)
            .order_by(AppUser.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def _active_members(tenant_id: int) -> int:
    return db.session.scalar(
        select(func.count(AppUser.id))
        .where(AppUser.tenant_id == tenant_id, AppUser.active.is_(True))
        .execution_options(skip_tenant_scope=True)
    )


@pytest.fixture
def logins(tenant_a, tenant_b):
    """Tenant A: one user signed in during the range, one just before it; tenant B: one."""
    a_first, a_second = _users(tenant_a.id)[:2]
    a_first.current_login_at = datetime(2025, 3, 5, 9, 0)  # after the range...
    a_first.last_login_at = datetime(2025, 2, 28, 18, 30)  # ...and at its first instant
    a_second.current_login_at = datetime(2025, 2, 28, 18, 29, 59)  # just before
    _users(tenant_b.id)[0].current_login_at = datetime(2025, 3, 2, 12, 0)
    db.session.commit()


def test_active_users_are_those_who_signed_in_during_the_range(logins, tenant_a, tenant_b):
    assert analytics.active_users(db.session, tenant_a.id, SPAN) == (
        1,
        _active_members(tenant_a.id),
    )
    assert analytics.active_users(db.session, tenant_b.id, SPAN)[0] == 1


def test_tenant_usage_has_every_tenants_totals(worlds, logins, tenant_a, tenant_b):
    usages = {u.tenant_id: u for u in analytics.tenant_usage(db.session, SPAN)}
    a, b = usages[tenant_a.id], usages[tenant_b.id]
    assert a.name == tenant_a.name and a.status == "active"
    assert a.messages == {k: sum(v) for k, v in A_DAILY.items()}
    assert a.outbound == 6
    assert b.messages == {k: sum(v) for k, v in B_DAILY.items()}
    assert a.funnel == A_FUNNEL and a.campaigns == 2
    assert b.funnel == B_FUNNEL and b.campaigns == 1
    assert (a.active_users, a.users) == (1, _active_members(tenant_a.id))
    assert (b.active_users, b.users) == (1, _active_members(tenant_b.id))
    # Busiest first: A sent 6, B sent 3.
    order = [u.tenant_id for u in analytics.tenant_usage(db.session, SPAN)]
    assert order.index(tenant_a.id) < order.index(tenant_b.id)


# ------------------------------------------------------------------------------ SQLite


def test_the_same_queries_run_on_sqlite():
    """`make run` uses SQLite: the IST day and the FILTER counts work there too."""
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    tables = [Message.__table__, Campaign.__table__, CampaignRecipient.__table__]
    db.metadata.create_all(engine, tables=tables)
    with Session(engine) as session:
        session.execute(
            insert(Message.__table__),
            [
                {
                    "tenant_id": 1,
                    "conversation_id": 1,
                    "direction": direction.value,
                    "status": status.value,
                    "type": "text",
                    "created_at": when,
                }
                for when, direction, status in A_MESSAGES
            ],
        )
        assert analytics.messages_per_day(session, 1, SPAN).counts == A_DAILY
        assert analytics.messages_per_day(session, 2, SPAN).total("read") == 0
        for n, (name, launched, recipients) in enumerate(A_CAMPAIGNS, start=1):
            session.execute(
                insert(Campaign.__table__).values(
                    id=n, tenant_id=1, name=name, template_id=1, launched_at=launched
                )
            )
            for i, (status, attempts, replied) in enumerate(recipients):
                session.execute(
                    insert(CampaignRecipient.__table__).values(
                        tenant_id=1,
                        campaign_id=n,
                        contact_id=i,
                        wa_id=str(i),
                        status=status.value,
                        attempts=attempts,
                        replied_at=launched if replied else None,
                    )
                )
        funnels = analytics.campaign_funnels(session, 1, SPAN)
        assert funnels.total == A_FUNNEL and funnels.campaign_count == 2
        assert funnels.campaigns[0].counts == SPRING_FUNNEL
        assert analytics.campaign_funnels(session, 2, SPAN).total["recipients"] == 0
    engine.dispose()
