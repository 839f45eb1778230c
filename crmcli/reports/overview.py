"""The headline figures: customers by stage, contacts by kind, ratings, follow-ups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from crmcli.config import STAGES, Config
from crmcli.models import Customer, Interaction, Referral
from crmcli.services.interactions import KINDS, followups_due


def overview(*, session: Session, config: Config, now: datetime) -> dict[str, Any]:
    live = col(Customer.erased_at).is_(None)
    by_stage = dict(
        session.execute(select(col(Customer.stage), func.count()).where(live).group_by(col(Customer.stage))).all()
    )
    by_kind = dict(session.execute(select(col(Interaction.kind), func.count()).group_by(col(Interaction.kind))).all())
    ratings = dict(
        session.execute(
            select(col(Interaction.rating), func.count())
            .where(col(Interaction.rating).is_not(None))
            .group_by(col(Interaction.rating))
        ).all()
    )
    open_complaints = session.execute(
        select(func.count()).where(col(Interaction.kind) == "complaint", col(Interaction.resolved_at).is_(None))
    ).scalar_one()
    referred = session.execute(select(func.count()).select_from(Referral)).scalar_one()
    return {
        "customers": sum(by_stage.values()),
        "by_stage": [{"stage": s, "customers": by_stage.get(s, 0)} for s in STAGES],
        "interactions": [{"kind": k, "count": by_kind.get(k, 0)} for k in KINDS],
        "ratings": [{"rating": r, "count": ratings.get(r, 0)} for r in range(5, 0, -1)],
        "open_complaints": open_complaints,
        "referred_customers": referred,
        "followups_due": len(followups_due(session=session, config=config, now=now)),
    }
