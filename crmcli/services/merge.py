"""Duplicates, merging two records of one person, and erasing a person's data for good."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal, or_, select, update
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
from crmcli.services.customers import ERASED_NAME, TEXT_FIELDS, tag_customer, tags_of
from crmcli.services.stages import STAGE_RANK, change_stage, settle_stages
from crmcli.values import utcnow


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
    from crmcli.services.referrals import merge_would_cycle, serialise_referral_changes

    serialise_referral_changes(session)
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
    tag_customer(session, kid, tags_of(session, [did])[did])
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
    from crmcli.audit import note, touch

    note(session, merged={"kept": kid, "dropped": did, **{f"moved_{k}": v for k, v in moved.items()}})
    touch(session, [kid, did])
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


def merge_summary(session: Session, customer: Customer) -> dict[str, Any]:
    """What an owner needs to see before merging: who it is and what hangs on the record."""
    from crmcli.services.points import balance

    assert customer.id is not None
    cid = customer.id
    orders, net = session.execute(
        select(func.count(), func.coalesce(func.sum(col(Purchase.net_minor)), 0)).where(
            col(Purchase.customer_id) == cid, col(Purchase.refunded_at).is_(None)
        )
    ).one()
    referred = session.execute(select(func.count()).where(col(Referral.referrer_id) == cid)).scalar_one()
    referrer = session.execute(select(col(Referral.referrer_id)).where(col(Referral.referred_id) == cid)).scalar()
    return {
        "id": cid,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "stage": customer.stage,
        "orders": orders,
        "net_minor": int(net),
        "points": balance(session, cid),
        "referred": referred,
        "referred_by": referrer,
    }


def erase_customer(*, session: Session, customer: Customer, now: datetime | None = None) -> Customer:
    """Remove personal data for good; purchases stay as anonymous totals.

    On SQLite the overwritten pages are zeroed (secure_delete), so the values do not stay in
    free pages of the file; the caller checkpoints the WAL after the commit
    (:meth:`crmcli.db.Database.checkpoint`) so they leave the ``-wal`` file too.
    """
    from sqlalchemy import text

    from crmcli.audit import note

    now = now or utcnow()
    if customer.erased_at is not None:
        raise Conflict(f"customer {customer.id} was already erased")
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA secure_delete = ON"))
    cid = customer.id
    note(session, erased=cid)
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
