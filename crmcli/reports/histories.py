"""Each buyer's purchase history in a few numbers, computed in SQL: the input of ``report clv``.

Purchases on the same calendar day (in the business time zone) count as one purchase whose
value is the day's net total: a basket paid in two goes is one visit. Refunded purchases
are left out, as in every report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, cast, func, literal, select
from sqlmodel import Session

from crmcli.models import Purchase, UTCDateTime, table_of
from crmcli.reports.common import day_of, live_at, start_of_day


def purchase_days(until: datetime, offset: int, *, after: datetime | None = None) -> Any:
    """Subquery (customer_id, day, net): one row per customer and day with a live purchase."""
    p = table_of(Purchase)
    day = day_of(p.c.at, offset)
    query = select(p.c.customer_id, day.label("day"), func.sum(p.c.net_minor).label("net")).where(live_at(p, until))
    if after is not None:
        query = query.where(p.c.at > literal(after, UTCDateTime()))
    return query.group_by(p.c.customer_id, day).subquery("days")


def histories(until: datetime, offset: int) -> Any:
    """Statement: customer_id, days (purchase days), first_day, last_day, repeat_net (net of every
    day after the first), ordered by customer id. Days are whole days since 1970-01-01.

    One pass over the covering index grouped by customer (counting distinct days), then the
    first day's net per customer from the same index: grouping by customer and day instead
    sorts every purchase and takes half as long again.
    """
    p = table_of(Purchase)
    live = live_at(p, until)
    dated = select(p.c.customer_id, day_of(p.c.at, offset).label("day"), p.c.net_minor).where(live).subquery("dated")
    summary = (
        select(
            dated.c.customer_id,
            func.count(dated.c.day.distinct()).label("days"),
            func.min(dated.c.day).label("first_day"),
            func.max(dated.c.day).label("last_day"),
            func.sum(dated.c.net_minor).label("net"),
        )
        .group_by(dated.c.customer_id)
        .subquery("summary")
    )
    first = p.alias("first")
    first_day_net = (
        select(func.coalesce(func.sum(first.c.net_minor), 0))
        .where(
            first.c.customer_id == summary.c.customer_id,
            live_at(first, until),
            first.c.at < start_of_day(summary.c.first_day + 1, offset),
        )
        .scalar_subquery()
    )
    return select(
        summary.c.customer_id,
        summary.c.days,
        summary.c.first_day,
        summary.c.last_day,
        cast(summary.c.net - first_day_net, BigInteger).label("repeat_net"),
    ).order_by(summary.c.customer_id)


def gaps(until: datetime, offset: int) -> Any:
    """Statement: customer_id, shortest_gap, longest_gap in days between consecutive purchase days,
    for customers with at least two."""
    days = purchase_days(until, offset)
    previous = func.lag(days.c.day).over(partition_by=days.c.customer_id, order_by=days.c.day)
    spaced = select(days.c.customer_id, (days.c.day - previous).label("gap")).subquery("spaced")
    return (
        select(spaced.c.customer_id, func.min(spaced.c.gap).label("shortest"), func.max(spaced.c.gap).label("longest"))
        .where(spaced.c.gap.is_not(None))
        .group_by(spaced.c.customer_id)
    )


def later_purchase_days(
    session: Session, since: datetime, until: datetime, offset: int, customers_until: datetime
) -> int:
    """Purchase days in (since, until] of the customers who had bought by ``customers_until``."""
    p = table_of(Purchase)
    days = purchase_days(until, offset, after=since)
    known = select(p.c.customer_id).where(live_at(p, customers_until)).distinct()
    return int(session.execute(select(func.count()).where(days.c.customer_id.in_(known))).scalar_one())
