"""Building blocks shared by the reports: revenue per customer, medians, time arithmetic."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from crmcli.models import Purchase, UTCDateTime, table_of
from crmcli.services.history import (  # re-exported: the reports read the past through them
    live_at as live_at,
)
from crmcli.services.history import (
    referral_rejected_at as referral_rejected_at,
)
from crmcli.services.history import (
    referral_status_at as referral_status_at,
)
from crmcli.services.history import (
    referral_verified_at as referral_verified_at,
)
from crmcli.services.history import (
    stages_at as stages_at,
)


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


class local_day(FunctionElement[int]):  # noqa: N801
    """Whole days since 1970-01-01 of a stored (naive UTC) timestamp shifted by ``offset`` seconds:
    the calendar day in the business time zone, as an integer, on SQLite and PostgreSQL."""

    type = Integer()
    inherit_cache = True


@compiles(local_day, "sqlite")
def _local_day_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    column, offset = (compiler.process(c, **kw) for c in element.clauses)
    # julianday() is the cheapest date parse SQLite has (strftime('%s') costs twice as much over
    # millions of rows); a Julian day starts at noon, and the shift by a million days makes the
    # truncating CAST a floor for any date.
    return f"(CAST(julianday({column}, {offset} || ' seconds') - 2440587.5 + 1000000 AS INTEGER) - 1000000)"


@compiles(local_day)
def _local_day_default(element: Any, compiler: Any, **kw: Any) -> str:
    column, offset = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(FLOOR((EXTRACT(EPOCH FROM {column}) + {offset}) / 86400) AS INTEGER)"


class day_start(FunctionElement[datetime]):  # noqa: N801
    """The stored (naive UTC) timestamp at which local day number ``day`` begins (see local_day)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(day_start, "sqlite")
def _day_start_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    day, offset = (compiler.process(c, **kw) for c in element.clauses)
    return f"datetime({day} + 2440587.5, (-{offset}) || ' seconds')"


@compiles(day_start)
def _day_start_default(element: Any, compiler: Any, **kw: Any) -> str:
    day, offset = (compiler.process(c, **kw) for c in element.clauses)
    return f"(TIMESTAMP '1970-01-01' + ({day}) * INTERVAL '1 day' - ({offset}) * INTERVAL '1 second')"


class local_month(FunctionElement[int]):  # noqa: N801
    """Months since year 0 (year x 12 + month - 1) of a stored timestamp shifted by ``offset`` seconds."""

    type = Integer()
    inherit_cache = True


@compiles(local_month, "sqlite")
def _local_month_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    column, offset = (compiler.process(c, **kw) for c in element.clauses)
    shifted = f"{column}, {offset} || ' seconds'"
    return f"(CAST(strftime('%Y', {shifted}) AS INTEGER) * 12 + CAST(strftime('%m', {shifted}) AS INTEGER) - 1)"


@compiles(local_month)
def _local_month_default(element: Any, compiler: Any, **kw: Any) -> str:
    column, offset = (compiler.process(c, **kw) for c in element.clauses)
    shifted = f"({column} + {offset} * INTERVAL '1 second')"
    return f"(CAST(EXTRACT(YEAR FROM {shifted}) AS INTEGER) * 12 + CAST(EXTRACT(MONTH FROM {shifted}) AS INTEGER) - 1)"


def utc_offset_seconds(tz: Any, at: datetime) -> int:
    """The business time zone's offset at ``at``: days and months are counted in that zone.

    One offset for the whole history keeps the SQL portable; under daylight saving time a
    purchase within an hour of midnight may fall on the neighbouring day.
    """
    offset = at.astimezone(tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def day_of(column: Any, offset: int) -> Any:
    return local_day(column, literal(offset, Integer()))


def start_of_day(day: Any, offset: int) -> Any:
    return day_start(day, literal(offset, Integer()))


def month_of(column: Any, offset: int) -> Any:
    return local_month(column, literal(offset, Integer()))


def at_or_before(column: Any, as_of: datetime) -> ColumnElement[bool]:
    return column <= literal(as_of, UTCDateTime())


def revenue_by_customer(as_of: datetime, *, credit: bool = False) -> Any:
    """Subquery (customer_id, net, orders, last_at, first_at) over live purchases up to ``as_of``.

    Revenue is net of coupon and points discounts; purchases refunded by ``as_of`` are left out. With
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
    return select(*columns).where(live_at(p, as_of)).group_by(p.c.customer_id).subquery("revenue")


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
