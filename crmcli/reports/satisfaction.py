"""Satisfaction ratings and the complaint SLA: only a 5 is a loyal customer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlmodel import Session

from crmcli.config import Config
from crmcli.models import Customer, Interaction, UTCDateTime, table_of
from crmcli.reports.common import at_or_before, epoch_seconds, middle_values, share


def satisfaction(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    i = table_of(Interaction)
    counts = dict(
        session.execute(
            select(i.c.rating, func.count())
            .where(i.c.rating.is_not(None), at_or_before(i.c.at, as_of))
            .group_by(i.c.rating)
        ).all()
    )
    total = sum(counts.values())
    average = sum(r * n for r, n in counts.items()) / total if total else None
    return {
        "as_of": as_of,
        "ratings": total,
        "average": round(average, 2) if average is not None else None,
        "loyal_share": share(counts.get(5, 0), total),
        "at_risk_share": share(counts.get(3, 0) + counts.get(4, 0), total),
        "unhappy_share": share(counts.get(1, 0) + counts.get(2, 0), total),
        "distribution": [
            {
                "rating": r,
                "count": counts.get(r, 0),
                "share": share(counts.get(r, 0), total),
                "meaning": {5: "loyal", 4: "may leave", 3: "may leave", 2: "unhappy", 1: "unhappy"}[r],
            }
            for r in (5, 4, 3, 2, 1)
        ],
    }


def sla(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """Complaints against the deadlines: first response within N minutes, resolution within M hours.

    A complaint still open is *overdue* when a deadline it has not met has passed at ``as_of``.
    """
    i, c = table_of(Interaction), table_of(Customer)
    respond_s = config.sla.complaint_first_response_minutes * 60
    resolve_s = float(config.sla.complaint_resolution_hours) * 3600
    now = literal(as_of, UTCDateTime())
    complaint = and_(i.c.kind == "complaint", at_or_before(i.c.at, as_of))
    responded = i.c.responded_at.is_not(None) & (i.c.responded_at <= now)
    resolved = i.c.resolved_at.is_not(None) & (i.c.resolved_at <= now)
    response_s = epoch_seconds(i.c.responded_at) - epoch_seconds(i.c.at)
    resolution_s = epoch_seconds(i.c.resolved_at) - epoch_seconds(i.c.at)
    total, n_responded, n_resolved, response_ok, resolution_ok = session.execute(
        select(
            func.count(),
            func.sum(case((responded, 1), else_=0)),
            func.sum(case((resolved, 1), else_=0)),
            func.sum(case((responded & (response_s <= respond_s), 1), else_=0)),
            func.sum(case((resolved & (resolution_s <= resolve_s), 1), else_=0)),
        ).where(complaint)
    ).one()
    response_due = as_of - timedelta(seconds=respond_s)
    resolution_due = as_of - timedelta(seconds=resolve_s)
    overdue_rule = and_(
        complaint,
        ~resolved,
        or_(
            and_(~responded, i.c.at < literal(response_due, UTCDateTime())),
            i.c.at < literal(resolution_due, UTCDateTime()),
        ),
    )
    overdue = session.execute(
        select(i.c.id, i.c.customer_id, c.c.name, i.c.at, responded.label("responded"), i.c.summary)
        .join(c, c.c.id == i.c.customer_id)
        .where(overdue_rule)
        .order_by(i.c.at, i.c.id)
    ).all()
    median_response = _median_minutes(session, response_s, and_(complaint, responded))
    median_resolution = _median_minutes(session, resolution_s, and_(complaint, resolved))
    total = int(total)
    return {
        "as_of": as_of,
        "complaints": total,
        "first_response_minutes_target": config.sla.complaint_first_response_minutes,
        "resolution_hours_target": float(config.sla.complaint_resolution_hours),
        "responded": int(n_responded or 0),
        "responded_in_time_share": share(int(response_ok or 0), total),
        "median_first_response_minutes": median_response,
        "resolved": int(n_resolved or 0),
        "resolved_in_time_share": share(int(resolution_ok or 0), total),
        "median_resolution_minutes": median_resolution,
        "open": total - int(n_resolved or 0),
        "overdue": [
            {
                "id": row.id,
                "customer_id": row.customer_id,
                "customer": row.name,
                "at": row.at,
                "waiting": "resolution" if row.responded else "first response",
                "summary": row.summary,
            }
            for row in overdue
        ],
    }


def _median_minutes(session: Session, seconds: Any, condition: Any) -> float | None:
    i = table_of(Interaction)
    gaps = select(seconds.label("s")).select_from(i).where(condition).subquery("gaps")
    middle = middle_values(session, gaps.c.s)
    return round(sum(float(v) for v in middle) / len(middle) / 60, 1) if middle else None
