"""Purchases: discounts, points, stages and referral verification in one transaction."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from crmcli.audit import record_insert
from crmcli.config import Config
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Coupon, Customer, PointsEntry, Purchase, as_written, table_of
from crmcli.services import points as ledger
from crmcli.services.coupons import use_coupon
from crmcli.services.stages import last_sale, settle_stages
from crmcli.sql import bound_ids, is_in, one_of
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
        raise Invalid("the amount cannot be negative: a refund is recorded on the sale it refunds")
    if data.paid_at is not None and data.unpaid:
        raise Invalid("a purchase cannot be both paid and unpaid", fields=("paid_at", "unpaid"))
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
        ledger.settle_points(session, config, [cid], now=now)  # a reset that is due comes first
        have = ledger.balance(session, cid, at)
        if have < points_used:
            raise Invalid(f"customer {cid} has {have} points, fewer than the {points_used} asked for")
        points_discount = ledger.points_value_minor(points_used, config)
        left = gross - coupon_discount
        if points_discount > left:
            raise Invalid(
                f"{points_used} points are worth {money(points_discount, config.currency.minor_digits)}, "
                f"more than the {money(left, config.currency.minor_digits)} left to pay"
            )
    net = gross - coupon_discount - points_discount
    paid_at = None if data.unpaid or (data.due_at is not None and data.paid_at is None) else (data.paid_at or at)

    values: dict[str, Any] = {
        "customer_id": cid,
        "ref": data.ref,
        "gross_minor": gross,
        "coupon_discount_minor": coupon_discount,
        "points_used": points_used,
        "points_discount_minor": points_discount,
        "net_minor": net,
        "coupon_id": coupon.id if coupon else None,
        "at": at,
        "due_at": data.due_at,
        "paid_at": paid_at,
        "created_at": now,
    }
    # One INSERT, not a unit-of-work flush: a till (or a batch of a thousand sales) pays for
    # one row, and the audit records it as the flush would have.
    key = session.connection().execute(_insert_purchase(), values).inserted_primary_key
    assert key is not None
    pid = key[0]
    record_insert(session, "purchase", pid, values)
    purchase = as_written(Purchase, {"id": pid, **values})
    settled: dict[int, str] = {}
    outcome = apply_purchase_rules(session, config, [purchase], now=now, settled=settled)[0]
    # The rules may have changed its stage in SQL: read that column alone, unless the stage
    # rule says where the sale left the customer.
    stage = settled[cid] if cid in settled else session.execute(_stage_of(), {"cid": cid}).scalar_one()
    set_committed_value(customer, "stage", stage)
    return purchase, outcome


@functools.cache
def _insert_purchase() -> Any:
    return insert(table_of(Purchase))


@functools.cache
def _stage_of() -> Any:
    c = table_of(Customer)
    return select(c.c.stage).where(c.c.id == bindparam("cid"))


def apply_purchase_rules(
    session: Session, config: Config, purchases: list[Purchase], *, now: datetime, settled: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """The rules after new sales are written: points, stages, referrals (see each service).
    ``settled`` receives the stage of each customer the stage rule could settle from the
    sale alone (see :func:`settle_stages`)."""
    from crmcli.services.referrals import verify_referrals

    ids = [p.id for p in purchases if p.id is not None]
    customers = sorted({p.customer_id for p in purchases})
    before = {p.id: p for p in purchases}
    ledger.record_purchase_points(session, config, ids, spent=any(p.points_used for p in purchases))
    # Nothing else changed these customers since their stages were settled: only new sales,
    # which the stage rule can settle from the last one when each customer has one.
    sold_since = min(p.at for p in purchases) if len(customers) == len(purchases) else None
    last, may, pending = None, None, None
    if len(purchases) == 1:  # a till's sale: the rules' first questions, in one round trip
        last, may, pending = _first_questions(session, config, customers, sold_since, now)
    # The sales are this transaction's only change to these ledgers: a customer whose last
    # replay still holds is not replayed (see settle_points).
    replayed = ledger.settle_points(session, config, customers, now=now, sold_since=sold_since, may=may)
    settle_stages(session, customers, sold_since=sold_since, settled=settled, asked=last)
    verified = verify_referrals(session, config, customers, now=now, pending=pending)
    if replayed:
        amounts = _points_by_purchase(session, ids, ("earn", "reset"))
        earned, reset = amounts.get("earn", {}), amounts.get("reset", {})
    else:
        # No ledger was replayed (nothing to derive, or the last replay still holds: no sale
        # fell due since, these included), so no removal names these sales, and each sale's
        # entry is what it earned (record_purchase_points wrote just that): nothing to read back.
        earned = {p.id: ledger.points_for_spend(p.net_minor, config) for p in purchases if p.id is not None}
        reset = {}
    return [
        {
            "points_earned": earned.get(pid, 0),
            "points_reset": -reset.get(pid, 0),
            "referral_verified": verified.get(before[pid].customer_id),
        }
        for pid in ids
    ]


def _first_questions(
    session: Session, config: Config, customers: list[int], sold_since: datetime | None, now: datetime
) -> tuple[Sequence[Any], bool, bool]:
    """The first question each rule asks about a till's customer, each its rule's own: is the
    sale the last event of the stage history (:func:`stages.last_sale`), is there anything to
    derive in the ledger (:func:`points.may_settle`), is a referral pending
    (:func:`referrals.pending_among`)? One statement, instead of one each."""
    many, value = bound_ids(customers)
    asks = _questions(ledger.Expiry.of(config) is not None, config.points.reset_on_late_payment, many)
    rows = session.execute(asks, {**ledger.may_settle_params(value, config, now), "since": sold_since}).all()
    return rows, any(row[-2] for row in rows), any(row[-1] for row in rows)


@functools.cache
def _questions(expiring: bool, resetting: bool, many: bool) -> Any:
    from crmcli.services.referrals import pending_among

    return last_sale(many).add_columns(ledger.may_settle(expiring, resetting, many), pending_among(many))


def _points_by_purchase(session: Session, purchase_ids: list[int], kinds: tuple[str, ...]) -> dict[str, dict[int, int]]:
    """kind -> purchase id -> the sum of the entries of that kind naming the purchase, in one query."""
    e = table_of(PointsEntry)
    found: dict[str, dict[int, int]] = {}
    for kind, pid, total in session.execute(
        select(e.c.kind, e.c.purchase_id, func.sum(e.c.delta))
        .where(is_in(e.c.purchase_id, purchase_ids), one_of(e.c.kind, kinds))
        .group_by(e.c.kind, e.c.purchase_id)
    ):
        found.setdefault(kind, {})[pid] = int(total)
    return found


def is_late(purchase: Purchase) -> bool:
    return purchase.due_at is not None and purchase.paid_at is not None and purchase.paid_at > purchase.due_at


def get_purchase(session: Session, purchase_id: int) -> Purchase:
    found = session.get(Purchase, purchase_id)
    if found is None:
        raise NotFound(f"no purchase {purchase_id}", subject="purchase", key=purchase_id)
    return found


def _locked_purchase(session: Session, purchase_id: int) -> Purchase:
    """The purchase, read again after its customer's ledger is locked (two payers or refunders
    at once then see each other's change)."""
    purchase = get_purchase(session, purchase_id)
    ledger.lock_customer(session, purchase.customer_id)
    session.refresh(purchase)
    return purchase


def pay_purchase(
    *, session: Session, purchase_id: int, config: Config, at: datetime | None = None, now: datetime | None = None
) -> tuple[Purchase, dict[str, Any]]:
    purchase = _locked_purchase(session, purchase_id)
    if purchase.paid_at is not None:
        paid = purchase.paid_at.astimezone(config.tz).isoformat(timespec="seconds")
        raise Conflict(f"purchase {purchase_id} was already paid at {paid}")
    if purchase.refunded_at is not None:
        raise Invalid(f"purchase {purchase_id} was refunded")
    now = now or utcnow()
    at = at or now
    if at < purchase.at:
        raise Invalid("the payment is before the purchase")
    purchase.paid_at = at
    session.add(purchase)
    session.flush()
    ledger.settle_points(session, config, [purchase.customer_id], now=now)
    assert purchase.id is not None
    reset = _points_by_purchase(session, [purchase.id], ("reset",)).get("reset", {})
    return purchase, {"late": is_late(purchase), "points_reset": -reset.get(purchase.id, 0)}


def refund_purchase(
    *, session: Session, purchase_id: int, config: Config, at: datetime | None = None, now: datetime | None = None
) -> tuple[Purchase, dict[str, Any]]:
    """Mark a purchase refunded: the points it used come back, the points it earned are
    reversed as far as the customer still holds them (a buy-and-refund loop keeps nothing),
    the stage is replayed, and a referral this sale verified goes back to pending."""
    purchase = _locked_purchase(session, purchase_id)
    if purchase.refunded_at is not None:
        raise Conflict(f"purchase {purchase_id} was already refunded")
    now = now or utcnow()
    at = at or now
    if at < purchase.at:
        raise Invalid("the refund is before the purchase")
    purchase.refunded_at = at
    session.add(purchase)
    session.flush()
    return purchase, apply_refund_rules(session, config, [purchase], now=now)[0]


def apply_refund_rules(
    session: Session, config: Config, purchases: list[Purchase], *, now: datetime
) -> list[dict[str, Any]]:
    """The rules after sales are marked refunded: points, stages, referrals."""
    from crmcli.services.referrals import reopen_referrals, verify_referrals

    ids = [p.id for p in purchases if p.id is not None]
    customers = sorted({p.customer_id for p in purchases})
    ledger.record_refund_points(session, ids)
    ledger.settle_points(session, config, customers, now=now)
    settle_stages(session, customers)
    reopen_referrals(session, ids)
    verify_referrals(session, config, customers, now=now)
    reversed_ = _points_by_purchase(session, ids, ("reversal",)).get("reversal", {})
    return [
        {
            "points_reversed": -reversed_.get(p.id, 0),
            "points_shortfall": ledger.points_for_spend(p.net_minor, config) + reversed_.get(p.id, 0),
            "points_returned": p.points_used,
        }
        for p in purchases
        if p.id is not None
    ]


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
    query = query.order_by(col(Purchase.at).desc(), col(Purchase.id).desc())  # newest first
    if limit:
        query = query.limit(limit)
    return [purchase_row(p, config, name) for p, name in session.execute(query)]
