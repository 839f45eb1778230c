"""The 80/20 split: how much revenue the top fifth of customers brings, and who brings others."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Referral, table_of
from crmcli.reports.common import at_or_before, referral_rejected_at, revenue_by_customer, share
from crmcli.values import money

TOP_SHARE = Decimal("0.2")


def ranked_customers(as_of: datetime, top_share: Decimal = TOP_SHARE, *, credit: bool = False) -> Any:
    """Buyers ranked by revenue, highest first, ties by id, with the running total and
    ``top``: whether the customer is in the first ``ceil(top_share x N)``."""
    revenue = revenue_by_customer(as_of, credit=credit)
    order = (revenue.c.net.desc(), revenue.c.customer_id)
    num, den = top_share.as_integer_ratio()
    n = func.count().over()
    rn = func.row_number().over(order_by=order)
    return select(
        revenue.c.customer_id,
        revenue.c.net,
        rn.label("rn"),
        func.sum(revenue.c.net).over(order_by=order, rows=(None, 0)).label("cumulative"),
        func.sum(revenue.c.net).over().label("total"),
        n.label("n"),
        # rn <= ceil(N x p/q), in integers: rn x q <= N x p + q - 1
        (rn * den <= n * num + den - 1).label("top"),
        *([revenue.c.counted, revenue.c.on_time] if credit else []),
    ).subquery("ranked")


def pareto(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """One pass over the ranked buyers, each with the referrals they made.

    The referral count is a correlated subquery on the referrer index: joining a grouped
    subquery instead makes SQLite scan it once per buyer.
    """
    ranked = ranked_customers(as_of)
    r = table_of(Referral)
    counted = ~referral_rejected_at(as_of) & at_or_before(r.c.created_at, as_of)
    made = select(func.count()).where(r.c.referrer_id == ranked.c.customer_id, counted).scalar_subquery()
    customers, total, top, top_revenue, for_80, from_top, from_rest = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(ranked.c.net), 0),
            func.coalesce(func.sum(case((ranked.c.top, 1), else_=0)), 0),
            func.coalesce(func.sum(case((ranked.c.top, ranked.c.net), else_=0)), 0),
            # the first rank whose running total reaches 80%: 10 x running >= 8 x total, in integers
            func.min(case((ranked.c.cumulative * 10 >= ranked.c.total * 8, ranked.c.rn))),
            func.coalesce(func.sum(case((ranked.c.top, made), else_=0)), 0),
            func.coalesce(func.sum(case((ranked.c.top, 0), else_=made)), 0),
        ).select_from(ranked)
    ).one()
    all_referrals = session.execute(select(func.count()).select_from(r).where(counted)).scalar_one()
    digits = config.currency.minor_digits
    return {
        "as_of": as_of,
        "customers": customers,
        "revenue": money(int(total), digits),
        "top_customers": int(top),
        "top_revenue": money(int(top_revenue), digits),
        "top_share": share(int(top_revenue), int(total)),
        "customers_for_80_percent": int(for_80) if for_80 is not None else 0,
        "referrals_from_top": int(from_top),
        "referrals_from_rest": int(from_rest),
        "referrals_from_non_buyers": int(all_referrals) - int(from_top) - int(from_rest),
    }


def pareto_curve(*, session: Session, config: Config, as_of: datetime, points: int = 20) -> list[dict[str, Any]]:
    """The Lorenz-style curve of the 80/20 split: about ``points`` samples of the share of
    buyers (best first) against the share of revenue they bring, ending at (1, 1)."""
    ranked = ranked_customers(as_of)
    # the first rank of each of ``points`` equal slices, and the last rank
    sampled = ((ranked.c.rn * points) % ranked.c.n < points) | (ranked.c.rn == ranked.c.n)
    rows = session.execute(
        select(ranked.c.rn, ranked.c.n, ranked.c.cumulative, ranked.c.total).where(sampled).order_by(ranked.c.rn)
    ).all()
    curve = [{"customer_share": 0.0, "revenue_share": 0.0}]
    for rn, n, cumulative, total in rows:
        curve.append({"customer_share": share(int(rn), int(n)), "revenue_share": share(int(cumulative), int(total))})
    return curve
