"""Referrals: who brought whom, with the guards that keep the record honest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select
from sqlmodel import Session, col

from crmcli.errors import Conflict, Invalid
from crmcli.models import Customer, Referral
from crmcli.values import utcnow


def would_cycle(session: Session, referrer_id: int, referred_id: int) -> bool:
    """True when ``referred`` already brought ``referrer``, directly or down a chain."""
    if referrer_id == referred_id:
        return True
    # Walk up from the referrer through its referrers; a cycle means we meet ``referred``.
    chain = select(literal(referrer_id).label("id")).cte("chain", recursive=True)
    chain = chain.union(select(col(Referral.referrer_id)).join(chain, col(Referral.referred_id) == chain.c.id))
    hit = session.execute(select(chain.c.id).where(chain.c.id == referred_id).limit(1)).first()
    return hit is not None


def _same_person(a: Customer, b: Customer) -> str | None:
    if a.id == b.id:
        return "the same customer"
    if a.email and a.email == b.email:
        return "the same email"
    if a.phone and a.phone == b.phone:
        return "the same phone"
    return None


def record_referral(
    *, session: Session, referrer: Customer, referred: Customer, now: datetime | None = None
) -> Referral:
    """A pending referral, refused for self-referral, a second referrer, or a cycle."""
    now = now or utcnow()
    assert referrer.id is not None and referred.id is not None
    if reason := _same_person(referrer, referred):
        raise Invalid(f"a customer cannot refer themselves ({reason})")
    if referrer.erased_at is not None or referred.erased_at is not None:
        raise Invalid("an erased customer cannot take part in a referral")
    existing = session.execute(
        select(col(Referral.id), col(Referral.referrer_id)).where(col(Referral.referred_id) == referred.id)
    ).first()
    if existing is not None:
        raise Conflict(
            f"customer {referred.id} was already referred by customer {existing[1]} (referral {existing[0]})"
        )
    if would_cycle(session, referrer.id, referred.id):
        raise Invalid(
            f"customer {referred.id} already brought customer {referrer.id} "
            "(directly or through others); a referral cannot close a circle"
        )
    referral = Referral(referrer_id=referrer.id, referred_id=referred.id, status="pending", created_at=now)
    session.add(referral)
    session.flush()
    return referral
