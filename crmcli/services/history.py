"""Reading the past: what stood at a moment, from the dated facts the database keeps.

Every ``--as-of`` read goes through these, so a report of a past day and a database that
holds only what had happened by then give the same answer: a sale counts from when it was
made until it is refunded, a customer's stage is the last step of the stage history dated
by then, a referral's status is read from its decision and the sales that verified it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select

from crmcli.config import Config
from crmcli.models import Purchase, Referral, StageChange, UTCDateTime, table_of
from crmcli.values import parse_money


def at_or_before(column: Any, as_of: datetime) -> ColumnElement[bool]:
    return column <= literal(as_of, UTCDateTime())


def live_at(table: Any, as_of: datetime) -> ColumnElement[bool]:
    """A purchase made by ``as_of`` and not refunded by then (a refund after ``as_of`` had not
    happened yet, so the sale still counted)."""
    return and_(
        at_or_before(table.c.at, as_of),
        or_(table.c.refunded_at.is_(None), table.c.refunded_at > literal(as_of, UTCDateTime())),
    )


def referral_verified_at(config: Config, as_of: datetime) -> ColumnElement[bool]:
    """Whether a referral (the ``referral`` table's row) was verified at ``as_of``.

    The row keeps only its latest decision, so the past is read from the facts: verified by
    hand by then, or its referred customer had a qualifying sale live then (a refund later
    put it back to pending, but at ``as_of`` it stood). A rejection dated by then wins.
    """
    r, p = table_of(Referral), table_of(Purchase)
    threshold = parse_money(config.referrals.qualifying_purchase, config.currency.minor_digits)
    qualifying = (
        select(p.c.id).where(p.c.customer_id == r.c.referred_id, p.c.net_minor >= threshold, live_at(p, as_of)).exists()
    )
    decided = at_or_before(r.c.decided_at, as_of)
    return and_(
        at_or_before(r.c.created_at, as_of),
        ~(r.c.status == "rejected") | ~decided,
        or_(and_(r.c.status == "verified", decided), qualifying),
    )


def referral_rejected_at(as_of: datetime) -> ColumnElement[bool]:
    r = table_of(Referral)
    return and_(r.c.status == "rejected", at_or_before(r.c.decided_at, as_of))


def referral_status_at(config: Config, as_of: datetime) -> Any:
    """The referral's status at ``as_of`` (for rows recorded by then)."""
    return case(
        (referral_rejected_at(as_of), "rejected"),
        (referral_verified_at(config, as_of), "verified"),
        else_="pending",
    )


def stages_at(as_of: datetime) -> Any:
    """Subquery (customer_id, stage): each customer's stage at ``as_of``, the last step of the
    stage history dated no later (customers who had not joined yet have no row)."""
    sc = table_of(StageChange)
    ordered = (
        select(
            sc.c.customer_id,
            sc.c.to_stage,
            func.row_number()
            # at one moment a purchase's step follows a change by hand, as in the replay
            .over(
                partition_by=sc.c.customer_id,
                order_by=(sc.c.at.desc(), case((sc.c.cause == "purchase", 1), else_=0).desc(), sc.c.id.desc()),
            )
            .label("rn"),
        )
        .where(at_or_before(sc.c.at, as_of))
        .subquery("steps")
    )
    return select(ordered.c.customer_id, ordered.c.to_stage.label("stage")).where(ordered.c.rn == 1).subquery("stages")
