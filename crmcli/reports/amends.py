"""Complaints past their deadline, the apology each got, and whether the customer bought again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, literal, or_, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import AutoReward, Coupon, Customer, Interaction, Purchase, UTCDateTime, table_of
from crmcli.reports.common import epoch_seconds
from crmcli.reports.satisfaction import sla


def deadlines(config: Config) -> tuple[timedelta, timedelta]:
    return (
        timedelta(minutes=config.sla.complaint_first_response_minutes),
        timedelta(hours=float(config.sla.complaint_resolution_hours)),
    )


def breach_rule(config: Config, as_of: datetime) -> tuple[Any, Any]:
    """(a complaint breached a deadline by ``as_of``, it missed the first-response one):
    a deadline is missed when it has passed and the response (or resolution) came after it,
    or had not come by ``as_of``."""
    i = table_of(Interaction)
    moment = literal(as_of, UTCDateTime())

    def missed(done: Any, limit: timedelta) -> Any:
        late = or_(done.is_(None), done > moment, epoch_seconds(done) - epoch_seconds(i.c.at) > limit.total_seconds())
        return and_(i.c.at <= literal(as_of - limit, UTCDateTime()), late)

    respond, resolve = deadlines(config)
    response_missed = missed(i.c.responded_at, respond)
    breached = and_(i.c.kind == "complaint", i.c.at <= moment, or_(response_missed, missed(i.c.resolved_at, resolve)))
    return breached, response_missed


def breaches(session: Session, config: Config, as_of: datetime) -> list[dict[str, Any]]:
    """Each complaint that breached a deadline: which one, the apology given, whether it was
    used, and whether the customer bought again (a live purchase) after the breach."""
    i, c, a, k, p = (table_of(m) for m in (Interaction, Customer, AutoReward, Coupon, Purchase))
    breached, response_missed = breach_rule(config, as_of)
    respond, resolve = deadlines(config)
    moment = literal(as_of, UTCDateTime())
    rows = session.execute(
        select(
            i.c.id,
            i.c.customer_id,
            c.c.name,
            i.c.at,
            response_missed.label("response"),
            a.c.at,
            a.c.points,
            k.c.code,
            k.c.uses,
        )
        .join(c, c.c.id == i.c.customer_id)
        .outerjoin(
            a,
            and_(
                a.c.rule == "apology",
                a.c.key == func_text(i.c.id),
                a.c.customer_id == i.c.customer_id,
                a.c.at <= moment,
            ),
        )
        .outerjoin(k, k.c.id == a.c.coupon_id)
        .where(breached)
        .order_by(i.c.at, i.c.id)
    ).all()
    found = []
    for iid, cid, name, at, response, given_at, points, code, uses in rows:
        missed_at = at + (respond if response else resolve)
        again = session.execute(
            select(
                exists().where(
                    p.c.customer_id == cid,
                    p.c.at > literal(missed_at, UTCDateTime()),
                    p.c.at <= moment,
                    or_(p.c.refunded_at.is_(None), p.c.refunded_at > moment),
                )
            )
        ).scalar()
        found.append(
            {
                "id": iid,
                "customer_id": cid,
                "customer": name,
                "at": at,
                "missed": "first response" if response else "resolution",
                "compensated": given_at is not None,
                "apology": code if code is not None else (f"{points} points" if points else None),
                "apology_used": bool(uses) if code is not None else None,
                "bought_again": bool(again),
            }
        )
    return found


def func_text(column: Any) -> Any:
    from sqlalchemy import String, cast

    return cast(column, String)


def sla_with_amends(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """The SLA report, with the breaches and what was done to make amends."""
    result = sla(session=session, config=config, as_of=as_of)
    found = breaches(session, config, as_of)
    result["breached"] = len(found)
    result["compensated"] = sum(1 for b in found if b["compensated"])
    result["bought_again_after_breach"] = sum(1 for b in found if b["bought_again"])
    result["breaches"] = found
    return result
