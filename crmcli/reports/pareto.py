"""The 80/20 split: how much revenue the top fifth of customers brings, and who brings others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Referral, table_of
from crmcli.reports.common import at_or_before, revenue_by_customer, share, top_count
from crmcli.values import money

TOP_SHARE = 0.2


def ranked_customers(as_of: datetime) -> Any:
    """Customers with purchases ranked by net revenue, highest first, ties by id."""
    revenue = revenue_by_customer(as_of)
    order = (revenue.c.net.desc(), revenue.c.customer_id)
    return select(
        revenue.c.customer_id,
        revenue.c.net,
        func.row_number().over(order_by=order).label("rn"),
        func.sum(revenue.c.net).over(order_by=order, rows=(None, 0)).label("cumulative"),
    ).subquery("ranked")


def pareto(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    ranked = ranked_customers(as_of)
    customers, total = session.execute(select(func.count(), func.coalesce(func.sum(ranked.c.net), 0))).one()
    top = top_count(customers, TOP_SHARE)
    top_revenue, for_80 = session.execute(
        select(
            func.coalesce(func.sum(case((ranked.c.rn <= top, ranked.c.net), else_=0)), 0),
            # the first rank whose running total reaches 80% (compared in integers: 10 x cum >= 8 x total)
            func.min(case((ranked.c.cumulative * 10 >= total * 8, ranked.c.rn))),
        )
    ).one()
    r = table_of(Referral)
    group = case((ranked.c.rn <= top, "top"), (ranked.c.rn.is_not(None), "rest"), else_="none")
    referrals = dict(
        session.execute(
            select(group, func.count())
            .select_from(r.outerjoin(ranked, ranked.c.customer_id == r.c.referrer_id))
            .where(r.c.status != "rejected", at_or_before(r.c.created_at, as_of))
            .group_by(group)
        )
        .all()
    )
    digits = config.currency.minor_digits
    return {
        "as_of": as_of,
        "customers": customers,
        "revenue": money(int(total), digits),
        "top_customers": top,
        "top_revenue": money(int(top_revenue), digits),
        "top_share": share(int(top_revenue), int(total)),
        "customers_for_80_percent": int(for_80) if for_80 is not None else 0,
        "referrals_from_top": referrals.get("top", 0),
        "referrals_from_rest": referrals.get("rest", 0),
        "referrals_from_non_buyers": referrals.get("none", 0),
    }
