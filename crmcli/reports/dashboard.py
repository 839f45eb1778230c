"""One screen of headline figures, gathered from the other reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from crmcli.config import STAGES, Config
from crmcli.models import Customer, Purchase, table_of
from crmcli.reports.common import at_or_before, live_at, stages_at
from crmcli.reports.pareto import pareto
from crmcli.reports.referrals import referral_report
from crmcli.reports.rfm import rfm_segments
from crmcli.reports.satisfaction import satisfaction, sla
from crmcli.services.interactions import followups_due


def dashboard(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    c, p = table_of(Customer), table_of(Purchase)
    stages = stages_at(as_of)  # the stage each customer was at then, from the stage history
    by_stage = dict(
        session.execute(
            select(stages.c.stage, func.count())
            .join(c, c.c.id == stages.c.customer_id)
            .where(c.c.erased_at.is_(None), at_or_before(c.c.created_at, as_of))
            .group_by(stages.c.stage)
        ).all()
    )
    orders = session.execute(select(func.count()).where(live_at(p, as_of))).scalar_one()
    split = pareto(session=session, config=config, as_of=as_of)
    word = referral_report(session=session, config=config, as_of=as_of, top=3)
    ratings = satisfaction(session=session, config=config, as_of=as_of)
    service = sla(session=session, config=config, as_of=as_of)
    segments = rfm_segments(session=session, config=config, as_of=as_of)
    return {
        "as_of": as_of,
        "customers": sum(by_stage.values()),
        "buyers": split["customers"],
        "orders": orders,
        "revenue": split["revenue"],
        "top_20_percent_share": split["top_share"],
        "referred_customers": word["referred_customers"],
        "referral_revenue_share": word["revenue_share"],
        "loyal_ratings_share": ratings["loyal_share"],
        "open_complaints": service["open"],
        "overdue_complaints": len(service["overdue"]),
        "followups_due": len(followups_due(session=session, config=config, now=as_of)),
        "stages": [{"stage": s, "customers": by_stage.get(s, 0)} for s in STAGES],
        "segments": [{"segment": s["segment"], "customers": s["customers"], "revenue": s["revenue"]} for s in segments],
        "top_referrers": word["top_referrers"],
    }
