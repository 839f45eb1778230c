"""The daily job: every scheduled rule once, safe to run again (a second run the same day
changes nothing), each rule in its own home; this module only runs them in order and says
what each did."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, literal, select
from sqlmodel import Session

from crmcli.audit import note
from crmcli.config import Config
from crmcli.models import PointsEntry, Purchase, Referral, UTCDateTime, table_of
from crmcli.services import points as ledger
from crmcli.services.expiry import customers_with_points_to_expire
from crmcli.services.referrals import reward_all, serialise_referral_changes
from crmcli.services.rewards import give_apologies, give_birthday_rewards
from crmcli.services.signals import check_referrals

DAILY_LOCK = 0x63726D_646179  # "crm" "day": one daily job at a time on PostgreSQL


def _removals(session: Session, kind: str) -> tuple[int, int]:
    e = table_of(PointsEntry)
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(e.c.delta), 0)).where(e.c.kind == kind)
    ).one()
    return int(count), -int(total)


def _settled(session: Session, kind: str, settle: Any) -> dict[str, Any]:
    """Run ``settle`` and say how many ``kind`` entries (and points) it added."""
    count, points = _removals(session, kind)
    settle()
    count_after, points_after = _removals(session, kind)
    return {"entries": count_after - count, "points": points_after - points}


def reward_held_referrals(session: Session, config: Config, now: datetime) -> dict[str, int]:
    """Reward the verified referrals whose qualifying purchase has stood ``referrals.hold_days``
    unrefunded (a refund in the hold reopens the referral instead, see referrals.reopen_referrals)."""
    r, p = table_of(Referral), table_of(Purchase)
    stood = literal(now - timedelta(days=config.referrals.hold_days), UTCDateTime())
    due = list(
        session.execute(
            select(Referral)
            .join(p, p.c.id == r.c.purchase_id)
            .where(r.c.status == "verified", r.c.rewarded_at.is_(None), p.c.refunded_at.is_(None), p.c.at <= stood)
            .order_by(r.c.id)
        ).scalars()
    )
    return {"referrals": len(reward_all(session, due, config, now))}


def run_daily(*, session: Session, config: Config, as_of: datetime) -> dict[str, Any]:
    """Every scheduled rule as of ``as_of``, in the order their effects depend on each other."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(DAILY_LOCK)))
    serialise_referral_changes(session)
    rules: dict[str, dict[str, Any]] = {}
    late = ledger.customers_with_late_purchases(session, config, as_of)
    rules["late_payment_resets"] = _settled(
        session, "reset", lambda: ledger.settle_points(session, config, late, now=as_of, strict=False)
    )
    rules["tenure_points"] = ledger.accrue_tenure(session=session, config=config, as_of=as_of)
    expiring = customers_with_points_to_expire(session, config, as_of)
    rules["points_expiry"] = _settled(
        session, "expire", lambda: ledger.settle_points(session, config, expiring, now=as_of, strict=False)
    )
    rules["birthday_rewards"] = give_birthday_rewards(session, config, as_of)
    rules["sla_apologies"] = give_apologies(session, config, as_of)
    rules["referral_checks"] = check_referrals(session, config, as_of)
    rules["referral_rewards_released"] = reward_held_referrals(session, config, as_of)
    note(session, daily={name: {k: v for k, v in done.items() if v} for name, done in rules.items()})
    return {"as_of": as_of, **rules}
