"""Rewards the daily job gives on its own: birthdays and apologies for complaints past a deadline.

Each reward is recorded in ``auto_reward`` under (rule, customer, key): the birthday's year,
or the complaint's id. The unique index makes it given once, however often the job runs.
A reward is a coupon of the configured campaign (so the campaign's budget caps what it can
cost) or points (a ``birthday`` or ``apology`` ledger entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from crmcli.config import CampaignReward, Config
from crmcli.models import AutoReward, Customer, Interaction, table_of
from crmcli.values import parse_money, parse_when


@dataclass(frozen=True)
class Due:
    customer_id: int
    key: str  # the birthday's year, the complaint's id
    at: datetime  # the moment it became due (the reward is dated at the run)


def give(
    session: Session, config: Config, reward: CampaignReward, rule: str, due: Sequence[Due], now: datetime
) -> dict[str, int]:
    """Give ``reward`` for each item not given yet: coupons in one batch, or points entries."""
    from crmcli.bulk import insert_rows
    from crmcli.models import PointsEntry
    from crmcli.services.coupons import CouponTerms, issue_coupons

    a = table_of(AutoReward)
    given = set(
        session.execute(
            select(a.c.customer_id, a.c.key).where(
                a.c.rule == rule, a.c.customer_id.in_(sorted({d.customer_id for d in due}))
            )
        ).all()
    )
    todo = [d for d in due if (d.customer_id, d.key) not in given]
    if not todo:
        return {"customers": 0, "coupons": 0, "points": 0}
    coupon_ids: list[int | None] = [None] * len(todo)
    if reward.points is not None:
        entries = [
            {
                "customer_id": d.customer_id,
                "delta": reward.points,
                "kind": rule,
                "reason": f"{rule} {d.key}",
                "purchase_id": None,
                "period": f"{rule[0]}{d.key}",
                "at": now,
            }
            for d in todo
        ]
        insert_rows(session.connection(), table_of(PointsEntry), list(entries[0]), entries)
    else:
        expires = (now.astimezone(config.tz) + timedelta(days=reward.expires_in_days)).date()
        terms = CouponTerms(
            percent_bp=int(reward.percent * 100) if reward.percent is not None else None,
            amount_minor=(
                parse_money(reward.amount, config.currency.minor_digits) if reward.amount is not None else None
            ),
            expires_at=parse_when(expires.isoformat(), config.tz, end_of_day=True),
            campaign=reward.campaign,
        )
        coupons = issue_coupons(session=session, customer_ids=[d.customer_id for d in todo], terms=terms, now=now)
        coupon_ids = [c.id for c in coupons]
    rows = [
        {
            "rule": rule,
            "customer_id": d.customer_id,
            "key": d.key,
            "coupon_id": cid,
            "points": reward.points,
            "at": now,
        }
        for d, cid in zip(todo, coupon_ids, strict=True)
    ]
    insert_rows(session.connection(), a, list(rows[0]), rows)
    return {
        "customers": len({d.customer_id for d in todo}),
        "coupons": len(todo) if reward.points is None else 0,
        "points": len(todo) * (reward.points or 0),
    }


# --- birthdays ---------------------------------------------------------------------------------


def next_birthday(birthday: str, today: date) -> date:
    """The birthday (MM-DD) on or after ``today``; 29 February is the 28th in other years."""
    month, day = (int(part) for part in birthday.split("-"))
    for year in (today.year, today.year + 1):
        try:
            moment = date(year, month, day)
        except ValueError:  # 02-29 outside a leap year
            moment = date(year, month, day - 1)
        if moment >= today:
            return moment
    raise AssertionError("a birthday comes within a year")


def birthdays_due(session: Session, config: Config, now: datetime) -> list[Due]:
    """Live customers whose birthday falls within ``days_before`` days of today (business calendar)."""
    reward = config.birthday_reward
    if reward is None:
        return []
    c = table_of(Customer)
    today = now.astimezone(config.tz).date()
    found = []
    for cid, birthday in session.execute(
        select(c.c.id, c.c.birthday).where(c.c.birthday.is_not(None), c.c.erased_at.is_(None)).order_by(c.c.id)
    ):
        day = next_birthday(birthday, today)
        if (day - today).days <= reward.days_before:
            found.append(Due(cid, str(day.year), now))
    return found


def give_birthday_rewards(session: Session, config: Config, now: datetime) -> dict[str, int]:
    if config.birthday_reward is None:
        return {"customers": 0, "coupons": 0, "points": 0}
    return give(session, config, config.birthday_reward, "birthday", birthdays_due(session, config, now), now)


# --- apologies for complaints past their deadline ---------------------------------------------


def breached_complaints(session: Session, config: Config, now: datetime) -> list[Due]:
    """Complaints that missed their first-response or resolution deadline by ``now``: each
    dated at the first deadline it missed (the rule lives with the report that shows it)."""
    from crmcli.reports.amends import breach_rule, deadlines

    i = table_of(Interaction)
    breached, response_missed = breach_rule(config, now)
    respond, resolve = deadlines(config)
    rows = session.execute(
        select(i.c.id, i.c.customer_id, i.c.at, response_missed.label("response")).where(breached).order_by(i.c.id)
    ).all()
    return [Due(cid, str(iid), at + (respond if response else resolve)) for iid, cid, at, response in rows]


def give_apologies(session: Session, config: Config, now: datetime) -> dict[str, int]:
    reward = config.sla.breach_reward
    if reward is None:
        return {"customers": 0, "coupons": 0, "points": 0}
    return give(session, config, reward, "apology", breached_complaints(session, config, now), now)
