"""Referrals: who brought whom, with the guards that keep the record honest."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, exists, func, literal, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from crmcli.audit import touch
from crmcli.choices import REFERRAL_STATUSES as STATUSES
from crmcli.config import Config, Reward
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Customer, Referral, table_of
from crmcli.services.signals import blocking, find_signals
from crmcli.sql import among, bound_ids
from crmcli.values import money, parse_money, parse_when, utcnow

REFERRAL_LOCK = 0x63726D_726566  # "crm" "ref": the advisory lock key for referral changes
UNDECIDED = ("pending", "review")  # what a person may still verify or reject


def would_cycle(session: Session, referrer_id: int, referred_id: int) -> bool:
    """True when ``referred`` already brought ``referrer``, directly or down a chain."""
    if referrer_id == referred_id:
        return True
    # Walk up from the referrer through its referrers; a cycle means we meet ``referred``.
    chain = select(literal(referrer_id).label("id")).cte("chain", recursive=True)
    chain = chain.union(select(col(Referral.referrer_id)).join(chain, col(Referral.referred_id) == chain.c.id))
    hit = session.execute(select(chain.c.id).where(chain.c.id == referred_id).limit(1)).first()
    return hit is not None


def _referrer_chain(session: Session, customer_id: int) -> list[int]:
    """The customer's referrer, that one's referrer, and so on (stops at a repeat, so a
    database that already holds a cycle cannot loop)."""
    chain: list[int] = []
    seen = {customer_id}
    current = customer_id
    while True:
        up = session.execute(select(col(Referral.referrer_id)).where(col(Referral.referred_id) == current)).scalar()
        if up is None or up in seen:
            return chain
        chain.append(up)
        seen.add(up)
        current = up


def merge_would_cycle(session: Session, keep_id: int, drop_id: int) -> str | None:
    """Why merging ``drop`` into ``keep`` would close a circle of referrals, or None.

    A direct referral between the two disappears with the merge; one through others
    (D brought X, who brought K) would leave the merged customer its own referrer.
    """
    for low, high in ((keep_id, drop_id), (drop_id, keep_id)):
        chain = _referrer_chain(session, low)
        if high in chain[1:]:
            between = chain[: chain.index(high)]
            return (
                f"customer {high} brought customer {low} through "
                + ", ".join(f"customer {c}" for c in between)
                + "; merged, they would be their own referrer"
            )
    return None


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


def serialise_referral_changes(session: Session) -> None:
    """Let one transaction at a time change who referred whom, so two at once cannot close a
    circle between them (A->B and B->A both passing their check). SQLite's BEGIN IMMEDIATE
    already serialises writers; PostgreSQL takes a transaction-scoped advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(REFERRAL_LOCK)))


def record_referral(
    *, session: Session, referrer: Customer, referred: Customer, now: datetime | None = None
) -> Referral:
    """A pending referral, refused for self-referral, a second referrer, or a cycle."""
    now = now or utcnow()
    assert referrer.id is not None and referred.id is not None
    serialise_referral_changes(session)
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
    """Move a pending (or held for review) referral to ``status`` in one conditional UPDATE;
    False if it was decided already.

    Only the one transaction whose UPDATE matched goes on to reward, so verifying
    twice, or from two processes at once, rewards once.
    """
    table = table_of(Referral)
    result = session.execute(
        update(table)
        .where(table.c.id == referral.id, table.c.status.in_(UNDECIDED))
        .values(status=status, decided_at=now, reason=reason)
    )
    session.refresh(referral)
    decided = int(getattr(result, "rowcount", 0)) == 1
    if decided:
        touch(session, [referral.referrer_id, referral.referred_id])
    return decided


def _rewards_given(session: Session, referrals: list[Referral]) -> set[tuple[int, int]]:
    """(referral, customer) pairs already rewarded: a coupon not voided, or points."""
    referral_ids = [r.id for r in referrals if r.id is not None]
    sides = {cid for r in referrals for cid in (r.referrer_id, r.referred_id)}
    from crmcli.models import Coupon, PointsEntry

    coupons, entries = table_of(Coupon), table_of(PointsEntry)
    given: set[tuple[int, int]] = {
        (rid, cid)
        for rid, cid in session.execute(
            select(coupons.c.referral_id, coupons.c.customer_id).where(
                coupons.c.referral_id.in_(referral_ids), coupons.c.voided_at.is_(None)
            )
        )
    }
    periods = {f"r{rid}": rid for rid in referral_ids}
    for cid, period in session.execute(
        select(entries.c.customer_id, entries.c.period).where(
            # the customers first: the (customer, kind, period) index answers it
            entries.c.customer_id.in_(sides),
            entries.c.kind == "referral",
            entries.c.period.in_(list(periods)),
        )
    ):
        given.add((periods[period], cid))
    return given


def _reward_many(
    session: Session, pairs: list[tuple[int, int]], reward: Reward, config: Config, now: datetime
) -> list[dict[str, Any]]:
    """The same reward for several (referral, customer) pairs at once: points, or one coupon each."""
    from crmcli.bulk import insert_rows
    from crmcli.models import PointsEntry
    from crmcli.services.coupons import CouponTerms, issue_coupons

    if not pairs:
        return []
    customer_ids = [cid for _, cid in pairs]
    if reward.points is not None:
        entries = [
            {
                "customer_id": cid,
                "delta": reward.points,
                "kind": "referral",
                "reason": f"referral {rid}",
                "purchase_id": None,
                "period": f"r{rid}",  # with the unique (customer, kind, period) index: once per side
                "at": now,
            }
            for rid, cid in pairs
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
    coupons = issue_coupons(
        session=session, customer_ids=customer_ids, terms=terms, now=now, referral_ids=[rid for rid, _ in pairs]
    )
    return [{"customer_id": cid, "coupon": c.code} for cid, c in zip(customer_ids, coupons, strict=True)]


def verify_referral(
    *, session: Session, referral_id: int, config: Config, now: datetime | None = None
) -> dict[str, Any]:
    """Verify a pending referral by hand and reward both sides once."""
    from crmcli.services.points import lock_customer

    now = now or utcnow()
    referral = get_referral(session, referral_id)
    # The same lock order as a purchase (the referred customer, then the referral), so a
    # verification racing the customer's first purchase waits instead of deadlocking.
    lock_customer(session, referral.referred_id)
    session.refresh(referral)
    if referral.status not in UNDECIDED or not decide_referral(session, referral, "verified", now):
        raise Conflict(f"referral {referral_id} is already {referral.status}")
    from crmcli.services.signals import find_signals, record_signals

    assert referral.id is not None
    record_signals(session, find_signals(session, config, [referral.id], now), [referral.id])
    return reward_all(session, [referral], config, now)[0]


def reward_all(session: Session, referrals: list[Referral], config: Config, now: datetime) -> list[dict[str, Any]]:
    """Reward both sides of newly verified referrals, each side once in a referral's life (a
    referral verified again after a refund rewards only a side whose reward was voided)."""
    if not referrals:
        return []
    rules = config.referrals
    given = _rewards_given(session, referrals)
    sides: list[dict[tuple[int, int], dict[str, Any]]] = []
    for reward, side in ((rules.reward_referrer, "referrer_id"), (rules.reward_referred, "referred_id")):
        pairs = [(r.id, getattr(r, side)) for r in referrals if r.id is not None]
        todo = [pair for pair in pairs if pair not in given]
        sides.append(dict(zip(todo, _reward_many(session, todo, reward, config, now), strict=True)))
    rewarded = [r.id for r in referrals if r.id is not None]
    session.execute(update(table_of(Referral)).where(table_of(Referral).c.id.in_(rewarded)).values(rewarded_at=now))
    return [
        {
            "referral": r.id,
            "referrer_reward": sides[0].get((r.id, r.referrer_id)),
            "referred_reward": sides[1].get((r.id, r.referred_id)),
        }
        for r in referrals
        if r.id is not None
    ]


def verify_referrals(
    session: Session, config: Config, customer_ids: Iterable[int], *, now: datetime, pending: bool | None = None
) -> dict[int, int]:
    """Verify the pending referrals of these (referred) customers who have a qualifying live
    purchase, as of the first one, and reward both sides: a few statements per 900 customers.
    ``pending`` is the answer to :func:`pending_among` when the caller has asked it already
    (for at most 900 customers).

    Returns referred customer id -> referral id for the referrals verified.
    """
    from crmcli.models import Purchase
    from crmcli.services.points import settle_points

    r, p = table_of(Referral), table_of(Purchase)
    verified: dict[int, int] = {}
    ids = sorted(set(customer_ids))
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        if pending is not None:
            answer, pending = pending, None  # the caller's, for its one chunk
        else:
            many, value = bound_ids(chunk)
            answer = bool(session.execute(_any_pending(many), {"ids": value}).scalar())
        if not answer:
            continue  # no pending referral among them (a statement built once, answered by an index)
        threshold = parse_money(config.referrals.qualifying_purchase, config.currency.minor_digits)
        qualifying = and_(p.c.customer_id == r.c.referred_id, p.c.refunded_at.is_(None), p.c.net_minor >= threshold)
        first_at = select(func.min(p.c.at)).where(qualifying).scalar_subquery()
        found = session.execute(
            select(Referral, first_at)
            .where(r.c.status == "pending", r.c.referred_id.in_(chunk), first_at.is_not(None))
            .order_by(r.c.id)
            .with_for_update()
        ).all()
        if not found:
            continue
        which = _first_qualifying(session, [ref.referred_id for ref, _ in found], threshold)
        decided = [(ref, max(at, ref.created_at)) for ref, at in found]
        # The fraud checks see the referral as it will stand: its qualifying purchase set.
        session.execute(
            update(r).where(r.c.id == bindparam("rid")).values(purchase_id=bindparam("pid")),
            [{"rid": ref.id, "pid": which.get(ref.referred_id)} for ref, _ in found],
        )
        signals = find_signals(session, config, [ref.id for ref, _ in found if ref.id is not None], now)
        held = {rid for rid, names in signals.items() if blocking(names)}
        session.execute(
            update(r)
            .where(r.c.id == bindparam("rid"))
            .values(
                status=bindparam("status"),
                decided_at=bindparam("when"),
                reason=bindparam("why"),
                signals=bindparam("found"),
            ),
            [
                {
                    "rid": ref.id,
                    "status": "review" if ref.id in held else "verified",
                    "when": when,
                    "why": "held for review: " + ", ".join(blocking(signals[ref.id])) if ref.id in held else None,
                    "found": " ".join(signals.get(ref.id, [])) or None if ref.id else None,
                }
                for ref, when in decided
            ],
        )
        passed = [(ref, when) for ref, when in decided if ref.id not in held]
        if config.referrals.hold_days == 0:
            # Rewarded when verified (a backdated sale's reward is dated with it), never later than now.
            by_moment: dict[datetime, list[Referral]] = {}
            for ref, when in passed:
                by_moment.setdefault(min(when, now), []).append(ref)  # their ids and sides, all reward_all needs
            for when, referrals in sorted(by_moment.items()):
                reward_all(session, referrals, config, when)
            # Points dated in the past may fall before a reset already recorded: replay those ledgers
            # (rewards in coupons leave the ledgers as they were).
            if config.referrals.reward_referrer.points or config.referrals.reward_referred.points:
                sides = {side for ref, _ in passed for side in (ref.referrer_id, ref.referred_id)}
                settle_points(session, config, sides, now=now)
        verified.update((ref.referred_id, ref.id) for ref, _ in passed if ref.id is not None)
    return verified


@functools.cache
def _any_pending(many: bool) -> Any:
    return select(pending_among(many))


@functools.cache
def pending_among(many: bool) -> Any:
    """Has any of the customers bound as ``ids`` (see :func:`crmcli.sql.bound_ids`) a pending referral?"""
    r = table_of(Referral)
    return exists().where(among(r.c.referred_id, "ids", many), r.c.status == "pending")


def _first_qualifying(session: Session, customer_ids: list[int], threshold: int) -> dict[int, int]:
    """Each customer's first live purchase of at least ``threshold`` (earliest, then lowest id)."""
    from crmcli.models import Purchase

    p = table_of(Purchase)
    first: dict[int, tuple[datetime, int]] = {}
    for cid, at, pid in session.execute(
        select(p.c.customer_id, p.c.at, p.c.id).where(
            p.c.customer_id.in_(customer_ids), p.c.refunded_at.is_(None), p.c.net_minor >= threshold
        )
    ):
        if cid not in first or (at, pid) < first[cid]:
            first[cid] = (at, pid)
    return {cid: pid for cid, (_, pid) in first.items()}


def reopen_referrals(session: Session, purchase_ids: list[int], *, now: datetime | None = None) -> int:
    """Referrals verified by these (now refunded) purchases go back to pending; their reward
    coupons not yet used are voided, dated at the refund (``now`` for a sale not marked
    refunded). A later qualifying purchase verifies them again."""
    from crmcli.models import Coupon, Purchase

    if not purchase_ids:
        return 0
    now = now or utcnow()
    r, c, p = table_of(Referral), table_of(Coupon), table_of(Purchase)
    reopened = session.execute(
        select(r.c.id, p.c.refunded_at).join(p, p.c.id == r.c.purchase_id).where(r.c.purchase_id.in_(purchase_ids))
    ).all()
    if not reopened:
        return 0
    ids = [rid for rid, _ in reopened]
    session.execute(
        update(r)
        .where(r.c.id.in_(ids))
        .values(status="pending", decided_at=None, purchase_id=None, rewarded_at=None, reason=None)
    )
    session.execute(
        update(c)
        .where(c.c.referral_id == bindparam("rid"), c.c.uses == 0, c.c.voided_at.is_(None))
        .values(voided_at=bindparam("when")),
        [{"rid": rid, "when": refunded or now} for rid, refunded in reopened],
    )
    return len(reopened)


def reject_referral(*, session: Session, referral_id: int, reason: str, now: datetime | None = None) -> Referral:
    from crmcli.services.points import lock_customer

    referral = get_referral(session, referral_id)
    lock_customer(session, referral.referred_id)  # the lock order of verify_referral
    session.refresh(referral)
    if not reason.strip():
        raise Invalid("a rejection needs a reason", fields=("reason",))
    if referral.status not in UNDECIDED or not decide_referral(
        session, referral, "rejected", now or utcnow(), reason.strip()
    ):
        raise Conflict(f"referral {referral_id} is already {referral.status}")
    return referral


# --- reading ---------------------------------------------------------------------------


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
            "signals": r.signals,
        }
        for r, referrer_name, referred_name in session.execute(query)
    ]


def referral_tree(*, session: Session, customer: Customer, config: Config) -> dict[str, Any]:
    """Who this customer brought, and whom those brought, with each branch's size and revenue."""
    from crmcli.models import Purchase

    assert customer.id is not None
    # A path down a forest has fewer steps than there are referrals: the bound ends the walk
    # even on a database that already holds a circle.
    bound = session.execute(select(func.count()).select_from(Referral)).scalar_one()
    down = select(literal(customer.id).label("id"), literal(0).label("depth")).cte("down", recursive=True)
    down = down.union_all(
        select(col(Referral.referred_id), down.c.depth + 1)
        .join(down, col(Referral.referrer_id) == down.c.id)
        .where(down.c.depth < bound)
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
    circle = False
    for cid, name, net, parent, status in rows:
        if cid in nodes:
            circle = True  # reached again: shown once
            continue
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
    if circle:
        root["warning"] = "these referrals form a circle; each customer is shown once"
    return root
