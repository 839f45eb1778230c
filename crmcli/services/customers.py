"""Customers: the lifetime profile, stages, tags, duplicates, merge and erase."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, or_, select, update
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import Conflict, Invalid
from crmcli.models import (
    Coupon,
    Customer,
    CustomerTag,
    Interaction,
    PointsEntry,
    Purchase,
    Referral,
    StageChange,
    table_of,
)
from crmcli.services.codes import referral_code, unused_codes
from crmcli.services.identify import find_customer
from crmcli.services.stages import STAGE_RANK, change_stage, check_stage, settle_stages
from crmcli.values import money, normalize_email, normalize_phone, utcnow

TEXT_FIELDS = ("company", "city", "source", "note")
ERASED_NAME = "(erased)"
SORT_FIELDS = ("id", "name", "email", "city", "stage", "created_at")


@dataclass
class CustomerInput:
    """Fields as a user typed them; :func:`clean_fields` validates and normalises."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    city: str | None = None
    source: str | None = None
    stage: str | None = None
    ref: str | None = None
    note: str | None = None
    tags: list[str] = field(default_factory=list)


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags are trimmed, lower-cased and unique, in the order given."""
    seen: dict[str, None] = {}
    for tag in tags:
        value = tag.strip().lower()
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def clean_fields(data: CustomerInput, config: Config, *, require_name: bool) -> dict[str, Any]:
    """Validated column values for the fields that were given (None means "not given")."""
    values: dict[str, Any] = {}
    if data.name is not None or require_name:
        name = _blank_to_none(data.name)
        if not name:
            raise Invalid("a customer needs a name")
        values["name"] = name
    if data.email is not None:
        email = _blank_to_none(data.email)
        values["email"] = normalize_email(email) if email else None
    if data.phone is not None:
        phone = _blank_to_none(data.phone)
        values["phone"] = normalize_phone(phone, config.default_phone_region) if phone else None
    if data.stage is not None:
        values["stage"] = check_stage(data.stage)
    if data.ref is not None:
        values["ref"] = _blank_to_none(data.ref)
    for name in TEXT_FIELDS:
        value = getattr(data, name)
        if value is not None:
            values[name] = _blank_to_none(value)
    return values


def ensure_unique(session: Session, values: dict[str, Any], *, exclude_id: int | None = None) -> None:
    """Refuse an email, phone or ref that another customer already has."""
    for column in ("email", "phone", "ref"):
        value = values.get(column)
        if value is None:
            continue
        query = select(col(Customer.id)).where(getattr(Customer, column) == value)
        if exclude_id is not None:
            query = query.where(col(Customer.id) != exclude_id)
        existing = session.execute(query).scalar()
        if existing is not None:
            raise Conflict(
                f"customer {existing} already has {column} {value}",
                subject="customer",
                key=existing,
            )


def add_customer(
    *,
    session: Session,
    data: CustomerInput,
    config: Config,
    referred_by: str | None = None,
    now: datetime | None = None,
) -> Customer:
    now = now or utcnow()
    values = clean_fields(data, config, require_name=True)
    values.setdefault("stage", "lead")
    referrer = find_customer(session, referred_by, config.default_phone_region) if referred_by else None
    if referrer is not None:
        from crmcli.services.referrals import same_person

        # Said before the duplicate check: "cannot refer themselves" is the reason that helps.
        if reason := same_person(referrer, Customer(**values)):
            raise Invalid(f"a customer cannot refer themselves ({reason})")
    ensure_unique(session, values)
    code = unused_codes(session, col(Customer.referral_code), 1, referral_code)[0]
    customer = Customer(**values, referral_code=code, created_at=now, updated_at=now)
    session.add(customer)
    session.flush()
    assert customer.id is not None
    _add_tags(session, customer.id, clean_tags(data.tags))
    session.add(StageChange(customer_id=customer.id, from_stage=None, to_stage=customer.stage, at=now, cause="manual"))
    if referrer is not None:
        from crmcli.services.referrals import record_referral

        record_referral(session=session, referrer=referrer, referred=customer, now=now)
    return customer


def _add_tags(session: Session, customer_id: int, tags: Sequence[str]) -> None:
    if not tags:
        return
    existing = set(
        session.execute(select(col(CustomerTag.tag)).where(col(CustomerTag.customer_id) == customer_id)).scalars()
    )
    new = [{"customer_id": customer_id, "tag": t} for t in tags if t not in existing]
    if new:
        session.execute(insert(CustomerTag), new)


def edit_customer(
    *,
    session: Session,
    customer: Customer,
    data: CustomerInput,
    config: Config,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    now: datetime | None = None,
) -> Customer:
    now = now or utcnow()
    if customer.erased_at is not None:
        raise Invalid(f"customer {customer.id} was erased and cannot be edited")
    values = clean_fields(data, config, require_name=False)
    new_stage = values.pop("stage", None)
    ensure_unique(session, values, exclude_id=customer.id)
    for key, value in values.items():
        setattr(customer, key, value)
    assert customer.id is not None
    _add_tags(session, customer.id, clean_tags(add_tags))
    drop = clean_tags(remove_tags)
    if drop:
        session.execute(
            delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer.id,
                col(CustomerTag.tag).in_(drop),
            )
        )
    if new_stage is not None:
        change_stage(session=session, customer=customer, stage=new_stage, now=now)
    customer.updated_at = now
    session.add(customer)
    return customer


# --- reading ------------------------------------------------------------------


def tags_of(session: Session, customer_ids: Sequence[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {i: [] for i in customer_ids}
    if not customer_ids:
        return result
    rows = session.execute(
        select(col(CustomerTag.customer_id), col(CustomerTag.tag))
        .where(col(CustomerTag.customer_id).in_(customer_ids))
        .order_by(col(CustomerTag.customer_id), col(CustomerTag.tag))
    )
    for customer_id, tag in rows:
        result[customer_id].append(tag)
    return result


def list_customers(
    *,
    session: Session,
    stage: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    customer_ids: Sequence[int] | None = None,
    sort: str = "id",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_FIELDS:
        raise Invalid(f"cannot sort by {sort!r}: use one of {', '.join(SORT_FIELDS)} (prefix - for descending)")
    if limit is not None and limit < 1:
        raise Invalid("the limit must be at least 1", fields=("limit",))
    columns = [
        col(Customer.id),
        col(Customer.name),
        col(Customer.email),
        col(Customer.phone),
        col(Customer.company),
        col(Customer.city),
        col(Customer.stage),
        col(Customer.ref),
        col(Customer.created_at),
    ]
    query = select(*columns).where(col(Customer.erased_at).is_(None))
    if stage:
        query = query.where(col(Customer.stage) == check_stage(stage))
    if tag:
        query = query.where(
            col(Customer.id).in_(
                select(col(CustomerTag.customer_id)).where(col(CustomerTag.tag) == tag.strip().lower())
            )
        )
    if search:
        pattern = f"%{search.strip().lower()}%"
        query = query.where(
            or_(
                func.lower(col(Customer.name)).like(pattern),
                col(Customer.email).like(pattern),
                func.lower(col(Customer.company)).like(pattern),
                func.lower(col(Customer.city)).like(pattern),
                col(Customer.phone).like(pattern),
                col(Customer.ref).like(pattern),
            )
        )
    if customer_ids is not None:
        query = query.where(col(Customer.id).in_(customer_ids))
    order = getattr(Customer, key)
    query = query.order_by(order.desc() if descending else order, col(Customer.id))
    if limit:
        query = query.limit(limit)
    rows = [dict(r._mapping) for r in session.execute(query)]
    tags = tags_of(session, [r["id"] for r in rows])
    for row in rows:
        row["tags"] = tags[row["id"]]
    return rows


def customer_totals(session: Session, customer_id: int) -> dict[str, Any]:
    """Orders, net spend and last purchase, refunds excluded."""
    orders, net, last = session.execute(
        select(func.count(), func.coalesce(func.sum(col(Purchase.net_minor)), 0), func.max(col(Purchase.at))).where(
            col(Purchase.customer_id) == customer_id, col(Purchase.refunded_at).is_(None)
        )
    ).one()
    return {"orders": orders, "net_minor": int(net), "last_purchase": last}


def points_balance(session: Session, customer_id: int) -> int:
    return int(
        session.execute(
            select(func.coalesce(func.sum(col(PointsEntry.delta)), 0)).where(
                col(PointsEntry.customer_id) == customer_id
            )
        ).scalar_one()
    )


def tier_for(net_minor: int, config: Config) -> str:
    spend = money(net_minor, config.currency.minor_digits)
    assert spend is not None
    name = config.tiers[0].name
    for tier in config.tiers:
        if spend >= tier.min_spend:
            name = tier.name
    return name


def customer_profile(*, session: Session, customer: Customer, config: Config, timeline: int = 10) -> dict[str, Any]:
    """Everything known about one customer, as plain data."""
    assert customer.id is not None
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
        "created_at": customer.created_at,
        "erased_at": customer.erased_at,
        "tags": tags_of(session, [cid])[cid],
        "totals": {
            "orders": totals["orders"],
            "net_spend": money(totals["net_minor"], digits),
            "last_purchase": totals["last_purchase"],
        },
        "points": points_balance(session, cid),
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


# --- duplicates, merge, erase --------------------------------------------------


def find_duplicates(*, session: Session) -> list[dict[str, Any]]:
    """Groups of live customers whose names match once case and spacing are ignored."""
    key = func.lower(func.trim(col(Customer.name)))
    groups = (
        select(key.label("key"))
        .where(col(Customer.erased_at).is_(None))
        .group_by(key)
        .having(func.count() > 1)
        .subquery()
    )
    rows = session.execute(
        select(
            col(Customer.id),
            col(Customer.name),
            col(Customer.email),
            col(Customer.phone),
            col(Customer.city),
            groups.c.key,
        )
        .join(groups, key == groups.c.key)
        .where(col(Customer.erased_at).is_(None))
        .order_by(groups.c.key, col(Customer.id))
    ).all()
    result: list[dict[str, Any]] = []
    group_no = 0
    previous = None
    for row in rows:
        if row.key != previous:
            group_no += 1
            previous = row.key
        result.append(
            {
                "group": group_no,
                "id": row.id,
                "name": row.name,
                "email": row.email,
                "phone": row.phone,
                "city": row.city,
            }
        )
    return result


def merge_customers(
    *, session: Session, keep: Customer, drop: Customer, config: Config, now: datetime | None = None
) -> dict[str, Any]:
    """Move everything of ``drop`` to ``keep`` and delete ``drop``, in one transaction."""
    now = now or utcnow()
    if keep.id == drop.id:
        raise Invalid("cannot merge a customer with itself")
    if keep.erased_at is not None or drop.erased_at is not None:
        raise Invalid("cannot merge an erased customer")
    kid, did = keep.id, drop.id
    assert kid is not None and did is not None
    moved: dict[str, int] = {}
    for model in (Purchase, Interaction, Coupon, StageChange):
        table = table_of(model)
        moved[table.name] = _rowcount(
            session.execute(update(table).where(table.c.customer_id == did).values(customer_id=kid))
        )
    from crmcli.services.referrals import merge_would_cycle

    if reason := merge_would_cycle(session, kid, did):
        raise Invalid(f"cannot merge customer {did} into {kid}: {reason}")
    # The drop's tenure months stay as history without a period: the kept customer's own
    # months go on counting from its own start (and the period key stays its own).
    session.execute(
        update(PointsEntry)
        .where(col(PointsEntry.customer_id) == did, col(PointsEntry.period).is_not(None))
        .values(period=None, reason=func.coalesce(col(PointsEntry.reason), "") + f" (merged from customer {did})")
    )
    moved["points_entry"] = _rowcount(
        session.execute(update(PointsEntry).where(col(PointsEntry.customer_id) == did).values(customer_id=kid))
    )
    _add_tags(session, kid, tags_of(session, [did])[did])
    session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == did))
    moved["referral"] = _merge_referrals(session, kid, did)

    # Fill the kept profile's gaps; unique fields are cleared on drop first.
    gaps = {
        f: getattr(drop, f)
        for f in ("email", "phone", "ref", *TEXT_FIELDS)
        if getattr(keep, f) is None and getattr(drop, f) is not None
    }
    session.execute(update(Customer).where(col(Customer.id) == did).values(email=None, phone=None, ref=None))
    session.flush()
    for f, value in gaps.items():
        setattr(keep, f, value)
    if STAGE_RANK[drop.stage] > STAGE_RANK[keep.stage]:
        change_stage(session=session, customer=keep, stage=drop.stage, now=now)
    keep.updated_at = now
    session.add(keep)
    session.flush()
    session.execute(delete(Customer).where(col(Customer.id) == did))
    session.expunge(drop)
    # One history now: the rules replay it (stages from both sets of purchases, one ledger).
    from crmcli.services.points import settle_points

    settle_points(session, config, [kid], now=now)
    settle_stages(session, [kid])
    session.refresh(keep)
    return {"kept": kid, "dropped": did, "moved": moved}


def _rowcount(result: Any) -> int:
    """Rows changed by an UPDATE or DELETE (a CursorResult, typed as plain Result)."""
    return int(result.rowcount)


def _merge_referrals(session: Session, kid: int, did: int) -> int:
    from crmcli.services.referrals import would_cycle

    moved = 0
    # Referrals between the two become self-referrals once merged: remove them (coupons they
    # rewarded stay, as plain coupons).
    between = or_(
        (col(Referral.referrer_id) == kid) & (col(Referral.referred_id) == did),
        (col(Referral.referrer_id) == did) & (col(Referral.referred_id) == kid),
    )
    _unlink_rewards(session, select(col(Referral.id)).where(between))
    session.execute(delete(Referral).where(between))
    moved += _rowcount(
        session.execute(update(Referral).where(col(Referral.referrer_id) == did).values(referrer_id=kid))
    )
    drop_ref = session.execute(select(Referral).where(col(Referral.referred_id) == did)).scalar()
    if drop_ref is not None:
        keep_has = session.execute(select(col(Referral.id)).where(col(Referral.referred_id) == kid)).first()
        if keep_has is None and not would_cycle(session, drop_ref.referrer_id, kid):
            drop_ref.referred_id = kid
            session.add(drop_ref)
            moved += 1
        else:
            _unlink_rewards(session, select(literal(drop_ref.id)))
            session.delete(drop_ref)
        session.flush()
    return moved


def _unlink_rewards(session: Session, referral_ids: Any) -> None:
    session.execute(update(Coupon).where(col(Coupon.referral_id).in_(referral_ids)).values(referral_id=None))


def erase_customer(*, session: Session, customer: Customer, now: datetime | None = None) -> Customer:
    """Remove personal data for good; purchases stay as anonymous totals."""
    now = now or utcnow()
    if customer.erased_at is not None:
        raise Conflict(f"customer {customer.id} was already erased")
    cid = customer.id
    customer.name = ERASED_NAME
    for f in ("email", "phone", "ref", *TEXT_FIELDS):
        setattr(customer, f, None)
    customer.erased_at = now
    customer.updated_at = now
    session.add(customer)
    session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == cid))
    session.execute(
        update(Interaction).where(col(Interaction.customer_id) == cid).values(summary=None, resolution=None)
    )
    session.execute(update(PointsEntry).where(col(PointsEntry.customer_id) == cid).values(reason=None))
    session.execute(
        update(Referral)
        .where(or_(col(Referral.referrer_id) == cid, col(Referral.referred_id) == cid))
        .values(reason=None)
    )
    return customer
