"""The lifecycle funnel: how many customers reached each stage, and how fast."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Customer, Referral, StageChange, table_of
from crmcli.reports.common import at_or_before, epoch_seconds, middle_values, referral_rejected_at, share, stages_at

FUNNEL = ("lead", "verified", "prospect", "customer", "repeat")


def funnel(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """A customer reached a stage when their history shows it or any later stage (an
    imported 'customer' counts as having been a lead). 'lost' is counted apart."""
    sc, c, r = table_of(StageChange), table_of(Customer), table_of(Referral)
    rank = case(*((sc.c.to_stage == s, i) for i, s in enumerate(FUNNEL)), else_=-1)
    reached = (
        select(sc.c.customer_id, func.max(rank).label("top"))
        .where(at_or_before(sc.c.at, as_of))
        .group_by(sc.c.customer_id)
        .subquery("reached")
    )
    referred = select(r.c.referred_id).where(~referral_rejected_at(as_of), at_or_before(r.c.created_at, as_of))
    by_referral = case((reached.c.customer_id.in_(referred), 1), else_=0)
    counts = {
        (top, ref): n
        for top, ref, n in session.execute(
            select(reached.c.top, by_referral, func.count()).group_by(reached.c.top, by_referral)
        )
    }
    stages = stages_at(as_of)
    lost = session.execute(
        select(func.count())
        .select_from(stages.join(c, c.c.id == stages.c.customer_id))
        .where(stages.c.stage == "lost", at_or_before(c.c.created_at, as_of))
    ).scalar_one()
    rows = []
    previous = None
    for i, stage in enumerate(FUNNEL):
        total = sum(n for (top, _), n in counts.items() if top >= i)
        from_referral = sum(n for (top, ref), n in counts.items() if top >= i and ref)
        rows.append(
            {
                "stage": stage,
                "customers": total,
                "by_referral": from_referral,
                "conversion": share(total, previous) if previous is not None else None,
                "median_days": _median_days(session, FUNNEL[i - 1], stage, as_of) if i else None,
            }
        )
        previous = total
    return {"as_of": as_of, "stages": rows, "lost": lost}


def _median_days(session: Session, earlier: str, later: str, as_of: datetime) -> float | None:
    """Median days from first reaching ``earlier`` to first reaching ``later``."""
    sc = table_of(StageChange)
    first = (
        select(sc.c.customer_id, sc.c.to_stage, func.min(sc.c.at).label("at"))
        .where(sc.c.to_stage.in_([earlier, later]), at_or_before(sc.c.at, as_of))
        .group_by(sc.c.customer_id, sc.c.to_stage)
        .subquery("first")
    )
    a, b = first.alias("a"), first.alias("b")
    gaps = (
        select((epoch_seconds(b.c.at) - epoch_seconds(a.c.at)).label("seconds"))
        .join(b, and_(b.c.customer_id == a.c.customer_id, b.c.to_stage == later))
        .where(a.c.to_stage == earlier)
        .subquery("gaps")
    )
    middle = middle_values(session, gaps.c.seconds)
    if not middle:
        return None
    return round(sum(float(s) for s in middle) / len(middle) / 86400, 1)
