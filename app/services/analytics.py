"""Usage analytics (issue 5, P3): messages per day by status, campaign funnels, and for
platform staff the same per tenant plus active users.

Days are Asia/Kolkata calendar days (the product shows IST, the database stores naive
UTC). IST is a fixed UTC+05:30 (no daylight saving since 1945), so a row's IST day is
``date(created_at + 5h30)``, computed in SQL by `ist_day` on PostgreSQL and SQLite
alike, and a range of IST days is the UTC interval [start 00:00 IST, end+1 00:00 IST),
which the ``(tenant_id, created_at)`` index serves.

Every query takes ``tenant_id`` explicitly: an int scopes it to that tenant, ``None``
means every tenant and is for the platform view only. Inside a tenant request the
tenancy guard (app/tenancy.py) scopes the same ORM statements a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Select, and_, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from app.models.campaign import Campaign, CampaignRecipient
from app.models.conversation import Message, MessageDirection
from app.models.tenant import Tenant
from app.models.user import AppUser
from app.services.campaigns import STAGE_LABELS, STAGES
from app.services.exceptions import ValidationError

IST = ZoneInfo("Asia/Kolkata")
IST_OFFSET_MINUTES = 330
RANGES = (7, 30, 90)  # days a user can choose
DEFAULT_RANGE = 30
# The funnel shown: the campaign screen's stages, minus "waiting" and "cancelled".
FUNNEL_STAGES = ("attempted", "sent", "delivered", "read", "replied", "failed", "skipped")
# Daily series: every outbound message by its current status, then the inbound ones.
DAILY_SERIES = ("read", "delivered", "sent", "accepted", "failed", "inbound")
DAILY_LABELS = {
    "read": "Read",
    "delivered": "Delivered",
    "sent": "Sent",
    "accepted": "Accepted",
    "failed": "Failed",
    "inbound": "Received",
}
MAX_CAMPAIGNS = 20  # per-campaign funnels listed (the totals cover every campaign)


class ist_day(FunctionElement):  # noqa: N801 - reads as the SQL function it renders
    """The Asia/Kolkata calendar day of a naive-UTC timestamp column."""

    type = Date()
    inherit_cache = True


@compiles(ist_day)
def _ist_day_default(element: ist_day, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(({column} + INTERVAL '{IST_OFFSET_MINUTES} minutes') AS DATE)"


@compiles(ist_day, "sqlite")
def _ist_day_sqlite(element: ist_day, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"date({column}, '+{IST_OFFSET_MINUTES} minutes')"


def _as_date(value: date | str) -> date:
    """SQLite returns the day as text, PostgreSQL as a date."""
    return value if isinstance(value, date) else date.fromisoformat(value)


# ---------------------------------------------------------------- ranges


@dataclass(frozen=True)
class DayRange:
    """Consecutive IST calendar days, both ends included."""

    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    @property
    def start_utc(self) -> datetime:
        """00:00 IST of the first day, as naive UTC."""
        return _ist_midnight_utc(self.first)

    @property
    def end_utc(self) -> datetime:
        """00:00 IST of the day after the last, as naive UTC (exclusive)."""
        return _ist_midnight_utc(self.last + timedelta(days=1))

    def within(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.start_utc, column < self.end_utc)


def _ist_midnight_utc(day: date) -> datetime:
    local = datetime.combine(day, time(0), tzinfo=IST)
    return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def today_ist(now: datetime | None = None) -> date:
    """Today's date in India (``now``: an aware datetime, for tests)."""
    return (now or datetime.now(IST)).astimezone(IST).date()


def parse_range(value: str | None, today: date) -> DayRange:
    """The last ``value`` IST days up to ``today`` (default 30).

    :raises ValidationError: when ``value`` is not one of `RANGES`.
    """
    if value is None or value == "":
        days = DEFAULT_RANGE
    else:
        try:
            days = int(value)
        except ValueError:
            days = -1
        if days not in RANGES:
            choices = ", ".join(str(r) for r in RANGES[:-1]) + f" or {RANGES[-1]}"
            raise ValidationError(f"Choose a range of {choices} days.", "days")
    return DayRange(today - timedelta(days=days - 1), today)


def _tenant(stmt: Select, column: Any, tenant_id: int | None) -> Select:
    return stmt if tenant_id is None else stmt.where(column == tenant_id)


# ---------------------------------------------------------------- messages per day


def _bucket(direction: str, status: str) -> str | None:
    if direction == MessageDirection.inbound.value:
        return "inbound"
    return status if status in DAILY_SERIES else None


@dataclass
class DailyMessages:
    """Per IST day: outbound messages by current status, and inbound messages."""

    days: list[date]
    counts: dict[str, list[int]]  # series key (`DAILY_SERIES`) -> one count per day

    def total(self, key: str) -> int:
        return sum(self.counts[key])

    @property
    def outbound(self) -> int:
        return sum(self.total(k) for k in DAILY_SERIES if k != "inbound")

    def rows(self) -> list[tuple[date, dict[str, int]]]:
        """(day, {series: count}) per day, for the data table."""
        return [
            (day, {k: self.counts[k][i] for k in DAILY_SERIES}) for i, day in enumerate(self.days)
        ]


def messages_per_day(session: Session, tenant_id: int | None, span: DayRange) -> DailyMessages:
    """Messages created on each IST day of ``span``, by direction and current status."""
    day = ist_day(Message.created_at).label("day")
    stmt = (
        select(day, Message.direction, Message.status, func.count().label("n"))
        .where(span.within(Message.created_at))
        .group_by(day, Message.direction, Message.status)
    )
    stmt = _tenant(stmt, Message.tenant_id, tenant_id)
    index = {d: i for i, d in enumerate(span.days)}
    counts = {key: [0] * len(index) for key in DAILY_SERIES}
    for row in session.execute(stmt):
        key = _bucket(_value(row.direction), _value(row.status))
        position = index.get(_as_date(row.day))
        if key is not None and position is not None:
            counts[key][position] += row.n
    return DailyMessages(span.days, counts)


def _value(member: Any) -> str:
    return getattr(member, "value", member)


# ---------------------------------------------------------------- campaign funnels


def _funnel_columns() -> list[Any]:
    recipients = func.count(CampaignRecipient.id).label("recipients")
    return [recipients] + [
        func.count(CampaignRecipient.id).filter(STAGES[name]).label(name) for name in FUNNEL_STAGES
    ]


def _funnel_counts(row: Any) -> dict[str, int]:
    return {name: int(getattr(row, name) or 0) for name in ("recipients", *FUNNEL_STAGES)}


@dataclass
class CampaignFunnel:
    campaign_id: int
    name: str
    launched_at: datetime
    counts: dict[str, int]


@dataclass
class Funnels:
    """The funnel of every campaign launched in the range, summed, and the latest ones."""

    total: dict[str, int]
    campaigns: list[CampaignFunnel] = field(default_factory=list)
    campaign_count: int = 0


def campaign_funnels(
    session: Session, tenant_id: int | None, span: DayRange, limit: int = MAX_CAMPAIGNS
) -> Funnels:
    """Recipients per funnel stage of the campaigns launched in ``span``."""
    launched = span.within(Campaign.launched_at)
    total_stmt = (
        select(*_funnel_columns())
        .select_from(CampaignRecipient)
        .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
        .where(launched)
    )
    total_row = session.execute(_tenant(total_stmt, Campaign.tenant_id, tenant_id)).one()
    latest = (
        select(Campaign.id, Campaign.name, Campaign.launched_at, *_funnel_columns())
        .select_from(Campaign)
        .outerjoin(CampaignRecipient, CampaignRecipient.campaign_id == Campaign.id)
        .where(launched)
        .group_by(Campaign.id, Campaign.name, Campaign.launched_at)
        .order_by(Campaign.launched_at.desc(), Campaign.id.desc())
        .limit(limit)
    )
    campaigns = [
        CampaignFunnel(row.id, row.name, row.launched_at, _funnel_counts(row))
        for row in session.execute(_tenant(latest, Campaign.tenant_id, tenant_id))
    ]
    count_stmt = _tenant(
        select(func.count(Campaign.id)).where(launched), Campaign.tenant_id, tenant_id
    )
    return Funnels(
        total=_funnel_counts(total_row),
        campaigns=campaigns,
        campaign_count=int(session.execute(count_stmt).scalar_one()),
    )


def funnel_label(stage: str) -> str:
    return STAGE_LABELS[stage]


# ---------------------------------------------------------------- users and tenants


def _logged_in(span: DayRange) -> ColumnElement[bool]:
    """Flask-Security-Too keeps the last two logins of a user: one of them in range.

    A user who objected to usage analytics (P20) is never counted as active.
    """
    return and_(
        AppUser.analytics_objection_at.is_(None),
        or_(span.within(AppUser.current_login_at), span.within(AppUser.last_login_at)),
    )


def active_users(session: Session, tenant_id: int, span: DayRange) -> tuple[int, int]:
    """(users of the tenant who logged in during ``span``, active users of the tenant)."""
    row = session.execute(
        select(
            func.count(AppUser.id).filter(_logged_in(span)),
            func.count(AppUser.id),
        ).where(AppUser.tenant_id == tenant_id, AppUser.active.is_(True))
    ).one()
    return int(row[0]), int(row[1])


@dataclass
class TenantUsage:
    """One tenant's line on the platform usage page."""

    tenant_id: int
    name: str
    status: str
    messages: dict[str, int]  # `DAILY_SERIES` key -> count in the range
    funnel: dict[str, int]
    campaigns: int
    active_users: int
    users: int

    @property
    def outbound(self) -> int:
        return sum(v for k, v in self.messages.items() if k != "inbound")


def tenant_usage(session: Session, span: DayRange) -> list[TenantUsage]:
    """Every tenant's totals over ``span`` (platform only), busiest first."""
    result = {
        t.id: TenantUsage(
            t.id,
            t.name,
            _value(t.status),
            dict.fromkeys(DAILY_SERIES, 0),
            dict.fromkeys(("recipients", *FUNNEL_STAGES), 0),
            0,
            0,
            0,
        )
        for t in session.scalars(select(Tenant).order_by(Tenant.name))
    }
    for row in session.execute(
        select(Message.tenant_id, Message.direction, Message.status, func.count().label("n"))
        .where(span.within(Message.created_at))
        .group_by(Message.tenant_id, Message.direction, Message.status)
    ):
        key = _bucket(_value(row.direction), _value(row.status))
        if key is not None and row.tenant_id in result:
            result[row.tenant_id].messages[key] += row.n
    _add_tenant_funnels(session, span, result)
    for row in session.execute(
        select(
            AppUser.tenant_id,
            func.count(AppUser.id).filter(_logged_in(span)).label("active"),
            func.count(AppUser.id).label("users"),
        )
        .where(AppUser.tenant_id.is_not(None), AppUser.active.is_(True))
        .group_by(AppUser.tenant_id)
    ):
        if row.tenant_id in result:
            result[row.tenant_id].active_users = int(row.active)
            result[row.tenant_id].users = int(row.users)
    return sorted(result.values(), key=lambda u: (-u.outbound, -u.messages["inbound"], u.name))


def _add_tenant_funnels(session: Session, span: DayRange, result: dict[int, TenantUsage]) -> None:
    stmt = (
        select(
            Campaign.tenant_id,
            func.count(func.distinct(Campaign.id)).label("campaigns"),
            *_funnel_columns(),
        )
        .select_from(Campaign)
        .outerjoin(CampaignRecipient, CampaignRecipient.campaign_id == Campaign.id)
        .where(span.within(Campaign.launched_at))
        .group_by(Campaign.tenant_id)
    )
    for row in session.execute(stmt):
        if row.tenant_id in result:
            result[row.tenant_id].funnel = _funnel_counts(row)
            result[row.tenant_id].campaigns = int(row.campaigns)
