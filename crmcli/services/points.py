"""The points ledger: append-only; the balance is its sum and never negative."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.models import Customer, PointsEntry, table_of
from crmcli.values import utcnow

KINDS = ("earn", "redeem", "adjust", "tenure", "reset", "refund", "referral")
ACCRUE_BATCH = 5000


def lock_customer(session: Session, customer_id: int) -> None:
    """Serialise writers of one customer's ledger (row lock on PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises every writer)."""
    session.execute(select(col(Customer.id)).where(col(Customer.id) == customer_id).with_for_update())


def balance(session: Session, customer_id: int) -> int:
    total = session.execute(
        select(func.coalesce(func.sum(col(PointsEntry.delta)), 0)).where(col(PointsEntry.customer_id) == customer_id)
    ).scalar_one()
    return int(total)


def record(
    session: Session,
    *,
    customer_id: int,
    delta: int,
    kind: str,
    at: datetime,
    reason: str | None = None,
    purchase_id: int | None = None,
) -> PointsEntry | None:
    """Append one entry; refuses to take the balance below zero. No entry for 0."""
    if delta == 0:
        return None
    if delta < 0:
        have = balance(session, customer_id)
        if have + delta < 0:
            raise Invalid(f"customer {customer_id} has {have} points, fewer than the {-delta} asked for")
    entry = PointsEntry(customer_id=customer_id, delta=delta, kind=kind, reason=reason, purchase_id=purchase_id, at=at)
    session.add(entry)
    session.flush()
    return entry


def points_for_spend(net_minor: int, config: Config) -> int:
    """Points earned on a net amount: whole points only, rounded down."""
    units = Decimal(net_minor).scaleb(-config.currency.minor_digits)
    return int((units * config.points.per_currency_unit).to_integral_value(rounding=ROUND_FLOOR))


def points_value_minor(points: int, config: Config) -> int:
    """What ``points`` are worth in minor units, rounded down."""
    value = Decimal(points) * config.points.value_per_point
    return int(value.scaleb(config.currency.minor_digits).to_integral_value(rounding=ROUND_FLOOR))


def _positive(points: int) -> int:
    if points <= 0:
        raise Invalid(f"points must be a positive whole number, not {points}")
    return points


def add_points(
    *, session: Session, customer: Customer, points: int, reason: str, now: datetime | None = None
) -> PointsEntry:
    assert customer.id is not None
    if customer.erased_at is not None:
        raise Invalid(f"customer {customer.id} was erased")
    entry = record(
        session, customer_id=customer.id, delta=_positive(points), kind="adjust", reason=reason, at=now or utcnow()
    )
    assert entry is not None
    return entry


def redeem_points(
    *, session: Session, customer: Customer, points: int, reason: str, now: datetime | None = None
) -> PointsEntry:
    assert customer.id is not None
    lock_customer(session, customer.id)
    entry = record(
        session, customer_id=customer.id, delta=-_positive(points), kind="redeem", reason=reason, at=now or utcnow()
    )
    assert entry is not None
    return entry


def reset_balance(session: Session, *, customer_id: int, reason: str, at: datetime) -> int:
    """Set the balance to zero with one ledger entry; returns the points removed."""
    have = balance(session, customer_id)
    record(session, customer_id=customer_id, delta=-have, kind="reset", reason=reason, at=at)
    return have


def full_months(start: datetime, end: datetime) -> int:
    """Whole calendar months from ``start`` to ``end`` (a month ends on the same day-of-month)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if (end.day, end.time()) < (start.day, start.time()):
        months -= 1
    return max(months, 0)


def accrue_tenure(*, session: Session, config: Config, as_of: datetime | None = None) -> dict[str, int]:
    """Tenure points for each full month of membership not yet accrued.

    Each entry's ``period`` is ``m<N>``: the membership month it brings the customer
    up to. The unique (customer, kind, period) index makes a second run for the same
    month add nothing, even when two runs overlap.
    """
    as_of = as_of or utcnow()
    per_month = config.points.per_month_of_tenure
    if per_month == 0:
        return {"customers": 0, "points": 0}
    entries = table_of(PointsEntry)
    accrued = (
        select(entries.c.customer_id, func.max(entries.c.period).label("period"))
        .where(entries.c.kind == "tenure")
        .group_by(entries.c.customer_id)
        .subquery()
    )
    query = (
        select(col(Customer.id), col(Customer.created_at), accrued.c.period)
        .outerjoin(accrued, accrued.c.customer_id == col(Customer.id))
        .where(col(Customer.erased_at).is_(None), col(Customer.created_at) <= as_of)
        .order_by(col(Customer.id))
        .limit(ACCRUE_BATCH)
    )
    customers = points = 0
    last_id = 0
    # Keyset pages: each page is read completely before its entries are written.
    while batch := session.execute(query.where(col(Customer.id) > last_id)).all():
        last_id = batch[-1][0]
        rows = []
        for customer_id, created_at, period in batch:
            done = int(period[1:]) if period else 0
            months = full_months(created_at, as_of)
            if months > done:
                delta = (months - done) * per_month
                rows.append(
                    {
                        "customer_id": customer_id,
                        "delta": delta,
                        "kind": "tenure",
                        "period": f"m{months:05d}",
                        "reason": f"membership months {done + 1}-{months}",
                        "at": as_of,
                    }
                )
                points += delta
        if rows:
            session.execute(insert(entries), rows)
            customers += len(rows)
    return {"customers": customers, "points": points}


def ledger(session: Session, customer_id: int, *, limit: int | None = None) -> list[dict[str, Any]]:
    query = select(PointsEntry).where(col(PointsEntry.customer_id) == customer_id).order_by(col(PointsEntry.id).desc())
    if limit:
        query = query.limit(limit)
    return [
        {"id": e.id, "at": e.at, "delta": e.delta, "kind": e.kind, "reason": e.reason, "purchase_id": e.purchase_id}
        for e in session.execute(query).scalars()
    ]
