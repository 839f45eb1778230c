"""A customer's lifetime profile: totals, tier, points, referrals, coupons, history, timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.models import Coupon, Customer, Interaction, Purchase, Referral, StageChange
from crmcli.services.customers import tags_of
from crmcli.services.points import balance, ledger, settle_points
from crmcli.values import money


def customer_totals(session: Session, customer_id: int) -> dict[str, Any]:
    """Orders, net spend and last purchase, refunds excluded."""
    orders, net, last = session.execute(
        select(func.count(), func.coalesce(func.sum(col(Purchase.net_minor)), 0), func.max(col(Purchase.at))).where(
            col(Purchase.customer_id) == customer_id, col(Purchase.refunded_at).is_(None)
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


def customer_profile(*, session: Session, customer: Customer, config: Config, timeline: int = 10) -> dict[str, Any]:
    """Everything known about one customer, as plain data (late-payment resets due by now
    are recorded first, as for every read of points)."""
    assert customer.id is not None
    settle_points(session, config, [customer.id], strict=False)
    digits = config.currency.minor_digits
    cid = customer.id
    totals = customer_totals(session, cid)
    referrer = session.execute(
        select(col(Referral.referrer_id), col(Referral.status), col(Customer.name))
        .join(Customer, col(Customer.id) == col(Referral.referrer_id))
        .where(col(Referral.referred_id) == cid)
    ).first()
    referred = session.execute(
        select(col(Referral.referred_id), col(Customer.name), col(Referral.status))
        .join(Customer, col(Customer.id) == col(Referral.referred_id))
        .where(col(Referral.referrer_id) == cid)
        .order_by(col(Referral.id))
    ).all()
    coupons = (
        session.execute(select(Coupon).where(col(Coupon.customer_id) == cid).order_by(col(Coupon.id))).scalars().all()
    )
    from crmcli.services.coupons import coupon_row

    return {
        "id": cid,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "company": customer.company,
        "city": customer.city,
        "source": customer.source,
        "stage": customer.stage,
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
        "points": balance(session, cid),
        "tier": tier_for(totals["net_minor"], config),
        "referred_by": ({"id": referrer[0], "name": referrer[2], "status": referrer[1]} if referrer else None),
        "referred": [{"id": r[0], "name": r[1], "status": r[2]} for r in referred],
        "coupons": [coupon_row(c, config) for c in coupons],
        "stage_history": [
            {"at": s.at, "from": s.from_stage, "to": s.to_stage}
            for s in session.execute(
                select(StageChange).where(col(StageChange.customer_id) == cid).order_by(col(StageChange.id))
            ).scalars()
        ],
        "timeline": recent_timeline(session, cid, config, limit=timeline),
    }


def recent_timeline(session: Session, customer_id: int, config: Config, *, limit: int) -> list[dict[str, Any]]:
    """The latest interactions and purchases, newest first."""
    digits = config.currency.minor_digits
    events: list[dict[str, Any]] = []
    for i in session.execute(
        select(Interaction)
        .where(col(Interaction.customer_id) == customer_id)
        .order_by(col(Interaction.at).desc())
        .limit(limit)
    ).scalars():
        detail = i.summary or ""
        if i.rating is not None:
            detail = f"rating {i.rating}" + (f": {detail}" if detail else "")
        events.append({"at": i.at, "event": i.kind, "detail": detail})
    for p in session.execute(
        select(Purchase).where(col(Purchase.customer_id) == customer_id).order_by(col(Purchase.at).desc()).limit(limit)
    ).scalars():
        detail = str(money(p.net_minor, digits)) + (" (refunded)" if p.refunded_at else "")
        events.append({"at": p.at, "event": "purchase", "detail": detail})
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
    removals due by ``now`` are recorded; ``as_of`` reads them as they stood then."""
    from crmcli.services.expiry import expiring_soon
    from crmcli.values import utcnow

    now = now or utcnow()
    settle_points(session, config, [customer_id], now=now, strict=False)
    at = min(as_of, now) if as_of is not None else now
    return {
        "customer_id": customer_id,
        "balance": balance(session, customer_id, as_of),
        "tier": tier_for(customer_totals(session, customer_id)["net_minor"], config),
        "expiring_soon": expiring_soon(session, config, customer_id, now=at),
        "ledger": ledger(session, customer_id, limit=limit, as_of=as_of),
    }
