"""Coupons: issued to customers, used at most ``max_uses`` times, even under concurrency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlmodel import Session, col

from crmcli.audit import touch
from crmcli.bulk import insert_rows
from crmcli.choices import COUPON_STATUSES as STATUSES
from crmcli.config import Config
from crmcli.errors import Conflict, Invalid, NotFound
from crmcli.models import Coupon, Customer, Purchase, UTCDateTime, table_of
from crmcli.services.codes import coupon_code, unused_codes
from crmcli.values import money, utcnow


@dataclass(frozen=True)
class CouponTerms:
    percent_bp: int | None = None  # basis points: 10% = 1000
    amount_minor: int | None = None
    min_spend_minor: int = 0
    expires_at: datetime | None = None
    max_uses: int = 1
    campaign: str | None = None

    def check(self) -> CouponTerms:
        if (self.percent_bp is None) == (self.amount_minor is None):
            raise Invalid("a coupon takes either a percent or an amount off", fields=("percent", "amount"))
        if self.percent_bp is not None and not 0 < self.percent_bp <= 10000:
            raise Invalid("the percent off must be more than 0 and at most 100", fields=("percent",))
        if self.amount_minor is not None and self.amount_minor <= 0:
            raise Invalid("the amount off must be more than 0", fields=("amount",))
        if self.min_spend_minor < 0:
            raise Invalid("the minimum spend cannot be negative", fields=("min_spend",))
        if self.max_uses < 1:
            raise Invalid("a coupon must allow at least 1 use", fields=("max_uses",))
        return self


def normalise_code(code: str) -> str:
    return code.strip().upper()


def check_code(code: str) -> str:
    """A coupon code as stored (upper case), or refused: letters, digits and - only, at most 40."""
    code = normalise_code(code)
    if not code or len(code) > 40 or not code.replace("-", "").isalnum():
        raise Invalid(f"bad coupon code {code!r}: letters, digits and - only, at most 40", fields=("code",))
    return code


def find_coupon(session: Session, code: str) -> Coupon:
    found = session.execute(select(Coupon).where(col(Coupon.code) == normalise_code(code))).scalar()
    if found is None:
        raise NotFound(f"no coupon {code!r}", subject="coupon", key=code)
    return found


def issue_coupons(
    *,
    session: Session,
    customer_ids: Sequence[int],
    terms: CouponTerms,
    code: str | None = None,
    now: datetime | None = None,
    referral_ids: Sequence[int] | None = None,
) -> list[Coupon]:
    """One coupon per customer, in one statement per batch (``referral_ids``: the referral
    each coupon rewards, one per customer)."""
    now = now or utcnow()
    terms.check()
    if not customer_ids:
        raise Invalid("no customers match, so no coupons were issued")
    if code is not None:
        if len(customer_ids) != 1:
            raise Invalid("a chosen code names a single coupon, for one customer", fields=("code", "customer"))
        code = check_code(code)
        if session.execute(select(col(Coupon.id)).where(col(Coupon.code) == code)).first():
            raise Conflict(f"coupon code {code} is already taken", fields=("code",))
    if terms.campaign is not None:
        from crmcli.services.campaigns import ensure_campaign

        ensure_campaign(session, terms.campaign)
    codes = [code] if code else unused_codes(session, col(Coupon.code), len(customer_ids), coupon_code)
    rows = [
        {
            "code": c,
            "customer_id": cid,
            "percent_bp": terms.percent_bp,
            "amount_minor": terms.amount_minor,
            "min_spend_minor": terms.min_spend_minor,
            "expires_at": terms.expires_at,
            "max_uses": terms.max_uses,
            "uses": 0,
            "campaign": terms.campaign,
            "created_at": now,
            "referral_id": rid,
        }
        for c, cid, rid in zip(codes, customer_ids, referral_ids or [None] * len(customer_ids), strict=True)  # type: ignore[list-item]
    ]
    insert_rows(session.connection(), table_of(Coupon), list(rows[0]), rows)
    touch(session, [cid for cid in customer_ids if cid is not None])
    issued: dict[str, Coupon] = {}
    for start in range(0, len(codes), 5000):
        chunk = codes[start : start + 5000]
        issued.update((c.code, c) for c in session.execute(select(Coupon).where(col(Coupon.code).in_(chunk))).scalars())
    return [issued[c] for c in codes]  # in the order of customer_ids


def discount_for(coupon: Coupon, amount_minor: int) -> int:
    """The discount on an amount: a percentage rounded half up, never more than the amount."""
    if coupon.percent_bp is not None:
        exact = Decimal(amount_minor) * coupon.percent_bp / 10000
        discount = int(exact.to_integral_value(rounding=ROUND_HALF_UP))
    else:
        discount = coupon.amount_minor or 0
    return min(discount, amount_minor)


def refusal(coupon: Coupon, *, customer_id: int, amount_minor: int | None, at: datetime, config: Config) -> str | None:
    """Why a coupon cannot be used by this customer on this amount at this time, or None."""
    if coupon.voided_at is not None:
        return f"coupon {coupon.code} was voided"
    if coupon.customer_id is not None and coupon.customer_id != customer_id:
        return f"coupon {coupon.code} belongs to another customer"
    if coupon.expires_at is not None and at > coupon.expires_at:
        expired = coupon.expires_at.astimezone(config.tz).isoformat(timespec="seconds")
        return f"coupon {coupon.code} expired at {expired}"
    if coupon.uses >= coupon.max_uses:
        return f"coupon {coupon.code} was already used" + (
            f" ({coupon.uses} of {coupon.max_uses} uses)" if coupon.max_uses > 1 else ""
        )
    if amount_minor is not None and amount_minor < coupon.min_spend_minor:
        spend = money(coupon.min_spend_minor, config.currency.minor_digits)
        return f"coupon {coupon.code} needs a spend of at least {spend}"
    return None


def use_coupon(
    session: Session, *, code: str, customer_id: int, amount_minor: int | None, at: datetime, config: Config
) -> tuple[Coupon, int]:
    """Take one use of a coupon, checked and counted in one conditional UPDATE.

    The UPDATE only matches while ``uses < max_uses`` (and the coupon is valid), so two
    processes can never both take the last use: the loser matches no row and is told why.
    Returns the coupon and the discount on ``amount_minor``.
    """
    coupon = find_coupon(session, code)
    if reason := refusal(coupon, customer_id=customer_id, amount_minor=amount_minor, at=at, config=config):
        raise Conflict(reason)
    table = table_of(Coupon)
    taken = session.execute(
        update(table)
        .where(
            table.c.id == coupon.id,
            table.c.uses < table.c.max_uses,
            table.c.voided_at.is_(None),
        )
        .values(uses=table.c.uses + 1)
    )
    if int(getattr(taken, "rowcount", 0)) != 1:
        session.refresh(coupon)
        raise Conflict(
            refusal(coupon, customer_id=customer_id, amount_minor=amount_minor, at=at, config=config)
            or f"coupon {coupon.code} was already used"
        )
    session.refresh(coupon)
    touch(session, [customer_id])
    discount = discount_for(coupon, amount_minor) if amount_minor is not None else 0
    if coupon.campaign is not None:
        _charge_budget(session, coupon, amount_minor, discount, config)
    return coupon, discount


def _charge_budget(session: Session, coupon: Coupon, amount_minor: int | None, discount: int, config: Config) -> None:
    """Count the use against its campaign's budget (the same transaction: a refusal undoes the use)."""
    from crmcli.services.campaigns import charge_campaign, needs_amount

    assert coupon.campaign is not None
    if amount_minor is None and needs_amount(session, coupon.campaign):
        if coupon.amount_minor is None:
            raise Invalid(
                f"coupon {coupon.code} belongs to campaign {coupon.campaign}, whose budget is an amount: "
                "the order amount is needed to count its discount",
                fields=("amount",),
            )
        discount = coupon.amount_minor
    charge_campaign(session, coupon.campaign, discount, config)


def void_coupon(*, session: Session, code: str, now: datetime | None = None) -> Coupon:
    coupon = find_coupon(session, code)
    if coupon.voided_at is not None:
        raise Conflict(f"coupon {coupon.code} is already void")
    coupon.voided_at = now or utcnow()
    session.add(coupon)
    return coupon


def coupon_status(coupon: Coupon, now: datetime | None = None, *, uses: int | None = None) -> str:
    """Void, used, expired or active at ``now``; ``uses`` (default the count recorded) are the
    uses by then, and a void dated later had not happened yet."""
    now = now or utcnow()
    if coupon.voided_at is not None and coupon.voided_at <= now:
        return "void"
    if (coupon.uses if uses is None else uses) >= coupon.max_uses:
        return "used"
    if coupon.expires_at is not None and coupon.expires_at < now:
        return "expired"
    return "active"


def coupons_as_of(session: Session, customer_id: int, as_of: datetime) -> list[tuple[Coupon, int]]:
    """A customer's coupons issued by ``as_of``, each with its uses by then (every use is a sale)."""
    p = table_of(Purchase)
    used = (
        select(func.count())
        .where(p.c.coupon_id == col(Coupon.id), p.c.at <= literal(as_of, UTCDateTime()))
        .scalar_subquery()
    )
    return [
        (coupon, int(uses))
        for coupon, uses in session.execute(
            select(Coupon, used)
            .where(col(Coupon.customer_id) == customer_id, col(Coupon.created_at) <= as_of)
            .order_by(col(Coupon.id))
        )
    ]


def _status_filter(status: str, now: datetime) -> Any:
    t = table_of(Coupon)
    at = literal(now, UTCDateTime())
    live = t.c.voided_at.is_(None)
    left = t.c.uses < t.c.max_uses
    expired = and_(t.c.expires_at.is_not(None), t.c.expires_at < at)
    return {
        "void": t.c.voided_at.is_not(None),
        "used": and_(live, ~left),
        "expired": and_(live, left, expired),
        "active": and_(live, left, or_(t.c.expires_at.is_(None), t.c.expires_at >= at)),
    }[status]


def coupon_row(
    coupon: Coupon,
    config: Config,
    customer: str | None = None,
    *,
    now: datetime | None = None,
    uses: int | None = None,
) -> dict[str, Any]:
    digits = config.currency.minor_digits
    return {
        "code": coupon.code,
        "customer_id": coupon.customer_id,
        "customer": customer,
        "percent": (str(Decimal(coupon.percent_bp) / 100) if coupon.percent_bp is not None else None),
        "amount": money(coupon.amount_minor, digits),
        "min_spend": money(coupon.min_spend_minor, digits),
        "expires_at": coupon.expires_at,
        "uses": coupon.uses if uses is None else uses,
        "max_uses": coupon.max_uses,
        "campaign": coupon.campaign,
        "status": coupon_status(coupon, now, uses=uses),
        "issued_at": coupon.created_at,
    }


def list_coupons(
    *,
    session: Session,
    config: Config,
    status: str | None = None,
    customer: Customer | None = None,
    campaign: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    now = now or utcnow()
    query = select(Coupon, col(Customer.name)).outerjoin(Customer, col(Customer.id) == col(Coupon.customer_id))
    if status is not None:
        if status not in STATUSES:
            raise Invalid(f"unknown coupon status {status!r}: use one of {', '.join(STATUSES)}")
        query = query.where(_status_filter(status, now))
    if customer is not None:
        query = query.where(col(Coupon.customer_id) == customer.id)
    if campaign is not None:
        query = query.where(col(Coupon.campaign) == campaign)
    query = query.order_by(col(Coupon.id).desc())  # newest first
    if limit:
        query = query.limit(limit)
    return [coupon_row(c, config, name) for c, name in session.execute(query)]


def coupon_detail(*, session: Session, code: str, config: Config) -> dict[str, Any]:
    coupon = find_coupon(session, code)
    name = session.execute(select(col(Customer.name)).where(col(Customer.id) == coupon.customer_id)).scalar()
    row = coupon_row(coupon, config, name)
    purchases = session.execute(
        select(
            col(Purchase.id),
            col(Purchase.at),
            col(Purchase.gross_minor),
            col(Purchase.coupon_discount_minor),
            col(Purchase.net_minor),
            col(Purchase.refunded_at),
        )
        .where(col(Purchase.coupon_id) == coupon.id)
        .order_by(col(Purchase.id))
    ).all()
    digits = config.currency.minor_digits
    row["purchases"] = [
        {
            "id": p[0],
            "at": p[1],
            "amount": money(p[2], digits),
            "discount": money(p[3], digits),
            "net": money(p[4], digits),
            "refunded": p[5] is not None,
        }
        for p in purchases
    ]
    return row


def coupon_stats(
    *, session: Session, config: Config, campaign: str | None = None, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """Per campaign: issued, used, redemption rate, discount given, revenue of the purchases.

    Now (``as_of`` None): the uses and budget spending recorded, ``coupon redeem`` without a
    sale included. As of a past moment: the coupons issued by then, the uses of the sales made
    by then (a use without a sale carries no time, so it is not counted), the discount and
    revenue of those not refunded by then; a budget's spending is those uses and discounts.
    """
    c = table_of(Coupon)
    p = table_of(Purchase)
    now = literal(as_of or utcnow(), UTCDateTime())
    live = or_(p.c.refunded_at.is_(None), p.c.refunded_at > now)
    name = func.coalesce(c.c.campaign, "(none)")
    spend = (
        select(
            p.c.coupon_id,
            func.count().label("purchases"),
            func.sum(case((live, p.c.net_minor), else_=0)).label("revenue"),
            func.sum(case((live, p.c.coupon_discount_minor), else_=0)).label("discount"),
            func.sum(p.c.coupon_discount_minor).label("charged"),  # a refund does not give budget back
        )
        .where(p.c.coupon_id.is_not(None), p.c.at <= now)
        .group_by(p.c.coupon_id)
        .subquery()
    )
    # In the past the uses are the sales made by then (a refund keeps the use); now, the count kept.
    uses = func.coalesce(spend.c.purchases, 0) if as_of is not None else c.c.uses
    query = (
        select(
            name.label("campaign"),
            func.count().label("issued"),
            func.sum(case((uses > 0, 1), else_=0)).label("used"),
            func.coalesce(func.sum(uses), 0).label("uses"),
            func.coalesce(func.sum(spend.c.discount), 0).label("discount"),
            func.coalesce(func.sum(spend.c.revenue), 0).label("revenue"),
            func.coalesce(func.sum(spend.c.charged), 0).label("charged"),
        )
        .select_from(c.outerjoin(spend, spend.c.coupon_id == c.c.id))
        .where(c.c.created_at <= now)
        .group_by(name)
        .order_by(name)
    )
    if campaign is not None:
        query = query.where(c.c.campaign == campaign)
    from crmcli.services.campaigns import budgets, spending

    digits = config.currency.minor_digits
    caps = budgets(session)
    spent = spending(session) if as_of is None else {}
    rows = []
    for r in session.execute(query):
        rate = Decimal(r.used) / Decimal(r.issued) if r.issued else Decimal(0)
        cap_uses, cap_minor = caps.get(r.campaign, (None, None))
        spent_uses, spent_minor = spent.get(r.campaign, (int(r.uses), int(r.charged)))
        rows.append(
            {
                "campaign": r.campaign,
                "issued": r.issued,
                "used": int(r.used),
                "uses": int(r.uses),
                "redemption_rate": rate.quantize(Decimal("0.0001")),
                "discount": money(int(r.discount), digits),
                "revenue": money(int(r.revenue), digits),
                # what the budget has spent by then: every use and its discount (the sales are the uses)
                "budget_uses": cap_uses,
                "budget_amount": money(cap_minor, digits),
                "spent_uses": spent_uses if r.campaign in caps else None,
                "spent_amount": money(spent_minor, digits) if r.campaign in caps else None,
                "left_uses": cap_uses - spent_uses if cap_uses is not None else None,
                "left_amount": money(cap_minor - spent_minor, digits) if cap_minor is not None else None,
            }
        )
    return rows


def target_customers(
    *,
    session: Session,
    customer: Customer | None = None,
    stage: str | None = None,
    segment: str | None = None,
    everyone: bool = False,
    config: Config,
) -> list[int]:
    """Ids of the live customers a coupon issue is aimed at (exactly one target kind)."""
    given = sum(x is not None and x is not False for x in (customer, stage, segment, everyone or None))
    if given != 1:
        raise Invalid(
            "coupons go to exactly one of: a customer, a segment, a stage or everyone",
            fields=("customer", "segment", "stage", "everyone"),
        )
    if customer is not None:
        if customer.erased_at is not None:
            raise Invalid(f"customer {customer.id} was erased")
        assert customer.id is not None
        return [customer.id]
    if segment is not None:
        from crmcli.reports.segments import customers_in_segment

        return customers_in_segment(session=session, config=config, segment=segment)
    query = select(col(Customer.id)).where(col(Customer.erased_at).is_(None)).order_by(col(Customer.id))
    if stage is not None:
        from crmcli.services.stages import check_stage

        query = query.where(col(Customer.stage) == check_stage(stage))
    return list(session.execute(query).scalars())
