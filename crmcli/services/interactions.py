"""Interactions: every contact logged, complaints timed, follow-ups kept."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, or_, select, type_coerce, union_all, update
from sqlmodel import Session, col

from crmcli.choices import INTERACTION_KINDS as KINDS
from crmcli.config import STAGES, Config
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Customer, Interaction, Purchase, UTCDateTime
from crmcli.services.history import stages_at
from crmcli.values import utcnow


def check_kind(kind: str) -> str:
    value = kind.strip().lower()
    if value not in KINDS:
        raise Invalid(f"unknown interaction kind {kind!r}: use one of {', '.join(KINDS)}")
    return value


def check_rating(rating: int | None) -> int | None:
    if rating is not None and not 1 <= rating <= 5:
        raise Invalid(f"rating must be 1 to 5 (5 = completely satisfied), not {rating}")
    return rating


def log_interaction(
    *,
    session: Session,
    customer: Customer,
    kind: str,
    summary: str | None = None,
    rating: int | None = None,
    at: datetime | None = None,
    follow_up: datetime | None = None,
    now: datetime | None = None,
) -> Interaction:
    """Record a contact. It closes the customer's earlier open follow-ups."""
    now = now or utcnow()
    at = at or now
    kind = check_kind(kind)
    check_rating(rating)
    if customer.erased_at is not None or customer.id is None:
        raise Invalid(f"customer {customer.id} was erased")
    if follow_up is not None and follow_up < at:
        raise Invalid("the follow-up date is before the interaction")
    session.execute(
        update(Interaction)
        .where(
            col(Interaction.customer_id) == customer.id,
            col(Interaction.follow_up_at).is_not(None),
            col(Interaction.follow_up_done_at).is_(None),
            col(Interaction.at) <= at,
        )
        .values(follow_up_done_at=at)
    )
    interaction = Interaction(
        customer_id=customer.id,
        kind=kind,
        summary=(summary or "").strip() or None,
        rating=rating,
        at=at,
        follow_up_at=follow_up,
        created_at=now,
    )
    session.add(interaction)
    session.flush()
    return interaction


def get_interaction(session: Session, interaction_id: int) -> Interaction:
    found = session.get(Interaction, interaction_id)
    if found is None:
        raise NotFound(f"no interaction {interaction_id}", subject="interaction", key=interaction_id)
    return found


def _complaint(session: Session, interaction_id: int) -> Interaction:
    found = get_interaction(session, interaction_id)
    if found.kind != "complaint":
        raise Invalid(f"interaction {interaction_id} is a {found.kind}, not a complaint")
    return found


def respond(*, session: Session, interaction_id: int, at: datetime | None = None) -> Interaction:
    """Record the first response to a complaint."""
    complaint = _complaint(session, interaction_id)
    at = at or utcnow()
    if complaint.responded_at is not None:
        raise Conflict(f"complaint {interaction_id} already had its first response")
    if at < complaint.at:
        raise Invalid("the response is before the complaint")
    complaint.responded_at = at
    session.add(complaint)
    return complaint


def resolve(
    *, session: Session, interaction_id: int, summary: str | None = None, at: datetime | None = None
) -> Interaction:
    """Mark a complaint resolved; a resolution is also a response if none was recorded."""
    complaint = _complaint(session, interaction_id)
    at = at or utcnow()
    if complaint.resolved_at is not None:
        raise Conflict(f"complaint {interaction_id} is already resolved")
    if at < complaint.at:
        raise Invalid("the resolution is before the complaint")
    complaint.resolved_at = at
    if complaint.responded_at is None:
        complaint.responded_at = at
    complaint.resolution = (summary or "").strip() or None
    session.add(complaint)
    return complaint


def close_followups(session: Session, customer_ids: list[int]) -> int:
    """The rule of :func:`log_interaction` for a whole contact history at once: an open follow-up
    is done when its customer's next contact (dated no earlier, recorded after it) happened."""
    from sqlalchemy import and_, bindparam

    from crmcli.models import table_of

    i = table_of(Interaction)
    later = i.alias("later")
    closed = 0
    for start in range(0, len(customer_ids), 900):
        chunk = customer_ids[start : start + 900]
        next_contact = (
            select(func.min(later.c.at))
            .where(
                later.c.customer_id == i.c.customer_id,
                or_(later.c.at > i.c.at, and_(later.c.at == i.c.at, later.c.id > i.c.id)),
            )
            .scalar_subquery()
        )
        found = session.execute(
            select(i.c.id, next_contact).where(
                i.c.customer_id.in_(chunk), i.c.follow_up_at.is_not(None), i.c.follow_up_done_at.is_(None)
            )
        ).all()
        done = [{"iid": iid, "when": when} for iid, when in found if when is not None]
        if done:
            session.execute(
                update(i).where(i.c.id == bindparam("iid")).values(follow_up_done_at=bindparam("when")), done
            )
            closed += len(done)
    return closed


def interaction_row(i: Interaction, name: str | None = None) -> dict[str, Any]:
    return {
        "id": i.id,
        "customer_id": i.customer_id,
        "customer": name,
        "kind": i.kind,
        "at": i.at,
        "rating": i.rating,
        "summary": i.summary,
        "follow_up_at": i.follow_up_at,
        "responded_at": i.responded_at,
        "resolved_at": i.resolved_at,
        "resolution": i.resolution,
    }


def list_interactions(
    *,
    session: Session,
    customer: Customer | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    open_only: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    query = select(Interaction, col(Customer.name)).join(Customer, col(Customer.id) == col(Interaction.customer_id))
    if customer is not None:
        query = query.where(col(Interaction.customer_id) == customer.id)
    if kind:
        query = query.where(col(Interaction.kind) == check_kind(kind))
    if since is not None:
        query = query.where(col(Interaction.at) >= since)
    if open_only:
        query = query.where(
            ((col(Interaction.kind) == "complaint") & col(Interaction.resolved_at).is_(None))
            | (col(Interaction.follow_up_at).is_not(None) & col(Interaction.follow_up_done_at).is_(None))
        )
    query = query.order_by(col(Interaction.at).desc(), col(Interaction.id).desc())  # newest first
    if limit:
        query = query.limit(limit)
    return [interaction_row(i, name) for i, name in session.execute(query)]


def followups_due(*, session: Session, config: Config, now: datetime | None = None) -> list[dict[str, Any]]:
    """Follow-ups whose date has come, then customers quiet for longer than their stage's cadence."""
    now = now or utcnow()
    rows: list[dict[str, Any]] = []
    due = session.execute(
        select(Interaction, col(Customer.name))
        .join(Customer, col(Customer.id) == col(Interaction.customer_id))
        .where(
            col(Interaction.follow_up_at) <= now,
            col(Interaction.at) <= now,
            # done later than ``now``: still open then
            or_(col(Interaction.follow_up_done_at).is_(None), col(Interaction.follow_up_done_at) > now),
            col(Customer.erased_at).is_(None),
        )
        .order_by(col(Interaction.follow_up_at), col(Interaction.id))
    )
    for interaction, name in due:
        rows.append(
            {
                "customer_id": interaction.customer_id,
                "customer": name,
                "reason": "follow-up",
                "due_at": interaction.follow_up_at,
                "last_contact": interaction.at,
                "detail": f"from {interaction.kind} {interaction.id}"
                + (f": {interaction.summary}" if interaction.summary else ""),
            }
        )

    # A purchase is contact too: a customer who bought last week is not "quiet".
    # Only what had happened by ``now``: the stage then, the contacts until then.
    moment = literal(now, UTCDateTime())
    contacts = union_all(
        select(col(Interaction.customer_id).label("customer_id"), col(Interaction.at).label("at")).where(
            col(Interaction.at) <= moment
        ),
        select(col(Purchase.customer_id).label("customer_id"), col(Purchase.at).label("at")).where(
            col(Purchase.at) <= moment
        ),
    ).subquery()
    stages = stages_at(now)
    last_contact = (
        select(contacts.c.customer_id, func.max(contacts.c.at).label("last_at"))
        .group_by(contacts.c.customer_id)
        .subquery()
    )
    since = type_coerce(func.coalesce(last_contact.c.last_at, col(Customer.created_at)), UTCDateTime())
    cadence = {stage: getattr(config.followup, stage) for stage in STAGES}
    threshold = case(
        *(
            (stages.c.stage == stage, literal(now - timedelta(days=days), UTCDateTime()))
            for stage, days in cadence.items()
        )
    )
    quiet = session.execute(
        select(col(Customer.id), col(Customer.name), stages.c.stage, since.label("since"))
        .join(stages, stages.c.customer_id == col(Customer.id))
        .outerjoin(last_contact, last_contact.c.customer_id == col(Customer.id))
        .where(col(Customer.erased_at).is_(None), col(Customer.created_at) <= moment, since < threshold)
        .order_by(since, col(Customer.id))
    )
    for cid, name, stage, last in quiet:
        days = cadence[stage]
        rows.append(
            {
                "customer_id": cid,
                "customer": name,
                "reason": "no contact",
                "due_at": last + timedelta(days=days),
                "last_contact": last,
                "detail": f"{stage}: no contact for over {days} days",
            }
        )
    return rows
