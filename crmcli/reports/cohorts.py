"""Retention by cohort: customers grouped by the month or quarter of their first purchase.

For each later period, how many of the cohort bought again and what they spent: the
triangle a shop reads to see whether newer customers stay as well as older ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.models import Purchase, table_of
from crmcli.reports.common import live_at, month_of, share, utc_offset_seconds
from crmcli.values import money

PERIODS = {"month": 1, "quarter": 3}
METRICS = ("customers", "revenue")


def period_label(index: int, period: str) -> str:
    """``2026-01`` for a month, ``2026-Q1`` for a quarter (index: months or quarters since year 0)."""
    if period == "month":
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    return f"{index // 4:04d}-Q{index % 4 + 1}"


def cohorts(*, session: Session, config: Config, as_of: datetime, period: str = "month") -> dict[str, Any]:
    if period not in PERIODS:
        raise Invalid(f"unknown period {period!r}: use month or quarter")
    p = table_of(Purchase)
    offset = utc_offset_seconds(config.tz, as_of)
    index = month_of(p.c.at, offset) // PERIODS[period]
    # One row per customer and period they bought in, then each customer's first period.
    bought = (
        select(p.c.customer_id, index.label("period"), func.sum(p.c.net_minor).label("net"))
        .where(live_at(p, as_of))
        .group_by(p.c.customer_id, index)
        .subquery("bought")
    )
    first = func.min(bought.c.period).over(partition_by=bought.c.customer_id)
    marked = select(bought.c.period, bought.c.net, first.label("cohort")).subquery("marked")
    since = (marked.c.period - marked.c.cohort).label("since")
    cells = session.execute(
        select(marked.c.cohort, since, func.count(), func.sum(marked.c.net))
        .group_by(marked.c.cohort, since)
        .order_by(marked.c.cohort, since)
    ).all()
    now = _index(as_of.astimezone(config.tz), period)
    digits = config.currency.minor_digits
    found: dict[int, dict[int, tuple[int, int]]] = {}
    for cohort, later, customers, net in cells:
        found.setdefault(int(cohort), {})[int(later)] = (int(customers), int(net))
    rows = []
    for cohort, by_period in found.items():
        size = by_period[0][0]
        rows.append(
            {
                "cohort": period_label(cohort, period),
                "customers": size,
                "revenue": money(sum(net for _, net in by_period.values()), digits),
                "periods": [
                    {
                        "period": later,
                        "customers": by_period.get(later, (0, 0))[0],
                        "share": share(by_period.get(later, (0, 0))[0], size),
                        "revenue": money(by_period.get(later, (0, 0))[1], digits),
                    }
                    for later in range(now - cohort + 1)
                ],
            }
        )
    return {"as_of": as_of, "period": period, "cohorts": rows}


def triangle(report: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The cohorts as a wide table: one row per cohort, a column per period since the first
    purchase (``+0``, ``+1``, ...) holding the share still buying or the revenue."""
    if metric not in METRICS:
        raise Invalid(f"unknown metric {metric!r}: use customers or revenue")
    key = "share" if metric == "customers" else "revenue"
    return [
        {"cohort": row["cohort"], "customers": row["customers"], **{f"+{p['period']}": p[key] for p in row["periods"]}}
        for row in report["cohorts"]
    ]


def _index(moment: datetime, period: str) -> int:
    return (moment.year * 12 + moment.month - 1) // PERIODS[period]
