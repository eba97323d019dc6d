"""Usage analytics screens (issue 5, P3): "Analytics" for a tenant's admins, "Usage"
for platform staff. Charts are SVG drawn on the server (app/services/svg_charts.py):
FAB's chart widgets load Google Charts from the network and are not used."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from markupsafe import Markup

from app.extensions import db
from app.models.tenant import Tenant
from app.services import analytics
from app.services.exceptions import ValidationError
from app.services.svg_charts import Series, Stage, funnel_chart, stacked_bar_chart
from app.tenancy import current_tenant_id

# Okabe-Ito colours: told apart with the common colour-vision deficiencies.
DAILY_COLOURS = {
    "read": "#009E73",
    "delivered": "#56B4E9",
    "sent": "#0072B2",
    "accepted": "#999999",
    "failed": "#D55E00",
    "inbound": "#E69F00",
}
FUNNEL_COLOURS = {"failed": "#D55E00", "skipped": "#999999", "replied": "#CC79A7"}


def day_label(day: date) -> str:
    """ "5 Mar" (the year is in the chart's title)."""
    return f"{day.day} {day:%b}"


def span_label(span: analytics.DayRange) -> str:
    return f"{span.first.day} {span.first:%b %Y} to {span.last.day} {span.last:%b %Y} (IST)"


def daily_chart(chart_id: str, scope: str, daily: analytics.DailyMessages) -> Markup:
    """The stacked messages-per-day chart of ``daily``."""
    span = analytics.DayRange(daily.days[0], daily.days[-1])
    totals = ", ".join(
        f"{daily.total(k):,} {analytics.DAILY_LABELS[k].lower()}" for k in analytics.DAILY_SERIES
    )
    return stacked_bar_chart(
        chart_id,
        f"Messages per day, {scope}, {span_label(span)}",
        f"Outbound messages by their current status and inbound messages, per day: "
        f"{totals}. The table below the chart lists every day.",
        [day_label(d) for d in daily.days],
        [
            Series(analytics.DAILY_LABELS[k], DAILY_COLOURS[k], daily.counts[k])
            for k in analytics.DAILY_SERIES
        ],
        y_label="Messages",
        x_label="Day (IST)",
        empty_text="No messages in this period.",
    )


def funnel_svg(chart_id: str, scope: str, counts: dict[str, int]) -> Markup:
    """The horizontal funnel of ``counts`` (percentages of the attempted recipients)."""
    # Skipped recipients were never attempted: their share is of all recipients.
    stages = [
        Stage(
            analytics.funnel_label(s),
            counts[s],
            FUNNEL_COLOURS.get(s, "#0072B2"),
            base=counts["recipients"] if s == "skipped" else None,
        )
        for s in analytics.FUNNEL_STAGES
    ]
    summary = ", ".join(f"{s.label} {s.value:,}" for s in stages)
    return funnel_chart(
        chart_id,
        f"Campaign funnel, {scope}",
        f"Recipients of the campaigns launched in the period, per stage: {summary}. "
        "Percentages are of the attempted recipients, except skipped (never sent), "
        "which is a percentage of all recipients.",
        stages,
        base=counts["attempted"],
    )


def _span() -> analytics.DayRange:
    """The ``days`` query parameter as a range ending today (IST); 400 if invalid."""
    try:
        return analytics.parse_range(request.args.get("days"), analytics.today_ist())
    except ValidationError as exc:
        abort(400, description=str(exc))


def _page_args(span: analytics.DayRange) -> dict[str, Any]:
    return {
        "span": span,
        "span_label": span_label(span),
        "days": len(span.days),
        "ranges": analytics.RANGES,
        "series": analytics.DAILY_SERIES,
        "series_labels": analytics.DAILY_LABELS,
        "stages": analytics.FUNNEL_STAGES,
        "stage_label": analytics.funnel_label,
        "day_label": day_label,
    }


class AnalyticsView(BaseView):
    """A tenant's own usage: messages per day by status, campaign funnels."""

    route_base = "/analytics"
    class_permission_name = "Analytics"
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        tenant_id = current_tenant_id()
        if tenant_id is None:  # platform staff: the cross-tenant page
            return redirect(url_for("UsageView.index", **request.args))
        span = _span()
        daily = analytics.messages_per_day(db.session, tenant_id, span)
        funnels = analytics.campaign_funnels(db.session, tenant_id, span)
        active, users = analytics.active_users(db.session, tenant_id, span)
        return self.render_template(
            "woffice/analytics.html",
            title="Analytics",
            daily=daily,
            daily_svg=daily_chart("chart-daily", "your business", daily),
            funnels=funnels,
            funnel_svg=funnel_svg("chart-funnel", "your business", funnels.total),
            active_users=active,
            users=users,
            **_page_args(span),
        )


class UsageView(BaseView):
    """Platform staff: usage across tenants, per tenant, and one tenant at a time."""

    route_base = "/usage"
    class_permission_name = "Usage"
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        if current_tenant_id() is not None:  # never for a tenant's users, whatever the role
            abort(403)
        span = _span()
        tenant = _chosen_tenant()
        tenant_id = tenant.id if tenant else None
        scope = tenant.name if tenant else "all tenants"
        daily = analytics.messages_per_day(db.session, tenant_id, span)
        funnels = analytics.campaign_funnels(db.session, tenant_id, span)
        return self.render_template(
            "woffice/analytics_usage.html",
            title="Usage",
            tenant=tenant,
            daily=daily,
            daily_svg=daily_chart("chart-daily", scope, daily),
            funnels=funnels,
            funnel_svg=funnel_svg("chart-funnel", scope, funnels.total),
            usages=analytics.tenant_usage(db.session, span),
            **_page_args(span),
        )


def _chosen_tenant() -> Tenant | None:
    """The ``tenant`` query parameter: None for all tenants; 400 or 404 if invalid."""
    raw = request.args.get("tenant", "")
    if not raw:
        return None
    if not raw.isdigit():
        abort(400, description="The tenant must be given by its number.")
    tenant = db.session.get(Tenant, int(raw))
    if tenant is None:
        abort(404, description="There is no such tenant.")
    return tenant
