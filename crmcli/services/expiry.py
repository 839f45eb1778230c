"""Points expiry as the daily job and ``points show`` read it: who has points old enough to
expire, and what will expire soon. The rule itself is a removal of the replay
(:class:`crmcli.services.points.Expiry`), recorded by :func:`~crmcli.services.points.settle_points`."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import PointsEntry, table_of
from crmcli.services.points import FACTS, Expiry, Fact, _removals_due, replay
from crmcli.sql import one_of


def customers_with_points_to_expire(session: Session, config: Config, now: datetime) -> list[int]:
    """Every customer whose oldest points may have reached their age by ``now`` (the daily job)."""
    expiry = Expiry.of(config)
    if expiry is None:
        return []
    e = table_of(PointsEntry)
    oldest = now - timedelta(days=expiry.days)
    return list(
        session.execute(
            select(e.c.customer_id).where(e.c.delta > 0, one_of(e.c.kind, FACTS), e.c.at <= oldest).distinct()
        ).scalars()
    )


def expiring_soon(
    session: Session, config: Config, customer_id: int, *, now: datetime, days: int = 30
) -> list[dict[str, Any]]:
    """The points that will expire in the next ``days`` days if nothing is spent: (day, points),
    by replaying the timeline as it stands a little further."""
    expiry = Expiry.of(config)
    if expiry is None:
        return []
    e = table_of(PointsEntry)
    facts = [
        Fact(at, delta, kind, pid)
        for at, delta, kind, pid in session.execute(
            select(e.c.at, e.c.delta, e.c.kind, e.c.purchase_id).where(
                e.c.customer_id == customer_id, one_of(e.c.kind, FACTS), e.c.at <= now
            )
        )
    ]
    due = _removals_due(session, config, [customer_id], now).get(customer_id, [])
    last_day = now.astimezone(config.tz).date() + timedelta(days=days)  # the 30th day counts in full
    outcome = replay(facts, due, expiry=expiry, until=datetime.combine(last_day, time.max, tzinfo=config.tz))
    return [
        {"date": removal.at.astimezone(config.tz).date(), "points": amount}
        for removal, amount in outcome.removals
        if removal.kind == "expire" and removal.at > now
    ]
