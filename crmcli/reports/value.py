"""Lifetime value next to referral value: the big spenders are often not the ones who bring others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Customer, Referral, table_of
from crmcli.reports.common import median_pair, referral_verified_at, revenue_by_customer, share
from crmcli.values import money

GROUPS = ("champions", "affluents", "advocates", "misers")


def valued(config: Config, as_of: datetime) -> Any:
    """Subquery: customer_id, lifetime (own net spend), referral (net spend of verified referred)."""
    revenue = revenue_by_customer(as_of)
    r = table_of(Referral)
    brought = (
        select(r.c.referrer_id, func.sum(revenue.c.net).label("net"))
        .join(revenue, revenue.c.customer_id == r.c.referred_id)
        .where(referral_verified_at(config, as_of))
        .group_by(r.c.referrer_id)
        .subquery("brought")
    )
    return (
        select(
            revenue.c.customer_id,
            revenue.c.net.label("lifetime"),
            func.coalesce(brought.c.net, 0).label("referral"),
        )
        .outerjoin(brought, brought.c.referrer_id == revenue.c.customer_id)
        .subquery("valued")
    )


def _groups(values: Any, med_life: tuple[int, int], med_ref: tuple[int, int]) -> Any:
    # "high" is strictly above the median; compared as 2 x value > low + high to stay in integers
    high_life = values.c.lifetime * 2 > sum(med_life)
    high_ref = values.c.referral * 2 > sum(med_ref)
    return case(
        (high_life & high_ref, "champions"),
        (high_life, "affluents"),
        (high_ref, "advocates"),
        else_="misers",
    )


def value_report(
    *,
    session: Session,
    config: Config,
    as_of: datetime,
    with_customers: bool = False,
    limit: int | None = None,
    predicted: bool = False,
) -> dict[str, Any]:
    values = valued(config, as_of)
    med_life = median_pair(session, values.c.lifetime) or (0, 0)
    med_ref = median_pair(session, values.c.referral) or (0, 0)
    group = _groups(values, med_life, med_ref)
    counts = {
        name: (count, int(life or 0), int(ref or 0))
        for name, count, life, ref in session.execute(
            select(group, func.count(), func.sum(values.c.lifetime), func.sum(values.c.referral)).group_by(group)
        )
    }
    digits = config.currency.minor_digits
    customers = sum(c for c, _, _ in counts.values())
    report: dict[str, Any] = {
        "as_of": as_of,
        "customers": customers,
        "median_lifetime_value": _half(med_life, digits),
        "median_referral_value": _half(med_ref, digits),
        **{name: counts.get(name, (0, 0, 0))[0] for name in GROUPS},
        "groups": [
            {
                "group": name,
                "customers": counts.get(name, (0, 0, 0))[0],
                "customer_share": share(counts.get(name, (0, 0, 0))[0], customers),
                "lifetime_value": money(counts.get(name, (0, 0, 0))[1], digits),
                "referral_value": money(counts.get(name, (0, 0, 0))[2], digits),
            }
            for name in GROUPS
        ],
    }
    if with_customers:
        c = table_of(Customer)
        query = (
            select(c.c.id, c.c.ref, c.c.name, values.c.lifetime, values.c.referral, group.label("group"))
            .join(values, values.c.customer_id == c.c.id)
            .order_by(values.c.referral.desc(), values.c.lifetime.desc(), c.c.id)
        )
        if limit:
            query = query.limit(limit)
        report["rows"] = [
            {
                "id": row.id,
                "ref": row.ref,
                "name": row.name,
                "lifetime_value": money(int(row.lifetime), digits),
                "referral_value": money(int(row.referral), digits),
                "group": row.group,
            }
            for row in session.execute(query)
        ]
    if predicted:
        _add_predicted(session, config, as_of, report, select(values.c.customer_id, group))
    return report


def _add_predicted(session: Session, config: Config, as_of: datetime, report: dict[str, Any], groups: Any) -> None:
    """Predicted value (report clv) beside the two values: per row, and summed per group."""
    import numpy as np

    from crmcli.reports.prediction import predict

    found = predict(session=session, config=config, calibration_end=as_of, what="report value --predicted")
    report["predicted_method"] = found.method
    report["predicted_note"] = found.note
    digits = config.currency.minor_digits
    rows = report.get("rows", [])
    if not found.fitted:
        for row in [*report["groups"], *rows]:
            row["predicted_value"] = None
        return
    minor = np.round(found.value * 10**digits).astype(np.int64)
    ids, labels = zip(*session.execute(groups).all(), strict=True) if found.ids.size else ((), ())
    at = np.searchsorted(found.ids, np.array(ids, dtype=np.int64))
    labels_array = np.array(labels, dtype=object)
    for row in report["groups"]:
        row["predicted_value"] = money(int(minor[at[labels_array == row["group"]]].sum()), digits)
    if rows:
        at_row = np.searchsorted(found.ids, np.array([r["id"] for r in rows], dtype=np.int64))
        for row, i in zip(rows, at_row.tolist(), strict=True):
            row["predicted_value"] = money(int(minor[i]), digits)


def _half(pair: tuple[int, int], digits: int) -> Any:
    """The median as money: the mean of the two middle values, which may end in half a minor unit."""
    from decimal import Decimal

    exact = Decimal(sum(pair)) / 2
    value = exact.scaleb(-digits)
    return value.quantize(Decimal(1).scaleb(-digits)) if exact == exact.to_integral_value() else value
