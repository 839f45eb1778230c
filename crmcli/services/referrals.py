"""Referrals: who brought whom, with the guards that keep the record honest."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, literal, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from crmcli.config import Config, Reward
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Customer, Referral, table_of
from crmcli.values import money, parse_money, parse_when, utcnow


def would_cycle(session: Session, referrer_id: int, referred_id: int) -> bool:
    """True when ``referred`` already brought ``referrer``, directly or down a chain."""
    if referrer_id == referred_id:
        return True
    # Walk up from the referrer through its referrers; a cycle means we meet ``referred``.
    chain = select(literal(referrer_id).label("id")).cte("chain", recursive=True)
    chain = chain.union(select(col(Referral.referrer_id)).join(chain, col(Referral.referred_id) == chain.c.id))
    hit = session.execute(select(chain.c.id).where(chain.c.id == referred_id).limit(1)).first()
    return hit is not None


class Person(Protocol):
    id: int | None
    email: str | None
    phone: str | None


def same_person(a: Person, b: Person) -> str | None:
    """Why two records are one person (same id, email or normalised phone), or None."""
    if a.id is not None and a.id == b.id:
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
    if reason := same_person(referrer, referred):
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


# --- verification and rewards ----------------------------------------------------


def get_referral(session: Session, referral_id: int) -> Referral:
    found = session.get(Referral, referral_id)
    if found is None:
        raise NotFound(f"no referral {referral_id}", subject="referral", key=referral_id)
    return found


def decide_referral(
    session: Session, referral: Referral, status: str, now: datetime, reason: str | None = None
) -> bool:
    """Move a pending referral to ``status`` in one conditional UPDATE; False if it was not pending.

    Only the one transaction whose UPDATE matched goes on to reward, so verifying
    twice, or from two processes at once, rewards once.
    """
    table = table_of(Referral)
    result = session.execute(
        update(table)
        .where(table.c.id == referral.id, table.c.status == "pending")
        .values(status=status, decided_at=now, reason=reason)
    )
    session.refresh(referral)
    return int(getattr(result, "rowcount", 0)) == 1


def _reward_many(
    session: Session, customer_ids: list[int], reward: Reward, config: Config, now: datetime, why: list[str]
) -> list[dict[str, Any]]:
    """The same reward to several customers at once: points entries, or one coupon each."""
    from crmcli.io.bulk import insert_rows
    from crmcli.models import PointsEntry
    from crmcli.services.coupons import CouponTerms, issue_coupons

    if reward.points is not None:
        entries = [
            {
                "customer_id": cid,
                "delta": reward.points,
                "kind": "referral",
                "reason": reason,
                "purchase_id": None,
                "period": None,
                "at": now,
            }
            for cid, reason in zip(customer_ids, why, strict=True)
        ]
        insert_rows(session.connection(), table_of(PointsEntry), list(entries[0]), entries)
        return [{"customer_id": cid, "points": reward.points} for cid in customer_ids]
    expires = (now.astimezone(config.tz) + timedelta(days=reward.expires_in_days)).date()
    terms = CouponTerms(
        percent_bp=int(reward.percent * 100) if reward.percent is not None else None,
        amount_minor=parse_money(reward.amount, config.currency.minor_digits) if reward.amount is not None else None,
        expires_at=parse_when(expires.isoformat(), config.tz, end_of_day=True),
        campaign="referral",
    )
    coupons = issue_coupons(session=session, customer_ids=customer_ids, terms=terms, now=now)
    return [{"customer_id": cid, "coupon": c.code} for cid, c in zip(customer_ids, coupons, strict=True)]


def verify_referral(
    *, session: Session, referral_id: int, config: Config, now: datetime | None = None
) -> dict[str, Any]:
    """Verify a pending referral by hand and reward both sides once."""
    now = now or utcnow()
    referral = get_referral(session, referral_id)
    if referral.status != "pending" or not decide_referral(session, referral, "verified", now):
        raise Conflict(f"referral {referral_id} is already {referral.status}")
    return reward_both(session, referral, config, now)


def reward_both(session: Session, referral: Referral, config: Config, now: datetime) -> dict[str, Any]:
    return reward_all(session, [referral], config, now)[0]


def reward_all(session: Session, referrals: list[Referral], config: Config, now: datetime) -> list[dict[str, Any]]:
    """Reward both sides of newly verified referrals, in a few statements however many there are."""
    if not referrals:
        return []
    why = [f"referral {r.id}" for r in referrals]
    rules = config.referrals
    referrer = _reward_many(session, [r.referrer_id for r in referrals], rules.reward_referrer, config, now, why)
    referred = _reward_many(session, [r.referred_id for r in referrals], rules.reward_referred, config, now, why)
    return [
        {"referral": r.id, "referrer_reward": a, "referred_reward": b}
        for r, a, b in zip(referrals, referrer, referred, strict=True)
    ]


def verify_on_purchase(
    *, session: Session, customer: Customer, purchase: Any, config: Config, now: datetime
) -> int | None:
    """Verify the customer's pending referral when this purchase qualifies; its id, or None."""
    referral = session.execute(
        select(Referral).where(col(Referral.referred_id) == customer.id, col(Referral.status) == "pending")
    ).scalar()
    if referral is None:
        return None
    threshold = parse_money(config.referrals.qualifying_purchase, config.currency.minor_digits)
    # Verified when the qualifying sale happened (a till history loads long after the fact).
    when = max(purchase.at, referral.created_at)
    if purchase.net_minor < threshold or not decide_referral(session, referral, "verified", when):
        return None
    reward_both(session, referral, config, now)
    return referral.id


def reject_referral(*, session: Session, referral_id: int, reason: str, now: datetime | None = None) -> Referral:
    referral = get_referral(session, referral_id)
    if not reason.strip():
        raise Invalid("a rejection needs a reason", fields=("reason",))
    if referral.status != "pending" or not decide_referral(
        session, referral, "rejected", now or utcnow(), reason.strip()
    ):
        raise Conflict(f"referral {referral_id} is already {referral.status}")
    return referral


# --- reading ---------------------------------------------------------------------------

STATUSES = ("pending", "verified", "rejected")


def list_referrals(
    *, session: Session, status: str | None = None, referrer: Customer | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    referrer_c = aliased(Customer, name="referrer_c")
    referred_c = aliased(Customer, name="referred_c")
    query = (
        select(Referral, col(referrer_c.name), col(referred_c.name))
        .join(referrer_c, col(referrer_c.id) == col(Referral.referrer_id))
        .join(referred_c, col(referred_c.id) == col(Referral.referred_id))
    )
    if status is not None:
        if status not in STATUSES:
            raise Invalid(f"unknown referral status {status!r}: use one of {', '.join(STATUSES)}")
        query = query.where(col(Referral.status) == status)
    if referrer is not None:
        query = query.where(col(Referral.referrer_id) == referrer.id)
    query = query.order_by(col(Referral.id))
    if limit:
        query = query.limit(limit)
    return [
        {
            "id": r.id,
            "referrer_id": r.referrer_id,
            "referrer": referrer_name,
            "referred_id": r.referred_id,
            "referred": referred_name,
            "status": r.status,
            "created_at": r.created_at,
            "decided_at": r.decided_at,
            "reason": r.reason,
        }
        for r, referrer_name, referred_name in session.execute(query)
    ]


def referral_tree(*, session: Session, customer: Customer, config: Config) -> dict[str, Any]:
    """Who this customer brought, and whom those brought, with each branch's size and revenue."""
    from crmcli.models import Purchase

    assert customer.id is not None
    down = select(literal(customer.id).label("id"), literal(0).label("depth")).cte("down", recursive=True)
    down = down.union_all(
        select(col(Referral.referred_id), down.c.depth + 1).join(down, col(Referral.referrer_id) == down.c.id)
    )
    revenue = (
        select(col(Purchase.customer_id), func.sum(col(Purchase.net_minor)).label("net"))
        .where(col(Purchase.refunded_at).is_(None))
        .group_by(col(Purchase.customer_id))
        .subquery()
    )
    rows = session.execute(
        select(
            down.c.id,
            col(Customer.name),
            func.coalesce(revenue.c.net, 0),
            col(Referral.referrer_id),
            col(Referral.status),
        )
        .join(Customer, col(Customer.id) == down.c.id)
        .outerjoin(revenue, revenue.c.customer_id == down.c.id)
        .outerjoin(Referral, col(Referral.referred_id) == down.c.id)
        .order_by(down.c.depth, down.c.id)
    ).all()
    digits = config.currency.minor_digits
    nodes: dict[int, dict[str, Any]] = {}
    for cid, name, net, parent, status in rows:
        nodes[cid] = {
            "id": cid,
            "name": name,
            "status": status if cid != customer.id else None,
            "revenue_minor": int(net),
            "referred": [],
        }
        if cid != customer.id and parent in nodes:
            nodes[parent]["referred"].append(nodes[cid])

    def finish(node: dict[str, Any]) -> tuple[int, int]:
        """(customers, revenue) of the branch below ``node``, also written into it."""
        own = node.pop("revenue_minor")
        count, total = 0, 0
        for child in node["referred"]:
            below, below_revenue = finish(child)
            count += below + 1
            total += below_revenue
        node["revenue"] = money(own, digits)
        node["branch_customers"] = count
        node["branch_revenue"] = money(total, digits)
        node["referred"] = node.pop("referred")  # keep the children last, after the figures
        return count, total + own

    root = nodes[customer.id]
    finish(root)
    return root
