"""Big and small customers, good and poor payers, and the terms each deserves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Purchase, UTCDateTime, table_of
from crmcli.reports.common import at_or_before, share, top_count
from crmcli.reports.pareto import ranked_customers
from crmcli.values import money

POLICY = {
    ("big", "good"): "preferential terms",
    ("big", "poor"): "normal terms, strict payment",
    ("small", "good"): "a small discount",
    ("small", "poor"): "stop credit",
}


def payment_report(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """A purchase with a due date counts once due (or paid): on time when paid by the due
    date. A customer who never bought on credit pays at the till, a good payer."""
    p = table_of(Purchase)
    now = literal(as_of, UTCDateTime())
    ranked = ranked_customers(as_of)
    customers = session.execute(select(func.count()).select_from(ranked)).scalar_one()
    big = top_count(customers, float(config.payment.big_customer_top_share))
    on_time = (p.c.paid_at.is_not(None)) & (p.c.paid_at <= p.c.due_at)
    counted = (p.c.due_at.is_not(None)) & ((p.c.due_at < now) | (p.c.paid_at.is_not(None) & (p.c.paid_at <= now)))
    credit = (
        select(
            p.c.customer_id,
            func.sum(case((counted, 1), else_=0)).label("counted"),
            func.sum(case((counted & on_time, 1), else_=0)).label("on_time"),
        )
        .where(p.c.refunded_at.is_(None), at_or_before(p.c.at, as_of))
        .group_by(p.c.customer_id)
        .subquery("credit")
    )
    ratio = float(config.payment.good_payer_on_time_ratio)
    size = case((ranked.c.rn <= big, "big"), else_="small")
    good = case(
        (func.coalesce(credit.c.counted, 0) == 0, "good"),
        (credit.c.on_time >= ratio * credit.c.counted, "good"),
        else_="poor",
    )
    cells = {
        (s, g): (n, int(net or 0))
        for s, g, n, net in session.execute(
            select(size, good, func.count(), func.sum(ranked.c.net))
            .select_from(ranked.outerjoin(credit, credit.c.customer_id == ranked.c.customer_id))
            .group_by(size, good)
        )
    }
    digits = config.currency.minor_digits
    return {
        "as_of": as_of,
        "customers": customers,
        "big_customers": big,
        "cells": [
            {
                "size": s,
                "payer": g,
                "customers": cells.get((s, g), (0, 0))[0],
                "customer_share": share(cells.get((s, g), (0, 0))[0], customers),
                "revenue": money(cells.get((s, g), (0, 0))[1], digits),
                "policy": policy,
            }
            for (s, g), policy in POLICY.items()
        ],
    }
