"""Building blocks shared by the reports: revenue per customer, medians, time arithmetic."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Float, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from crmcli.models import Purchase, UTCDateTime, table_of


class epoch_seconds(FunctionElement[float]):  # noqa: N801 - reads like the SQL function it stands for
    """Seconds since 1970 of a stored (naive UTC) timestamp, on SQLite and PostgreSQL."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds)
def _epoch_default(element: Any, compiler: Any, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


def at_or_before(column: Any, as_of: datetime) -> ColumnElement[bool]:
    return column <= literal(as_of, UTCDateTime())


def revenue_by_customer(as_of: datetime, *, credit: bool = False) -> Any:
    """Subquery (customer_id, net, orders, last_at, first_at) over live purchases up to ``as_of``.

    Revenue is net of coupon and points discounts; refunded purchases are left out. With
    ``credit``, also ``counted`` (purchases with a due date that are due or paid by
    ``as_of``) and ``on_time`` (of those, paid by the due date), in the same pass.
    """
    p = table_of(Purchase)
    columns = [
        p.c.customer_id.label("customer_id"),
        func.sum(p.c.net_minor).label("net"),
        func.count().label("orders"),
        func.max(p.c.at).label("last_at"),
        func.min(p.c.at).label("first_at"),
    ]
    if credit:
        now = literal(as_of, UTCDateTime())
        paid = p.c.paid_at.is_not(None) & (p.c.paid_at <= now)
        counted = p.c.due_at.is_not(None) & ((p.c.due_at < now) | paid)
        columns += [
            func.sum(case((counted, 1), else_=0)).label("counted"),
            func.sum(case((counted & paid & (p.c.paid_at <= p.c.due_at), 1), else_=0)).label("on_time"),
        ]
    return (
        select(*columns)
        .where(p.c.refunded_at.is_(None), at_or_before(p.c.at, as_of))
        .group_by(p.c.customer_id)
        .subquery("revenue")
    )


def top_count(customers: int, share: float) -> int:
    """How many customers make the top ``share`` (at least one when there are any)."""
    return math.ceil(round(share * customers, 9)) if customers else 0


def middle_values(session: Any, column: Any) -> list[Any]:
    """The middle value of a subquery's column, or the two middle ones when the count is even.

    The median is their mean; computed with ROW_NUMBER() so it runs the same on SQLite
    and PostgreSQL, and only one or two values leave the database.
    """
    ordered = select(
        column.label("v"),
        func.row_number().over(order_by=column).label("rn"),
        func.count().over().label("n"),
    ).subquery("ordered")
    middle = ordered.c.rn.in_([(ordered.c.n + 1) // 2, (ordered.c.n + 2) // 2])
    return list(session.execute(select(ordered.c.v).where(middle).order_by(ordered.c.rn)).scalars())


def median_pair(session: Any, column: Any) -> tuple[int, int] | None:
    """The two middle integers (equal when the count is odd), or None for no rows."""
    rows = middle_values(session, column)
    return (int(rows[0]), int(rows[-1])) if rows else None


def share(part: int | float, whole: int | float) -> float:
    return round(part / whole, 4) if whole else 0.0
