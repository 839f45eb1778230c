"""How much of the business word of mouth brings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Customer, Referral, table_of
from crmcli.reports.common import (
    at_or_before,
    referral_rejected_at,
    referral_verified_at,
    revenue_by_customer,
    share,
)
from crmcli.values import money


def referral_report(
    *, session: Session, config: Config, as_of: datetime, top: int = 10, signals: bool = True
) -> dict[str, Any]:
    """Word of mouth as of ``as_of``. ``signals`` (the fraud checks' counts) only for the present:
    a check's findings are not kept as a history, so a past moment gets None, not today's counts."""
    r, c = table_of(Referral), table_of(Customer)
    revenue = revenue_by_customer(as_of)
    recorded = at_or_before(r.c.created_at, as_of)
    verified_now = referral_verified_at(config, as_of)
    rejected_now = referral_rejected_at(as_of)
    referrals, verified, rejected, referred_revenue, verified_revenue = session.execute(
        select(
            func.count(),
            func.sum(case((verified_now, 1), else_=0)),
            func.sum(case((rejected_now, 1), else_=0)),
            func.coalesce(func.sum(revenue.c.net), 0),
            func.coalesce(func.sum(case((verified_now, revenue.c.net), else_=0)), 0),
        )
        .select_from(r.outerjoin(revenue, revenue.c.customer_id == r.c.referred_id))
        .where(recorded)
    ).one()
    customers = session.execute(select(func.count()).where(at_or_before(c.c.created_at, as_of))).scalar_one()
    total_revenue = session.execute(select(func.coalesce(func.sum(revenue.c.net), 0))).scalar_one()
    brought = (
        select(
            r.c.referrer_id,
            func.count().label("referred"),
            func.sum(case((verified_now, 1), else_=0)).label("verified"),
            func.coalesce(func.sum(case((verified_now, revenue.c.net), else_=0)), 0).label("revenue"),
        )
        .select_from(r.outerjoin(revenue, revenue.c.customer_id == r.c.referred_id))
        .where(recorded)
        .group_by(r.c.referrer_id)
        .subquery("brought")
    )
    leaders = session.execute(
        select(
            c.c.id,
            c.c.name,
            brought.c.referred,
            brought.c.verified,
            brought.c.revenue,
            func.coalesce(revenue.c.net, 0).label("own"),
        )
        .join(brought, brought.c.referrer_id == c.c.id)
        .outerjoin(revenue, revenue.c.customer_id == c.c.id)
        .order_by(brought.c.verified.desc(), brought.c.revenue.desc(), c.c.id)
        .limit(top)
    ).all()
    digits = config.currency.minor_digits
    referrals, verified, rejected = int(referrals), int(verified or 0), int(rejected or 0)
    review = session.execute(select(func.count()).where(recorded, r.c.status == "review")).scalar_one()
    return {
        "as_of": as_of,
        "customers": customers,
        "referred_customers": referrals,
        "referred_share": share(referrals, customers),
        "verified": verified,
        "pending": referrals - verified - rejected - review,
        "review": review,
        "rejected": rejected,
        "verified_share": share(verified, referrals),
        "referred_revenue": money(int(referred_revenue), digits),
        "verified_revenue": money(int(verified_revenue), digits),
        "revenue_share": share(int(verified_revenue), int(total_revenue)),
        "top_referrers": [
            {
                "id": row.id,
                "name": row.name,
                "referred": row.referred,
                "verified": int(row.verified),
                "referral_value": money(int(row.revenue), digits),
                "own_value": money(int(row.own), digits),
            }
            for row in leaders
        ],
        "signals": signal_counts(session, recorded) if signals else None,
    }


def signal_counts(session: Session, recorded: Any) -> list[dict[str, Any]]:
    """How many referrals raise each fraud signal (crmcli/services/signals.py), counted in SQL."""
    from crmcli.choices import BLOCKING_SIGNALS, REFERRAL_SIGNALS

    r = table_of(Referral)
    padded = literal(" ") + r.c.signals + literal(" ")
    counts = session.execute(
        select(*(func.sum(case((padded.like(f"% {name} %"), 1), else_=0)) for name in REFERRAL_SIGNALS)).where(
            recorded, r.c.signals.is_not(None)
        )
    ).one()
    return [
        {"signal": name, "referrals": int(count or 0), "blocking": name in BLOCKING_SIGNALS}
        for name, count in zip(REFERRAL_SIGNALS, counts, strict=True)
    ]
