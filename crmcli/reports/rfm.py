"""RFM scores and segments.

Each customer with purchases gets Recency, Frequency and Monetary scores 1-5:
``min(5, 1 + floor(5 x pr))`` with ``pr`` the PERCENT_RANK() of the customer on the
measure. PERCENT_RANK is ``(rank - 1) / (n - 1)``, so the score is computed exactly in
integers as ``1 + (5 x (rank - 1)) div (n - 1)``, capped at 5 (1 when n = 1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.models import Customer, table_of
from crmcli.reports.common import revenue_by_customer, share
from crmcli.values import money, utcnow

# (segment, recency scores, frequency scores): every one of the 25 (R, F) cells is named once.
SEGMENTS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("Champions", (5,), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential Loyalists", (4, 5), (2, 3)),
    ("New Customers", (5,), (1,)),
    ("Promising", (4,), (1,)),
    ("Need Attention", (3,), (3,)),
    ("About to Sleep", (3,), (1, 2)),
    ("Can't Lose Them", (1, 2), (5,)),
    ("At Risk", (1, 2), (3, 4)),
    ("Hibernating", (1, 2), (1, 2)),
)
SEGMENT_NAMES = tuple(name for name, _, _ in SEGMENTS)


def segment_of(r: int, f: int) -> str:
    return next(name for name, rs, fs in SEGMENTS if r in rs and f in fs)


def find_segment(name: str) -> str:
    wanted = "".join(ch for ch in name.lower() if ch.isalnum())
    for segment in SEGMENT_NAMES:
        if "".join(ch for ch in segment.lower() if ch.isalnum()) == wanted:
            return segment
    raise Invalid(f"unknown segment {name!r}: use one of {', '.join(SEGMENT_NAMES)}")


def _score(measure: Any) -> Any:
    rank = func.rank().over(order_by=measure)
    n = func.count().over()
    raw = 1 + (5 * (rank - 1)) // case((n > 1, n - 1), else_=1)  # integer division: exact floor
    return case((raw > 5, 5), else_=raw)


def scored(as_of: datetime) -> Any:
    """Subquery: customer_id, recency/frequency/monetary values, r, f, m and segment."""
    revenue = revenue_by_customer(as_of)
    scores = select(
        revenue.c.customer_id,
        revenue.c.last_at,
        revenue.c.orders,
        revenue.c.net,
        _score(revenue.c.last_at).label("r"),
        _score(revenue.c.orders).label("f"),
        _score(revenue.c.net).label("m"),
    ).subquery("scores")
    segment = case(
        *((and_(scores.c.r.in_(rs), scores.c.f.in_(fs)), literal(name)) for name, rs, fs in SEGMENTS),
        else_=literal("?"),
    )
    return select(scores, segment.label("segment")).subquery("rfm")


def rfm_segments(*, session: Session, config: Config, as_of: datetime) -> list[dict[str, Any]]:
    rfm = scored(as_of)
    rows = {
        name: (count, net)
        for name, count, net in session.execute(
            select(rfm.c.segment, func.count(), func.sum(rfm.c.net)).group_by(rfm.c.segment)
        )
    }
    total_customers = sum(c for c, _ in rows.values())
    total_revenue = sum(int(n) for _, n in rows.values())
    digits = config.currency.minor_digits
    result = []
    for name, rs, fs in SEGMENTS:
        count, net = rows.get(name, (0, 0))
        result.append(
            {
                "segment": name,
                "r": "-".join(map(str, (min(rs), max(rs)))) if len(rs) > 1 else str(rs[0]),
                "f": "-".join(map(str, (min(fs), max(fs)))) if len(fs) > 1 else str(fs[0]),
                "customers": count,
                "customer_share": share(count, total_customers),
                "revenue": money(int(net or 0), digits),
                "revenue_share": share(int(net or 0), total_revenue),
            }
        )
    return result


def rfm_customers(
    *, session: Session, config: Config, as_of: datetime, segment: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    rfm = scored(as_of)
    c = table_of(Customer)
    query = (
        select(
            c.c.id, c.c.ref, c.c.name, rfm.c.r, rfm.c.f, rfm.c.m, rfm.c.segment, rfm.c.last_at, rfm.c.orders, rfm.c.net
        )
        .join(rfm, rfm.c.customer_id == c.c.id)
        .order_by(c.c.id)
    )
    if segment is not None:
        query = query.where(rfm.c.segment == find_segment(segment))
    if limit:
        query = query.limit(limit)
    digits = config.currency.minor_digits
    return [
        {
            "id": row.id,
            "ref": row.ref,
            "name": row.name,
            "r": row.r,
            "f": row.f,
            "m": row.m,
            "segment": row.segment,
            "last_purchase": row.last_at,
            "orders": row.orders,
            "net_spend": money(int(row.net), digits),
        }
        for row in session.execute(query)
    ]


def customers_in_segment(*, session: Session, segment: str, as_of: datetime | None = None) -> list[int]:
    """Ids of the live customers in an RFM segment (for 'customer list' and 'coupon issue')."""
    rfm = scored(as_of or utcnow())
    c = table_of(Customer)
    query = (
        select(rfm.c.customer_id)
        .join(c, c.c.id == rfm.c.customer_id)
        .where(rfm.c.segment == find_segment(segment), c.c.erased_at.is_(None))
        .order_by(rfm.c.customer_id)
    )
    return list(session.execute(query).scalars())
