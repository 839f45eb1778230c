"""Purchases: discounts, points, stages and referral verification in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Coupon, Customer, PointsEntry, Purchase
from crmcli.services import points as ledger
from crmcli.services.coupons import use_coupon
from crmcli.services.customers import STAGE_RANK, change_stage
from crmcli.values import money, utcnow


@dataclass(frozen=True)
class PurchaseInput:
    amount_minor: int
    at: datetime | None = None
    coupon: str | None = None
    points: int | None = None
    due_at: datetime | None = None
    paid_at: datetime | None = None
    unpaid: bool = False
    ref: str | None = None


def stage_after_purchases(current: str, purchases: int) -> str | None:
    """A first purchase makes a customer, a second a repeat customer; never a step back."""
    target = "customer" if purchases == 1 else "repeat" if purchases >= 2 else None
    if target is None or STAGE_RANK[target] <= STAGE_RANK[current]:
        return None
    return target


def live_purchase_count(session: Session, customer_id: int) -> int:
    return int(
        session.execute(
            select(func.count()).where(col(Purchase.customer_id) == customer_id, col(Purchase.refunded_at).is_(None))
        ).scalar_one()
    )


def add_purchase(
    *, session: Session, customer: Customer, data: PurchaseInput, config: Config, now: datetime | None = None
) -> tuple[Purchase, dict[str, Any]]:
    """Record a sale: coupon and points as discounts, points earned on the net amount,
    the stage advanced, and a pending referral verified by a first qualifying purchase."""
    now = now or utcnow()
    at = data.at or now
    assert customer.id is not None
    cid = customer.id
    if customer.erased_at is not None:
        raise Invalid(f"customer {cid} was erased")
    if data.amount_minor < 0:  # 0 is a free order: it counts as a purchase and earns nothing
        raise Invalid("the amount cannot be negative (record a refund with 'crmcli purchase refund')")
    if data.paid_at is not None and data.unpaid:
        raise Invalid("give --paid or --unpaid, not both")
    if data.due_at is not None and data.due_at < at:
        raise Invalid("the due date is before the purchase")
    if data.ref and session.execute(select(col(Purchase.id)).where(col(Purchase.ref) == data.ref)).first():
        raise Conflict(f"a purchase with ref {data.ref} already exists")
    ledger.lock_customer(session, cid)

    gross = data.amount_minor
    coupon: Coupon | None = None
    coupon_discount = 0
    if data.coupon:
        coupon, coupon_discount = use_coupon(
            session, code=data.coupon, customer_id=cid, amount_minor=gross, at=at, config=config
        )
    points_used = data.points or 0
    points_discount = 0
    if data.points is not None:
        if data.points <= 0:
            raise Invalid(f"points must be a positive whole number, not {data.points}")
        points_discount = ledger.points_value_minor(points_used, config)
        left = gross - coupon_discount
        if points_discount > left:
            raise Invalid(
                f"{points_used} points are worth {money(points_discount, config.currency.minor_digits)}, "
                f"more than the {money(left, config.currency.minor_digits)} left to pay"
            )
    net = gross - coupon_discount - points_discount
    paid_at = None if data.unpaid or (data.due_at is not None and data.paid_at is None) else (data.paid_at or at)

    purchase = Purchase(
        customer_id=cid,
        ref=data.ref,
        gross_minor=gross,
        coupon_discount_minor=coupon_discount,
        points_used=points_used,
        points_discount_minor=points_discount,
        net_minor=net,
        coupon_id=coupon.id if coupon else None,
        at=at,
        due_at=data.due_at,
        paid_at=paid_at,
        created_at=now,
    )
    session.add(purchase)
    session.flush()
    assert purchase.id is not None
    if points_used:
        ledger.record(
            session,
            customer_id=cid,
            delta=-points_used,
            kind="redeem",
            at=at,
            reason=f"purchase {purchase.id}",
            purchase_id=purchase.id,
        )
    earned = ledger.points_for_spend(net, config)
    ledger.record(
        session,
        customer_id=cid,
        delta=earned,
        kind="earn",
        at=at,
        reason=f"purchase {purchase.id}",
        purchase_id=purchase.id,
    )
    reset = _late_payment(session, purchase, config)

    new_stage = stage_after_purchases(customer.stage, live_purchase_count(session, cid))
    if new_stage:
        change_stage(session=session, customer=customer, stage=new_stage, now=at)

    from crmcli.services.referrals import verify_on_purchase

    referral = verify_on_purchase(session=session, customer=customer, purchase=purchase, config=config, now=now)
    return purchase, {"points_earned": earned, "points_reset": reset, "referral_verified": referral}


def is_late(purchase: Purchase) -> bool:
    return purchase.due_at is not None and purchase.paid_at is not None and purchase.paid_at > purchase.due_at


def _late_payment(session: Session, purchase: Purchase, config: Config) -> int:
    """Points removed because this purchase was paid late (0 when on time or disabled)."""
    if not is_late(purchase) or not config.points.reset_on_late_payment:
        return 0
    assert purchase.paid_at is not None
    return ledger.reset_balance(
        session,
        customer_id=purchase.customer_id,
        at=purchase.paid_at,
        reason=f"late payment of purchase {purchase.id}",
    )


def get_purchase(session: Session, purchase_id: int) -> Purchase:
    found = session.get(Purchase, purchase_id)
    if found is None:
        raise NotFound(f"no purchase {purchase_id}", hint="see 'crmcli purchase list'")
    return found


def _locked_purchase(session: Session, purchase_id: int) -> Purchase:
    """The purchase, read again after its customer's ledger is locked (two payers or refunders
    at once then see each other's change)."""
    purchase = get_purchase(session, purchase_id)
    ledger.lock_customer(session, purchase.customer_id)
    session.refresh(purchase)
    return purchase


def pay_purchase(
    *, session: Session, purchase_id: int, config: Config, at: datetime | None = None
) -> tuple[Purchase, dict[str, Any]]:
    purchase = _locked_purchase(session, purchase_id)
    if purchase.paid_at is not None:
        paid = purchase.paid_at.astimezone(config.tz).isoformat(timespec="seconds")
        raise Conflict(f"purchase {purchase_id} was already paid at {paid}")
    if purchase.refunded_at is not None:
        raise Invalid(f"purchase {purchase_id} was refunded")
    at = at or utcnow()
    if at < purchase.at:
        raise Invalid("the payment is before the purchase")
    purchase.paid_at = at
    session.add(purchase)
    session.flush()
    return purchase, {"late": is_late(purchase), "points_reset": _late_payment(session, purchase, config)}


def refund_purchase(
    *, session: Session, purchase_id: int, config: Config, at: datetime | None = None
) -> tuple[Purchase, dict[str, Any]]:
    """Mark a purchase refunded; reverse the points it earned and give back the points it used.

    The earned points are reversed as far as the balance allows (never below zero); any
    shortfall is reported, so a buy-and-refund loop earns nothing it can keep.
    """
    purchase = _locked_purchase(session, purchase_id)
    if purchase.refunded_at is not None:
        raise Conflict(f"purchase {purchase_id} was already refunded")
    at = at or utcnow()
    purchase.refunded_at = at
    session.add(purchase)
    cid = purchase.customer_id
    earned = int(
        session.execute(
            select(func.coalesce(func.sum(col(PointsEntry.delta)), 0)).where(
                col(PointsEntry.purchase_id) == purchase.id, col(PointsEntry.kind) == "earn"
            )
        ).scalar_one()
    )
    if purchase.points_used:
        ledger.record(
            session,
            customer_id=cid,
            delta=purchase.points_used,
            kind="refund",
            at=at,
            reason=f"points used on refunded purchase {purchase.id}",
            purchase_id=purchase.id,
        )
    reversible = min(earned, ledger.balance(session, cid))
    ledger.record(
        session,
        customer_id=cid,
        delta=-reversible,
        kind="refund",
        at=at,
        reason=f"refund of purchase {purchase.id}",
        purchase_id=purchase.id,
    )
    return purchase, {
        "points_reversed": reversible,
        "points_shortfall": earned - reversible,
        "points_returned": purchase.points_used,
    }


def purchase_row(p: Purchase, config: Config, name: str | None = None) -> dict[str, Any]:
    digits = config.currency.minor_digits
    return {
        "id": p.id,
        "customer_id": p.customer_id,
        "customer": name,
        "at": p.at,
        "amount": money(p.gross_minor, digits),
        "coupon_discount": money(p.coupon_discount_minor, digits),
        "points_used": p.points_used,
        "points_discount": money(p.points_discount_minor, digits),
        "net": money(p.net_minor, digits),
        "due_at": p.due_at,
        "paid_at": p.paid_at,
        "late": is_late(p),
        "refunded_at": p.refunded_at,
        "ref": p.ref,
    }


def list_purchases(
    *,
    session: Session,
    config: Config,
    customer: Customer | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    unpaid: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    query = select(Purchase, col(Customer.name)).join(Customer, col(Customer.id) == col(Purchase.customer_id))
    if customer is not None:
        query = query.where(col(Purchase.customer_id) == customer.id)
    if since is not None:
        query = query.where(col(Purchase.at) >= since)
    if until is not None:
        query = query.where(col(Purchase.at) <= until)
    if unpaid:
        query = query.where(col(Purchase.paid_at).is_(None), col(Purchase.refunded_at).is_(None))
    query = query.order_by(col(Purchase.at), col(Purchase.id))
    if limit:
        query = query.limit(limit)
    return [purchase_row(p, config, name) for p, name in session.execute(query)]
