"""Big and small customers, good and poor payers, and the terms each deserves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.reports.common import share
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
    ranked = ranked_customers(as_of, config.payment.big_customer_top_share, credit=True)
    ratio = config.payment.good_payer_on_time_ratio
    num, den = ratio.as_integer_ratio()
    size = case((ranked.c.top, "big"), else_="small")
    # good: never bought on credit, or on_time / counted >= ratio (in integers: on_time x q >= counted x p)
    good = case(
        (ranked.c.counted == 0, "good"),
        (ranked.c.on_time * den >= ranked.c.counted * num, "good"),
        else_="poor",
    )
    cells = {
        (s, g): (n, int(net or 0))
        for s, g, n, net in session.execute(
            select(size, good, func.count(), func.sum(ranked.c.net)).group_by(size, good)
        )
    }
    digits = config.currency.minor_digits
    customers = sum(n for n, _ in cells.values())
    return {
        "as_of": as_of,
        "customers": customers,
        "big_customers": sum(cells.get(("big", g), (0, 0))[0] for g in ("good", "poor")),
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
