"""A customer's lifetime profile: totals, tier, points, referrals, coupons, history, timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import NotFound
from crmcli.models import Coupon, Customer, Interaction, Purchase, Referral, StageChange, UTCDateTime, table_of
from crmcli.services.customers import tags_of
from crmcli.services.history import referral_status_at
from crmcli.services.points import balance, balance_as_of, ledger, ledger_as_of, lock_customer, settle_points
from crmcli.values import money, utcnow


def _live(as_of: datetime | None) -> Any:
    """Purchases not refunded (by ``as_of``, and made by then)."""
    if as_of is None:
        return col(Purchase.refunded_at).is_(None)
    return and_(col(Purchase.at) <= as_of, or_(col(Purchase.refunded_at).is_(None), col(Purchase.refunded_at) > as_of))


def customer_totals(session: Session, customer_id: int, as_of: datetime | None = None) -> dict[str, Any]:
    """Orders, net spend and last purchase, refunds excluded (as they stood at ``as_of``)."""
    orders, net, last = session.execute(
        select(func.count(), func.coalesce(func.sum(col(Purchase.net_minor)), 0), func.max(col(Purchase.at))).where(
            col(Purchase.customer_id) == customer_id, _live(as_of)
        )
    ).one()
    return {"orders": orders, "net_minor": int(net), "last_purchase": last}


def tier_for(net_minor: int, config: Config) -> str:
    spend = money(net_minor, config.currency.minor_digits)
    assert spend is not None
    name = config.tiers[0].name
    for tier in config.tiers:
        if spend >= tier.min_spend:
            name = tier.name
    return name


def customer_profile(
    *, session: Session, customer: Customer, config: Config, timeline: int = 10, as_of: datetime | None = None
) -> dict[str, Any]:
    """Everything known about one customer, as plain data (late-payment resets due by now
    are recorded first, as for every read of points).

    With ``as_of``, the profile as it stood then, and nothing is written: the stage from the
    stage history, purchases made and not yet refunded then, the points ledger as of then,
    referrals with their status then, coupons issued by then with their uses and voids then.
    """
    assert customer.id is not None
    cid = customer.id
    if as_of is not None and customer.created_at > as_of:
        raise NotFound(f"customer {cid} had not joined yet then", subject="customer", key=cid)
    if as_of is None:
        lock_customer(session, cid)  # as a sale does: two settles of one ledger never interleave
        settle_points(session, config, [customer.id], strict=False)
    digits = config.currency.minor_digits
    totals = customer_totals(session, cid, as_of)
    r = table_of(Referral)
    moment = as_of or utcnow()
    status = referral_status_at(config, moment) if as_of is not None else r.c.status
    recorded = r.c.created_at <= literal(moment, UTCDateTime())
    referrer = session.execute(
        select(r.c.referrer_id, status, col(Customer.name))
        .join(Customer, col(Customer.id) == r.c.referrer_id)
        .where(r.c.referred_id == cid, recorded)
    ).first()
    referred = session.execute(
        select(r.c.referred_id, col(Customer.name), status)
        .join(Customer, col(Customer.id) == r.c.referred_id)
        .where(r.c.referrer_id == cid, recorded)
        .order_by(r.c.id)
    ).all()
    from crmcli.services.coupons import coupon_row, coupons_as_of

    if as_of is None:
        coupons = (
            session.execute(select(Coupon).where(col(Coupon.customer_id) == cid).order_by(col(Coupon.id)))
            .scalars()
            .all()
        )
        coupon_rows = [coupon_row(c, config) for c in coupons]
    else:
        coupon_rows = [coupon_row(c, config, now=as_of, uses=n) for c, n in coupons_as_of(session, cid, as_of)]
    sc = table_of(StageChange)
    history = select(sc.c.at, sc.c.from_stage, sc.c.to_stage).where(sc.c.customer_id == cid)
    if as_of is not None:
        history = history.where(sc.c.at <= as_of)
    stage_history = [
        {"at": at, "from": from_stage, "to": to_stage}
        for at, from_stage, to_stage in session.execute(history.order_by(sc.c.id))
    ]
    if as_of is not None:
        stage_history.sort(key=lambda step: step["at"])  # derived steps are rewritten with new ids
    stage = customer.stage if as_of is None else (stage_history[-1]["to"] if stage_history else customer.stage)
    return {
        "id": cid,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "company": customer.company,
        "city": customer.city,
        "source": customer.source,
        "stage": stage,
        "ref": customer.ref,
        "referral_code": customer.referral_code,
        "note": customer.note,
        "birthday": customer.birthday,
        "created_at": customer.created_at,
        "erased_at": customer.erased_at,
        "tags": tags_of(session, [cid])[cid],
        "totals": {
            "orders": totals["orders"],
            "net_spend": money(totals["net_minor"], digits),
            "last_purchase": totals["last_purchase"],
        },
        "points": balance(session, cid) if as_of is None else balance_as_of(session, config, cid, as_of),
        "tier": tier_for(totals["net_minor"], config),
        "referred_by": ({"id": referrer[0], "name": referrer[2], "status": referrer[1]} if referrer else None),
        "referred": [{"id": r[0], "name": r[1], "status": r[2]} for r in referred],
        "coupons": coupon_rows,
        "stage_history": stage_history,
        "timeline": recent_timeline(session, cid, config, limit=timeline, as_of=as_of),
    }


def recent_timeline(
    session: Session, customer_id: int, config: Config, *, limit: int, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """The latest interactions and purchases (up to ``as_of``), newest first."""
    digits = config.currency.minor_digits
    events: list[dict[str, Any]] = []
    i, p = table_of(Interaction), table_of(Purchase)  # Core: the columns shown, no ORM objects to build
    interactions = select(i.c.at, i.c.kind, i.c.summary, i.c.rating).where(i.c.customer_id == customer_id)
    bought = select(p.c.at, p.c.net_minor, p.c.refunded_at).where(p.c.customer_id == customer_id)
    if as_of is not None:
        interactions = interactions.where(i.c.at <= as_of)
        bought = bought.where(p.c.at <= as_of)
    for at, kind, summary, rating in session.execute(interactions.order_by(i.c.at.desc(), i.c.id.desc()).limit(limit)):
        detail = summary or ""
        if rating is not None:
            detail = f"rating {rating}" + (f": {detail}" if detail else "")
        events.append({"at": at, "event": kind, "detail": detail})
    for at, net_minor, refunded_at in session.execute(bought.order_by(p.c.at.desc(), p.c.id.desc()).limit(limit)):
        refunded = refunded_at is not None and (as_of is None or refunded_at <= as_of)
        detail = str(money(net_minor, digits)) + (" (refunded)" if refunded else "")
        events.append({"at": at, "event": "purchase", "detail": detail})
    events.sort(key=lambda e: e["at"], reverse=True)
    return events[:limit]


def points_summary(
    *,
    session: Session,
    config: Config,
    customer_id: int,
    limit: int | None = 20,
    now: datetime | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Balance, tier, the points expiring in the next 30 days and the latest entries, after the
    removals due by ``now`` are recorded.

    With ``as_of``: as they stood then, and nothing is written."""
    from crmcli.services.expiry import expiring_soon

    if as_of is not None:
        entries = ledger_as_of(session, config, customer_id, as_of)
        return {
            "customer_id": customer_id,
            "balance": sum(entry["delta"] for entry in entries),
            "tier": tier_for(customer_totals(session, customer_id, as_of)["net_minor"], config),
            "expiring_soon": expiring_soon(session, config, customer_id, now=as_of),
            "ledger": entries[:limit] if limit else entries,
        }
    now = now or utcnow()
    lock_customer(session, customer_id)  # as a sale does: two settles of one ledger never interleave
    settle_points(session, config, [customer_id], now=now, strict=False)
    return {
        "customer_id": customer_id,
        "balance": balance(session, customer_id),
        "tier": tier_for(customer_totals(session, customer_id)["net_minor"], config),
        "expiring_soon": expiring_soon(session, config, customer_id, now=now),
        "ledger": ledger(session, customer_id, limit=limit),
    }
