"""Coupons: issue, redeem, void and statistics."""

from __future__ import annotations

from typing import Any

from crmcli.config import Config
from crmcli.models import Coupon
from crmcli.values import money


def coupon_status(coupon: Coupon, now: Any = None) -> str:
    from crmcli.values import utcnow

    now = now or utcnow()
    if coupon.voided_at is not None:
        return "void"
    if coupon.uses >= coupon.max_uses:
        return "used"
    if coupon.expires_at is not None and coupon.expires_at < now:
        return "expired"
    return "active"


def coupon_row(coupon: Coupon, config: Config) -> dict[str, Any]:
    digits = config.currency.minor_digits
    return {
        "code": coupon.code,
        "customer_id": coupon.customer_id,
        "percent": (f"{coupon.percent_bp / 100:g}" if coupon.percent_bp is not None else None),
        "amount": money(coupon.amount_minor, digits),
        "min_spend": money(coupon.min_spend_minor, digits),
        "expires_at": coupon.expires_at,
        "uses": coupon.uses,
        "max_uses": coupon.max_uses,
        "campaign": coupon.campaign,
        "status": coupon_status(coupon),
    }
