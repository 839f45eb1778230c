"""The daily job and the rules it runs: birthdays, apologies, held referral rewards."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmcli.config import BirthdayReward, CampaignReward, Config, Points, Referrals, Sla
from crmcli.db import Database
from crmcli.errors import Conflict
from crmcli.models import AutoReward, Coupon, PointsEntry, Referral
from crmcli.services.campaigns import set_budget
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.daily import run_daily
from crmcli.services.identify import find_customer
from crmcli.services.interactions import log_interaction, respond
from crmcli.services.purchases import PurchaseInput, add_purchase, refund_purchase
from crmcli.services.rewards import next_birthday

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
BIRTHDAY = Config(birthday_reward=BirthdayReward(amount=Decimal(5), days_before=7, expires_in_days=30))
DEFAULTS = Config()
APOLOGY = Config(sla=Sla(breach_reward=CampaignReward(percent=Decimal(15))))


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(str(tmp_path / "d.db"))


def daily(db: Database, config: Config, at: datetime) -> dict[str, Any]:
    with db.session(write=True) as s:
        return run_daily(session=s, config=config, as_of=at)


def customer(
    db: Database, name: str, config: Config = DEFAULTS, at: datetime = T0, referred_by: str | None = None, **fields: Any
) -> int:
    with db.session(write=True) as s:
        found = add_customer(
            session=s, data=CustomerInput(name=name, **fields), config=config, now=at, referred_by=referred_by
        )
        assert found.id is not None
        return found.id


def coupons(db: Database, campaign: str) -> list[tuple[int | None, str]]:
    with db.session() as s:
        return [(c.customer_id, c.code) for c in s.execute(select(Coupon).where(Coupon.campaign == campaign)).scalars()]


# --- birthdays ------------------------------------------------------------------------------


def test_next_birthday_and_the_29th_of_february() -> None:
    assert next_birthday("03-14", date(2026, 3, 1)) == date(2026, 3, 14)
    assert next_birthday("01-02", date(2026, 3, 1)) == date(2027, 1, 2)
    assert next_birthday("02-29", date(2027, 2, 1)) == date(2027, 2, 28)
    assert next_birthday("02-29", date(2028, 2, 1)) == date(2028, 2, 29)


def test_a_birthday_reward_comes_days_before_once_a_year(db: Database) -> None:
    ann = customer(db, "Ann", birthday="03-14")
    customer(db, "Bob", birthday="06-01")
    customer(db, "Cy")
    assert daily(db, BIRTHDAY, day(5))["birthday_rewards"]["coupons"] == 0  # 6 March: 8 days ahead
    assert daily(db, BIRTHDAY, day(6))["birthday_rewards"] == {"customers": 1, "coupons": 1, "points": 0}
    assert daily(db, BIRTHDAY, day(6))["birthday_rewards"]["coupons"] == 0  # the same day again
    assert daily(db, BIRTHDAY, day(13))["birthday_rewards"]["coupons"] == 0  # the birthday itself
    assert [cid for cid, _ in coupons(db, "birthday")] == [ann]
    assert daily(db, BIRTHDAY, day(365 + 7))["birthday_rewards"]["coupons"] == 1  # the next year
    with db.session() as s:
        keys = sorted(s.execute(select(AutoReward.key).where(AutoReward.rule == "birthday")).scalars())
    assert keys == ["2026", "2027"]


def test_a_birthday_reward_in_points(db: Database) -> None:
    config = Config(birthday_reward=BirthdayReward(points=50, days_before=0))
    customer(db, "Ann", birthday="03-01")
    assert daily(db, config, T0)["birthday_rewards"]["points"] == 50
    daily(db, config, T0 + timedelta(hours=1))
    with db.session() as s:
        entries = s.execute(select(PointsEntry.kind, PointsEntry.delta).where(PointsEntry.kind == "birthday")).all()
    assert entries == [("birthday", 50)]


# --- apologies -------------------------------------------------------------------------------


def complaint(db: Database, who: int, at: datetime) -> int:
    with db.session(write=True) as s:
        found = log_interaction(session=s, customer=find_customer(s, str(who)), kind="complaint", at=at, now=at)
        assert found.id is not None
        return found.id


def test_a_complaint_past_its_deadline_gets_one_apology_under_the_campaign_budget(db: Database) -> None:
    ann, bob, cy = customer(db, "Ann"), customer(db, "Bob"), customer(db, "Cy")
    complaint(db, ann, T0)
    answered = complaint(db, bob, T0)
    with db.session(write=True) as s:
        respond(session=s, interaction_id=answered, at=T0 + timedelta(minutes=5))
    complaint(db, cy, T0 + timedelta(hours=1))
    # 5 minutes in, nothing is late; 11 minutes in, Ann waits past the first-response deadline.
    assert daily(db, APOLOGY, T0 + timedelta(minutes=5))["sla_apologies"]["coupons"] == 0
    assert daily(db, APOLOGY, T0 + timedelta(minutes=11))["sla_apologies"] == {
        "customers": 1,
        "coupons": 1,
        "points": 0,
    }
    assert daily(db, APOLOGY, T0 + timedelta(minutes=30))["sla_apologies"]["coupons"] == 0  # once per complaint
    # Bob answered in time but is not resolved within 4 hours; Cy is waiting too.
    assert daily(db, APOLOGY, T0 + timedelta(hours=5))["sla_apologies"]["coupons"] == 2
    assert sorted(cid for cid, _ in coupons(db, "apology")) == [ann, bob, cy]
    with db.session(write=True) as s:
        set_budget(s, "apology", budget_uses=1)
    codes = dict(coupons(db, "apology"))
    with db.session(write=True) as s:
        add_purchase(
            session=s,
            customer=find_customer(s, str(ann)),
            data=PurchaseInput(2000, at=day(1), coupon=codes[ann]),
            config=APOLOGY,
            now=day(1),
        )
    with db.session(write=True) as s, pytest.raises(Conflict, match="campaign apology has used its budget"):
        add_purchase(
            session=s,
            customer=find_customer(s, str(bob)),
            data=PurchaseInput(2000, at=day(1), coupon=codes[bob]),
            config=APOLOGY,
            now=day(1),
        )


def test_without_a_breach_reward_no_apology_is_given(db: Database) -> None:
    complaint(db, customer(db, "Ann"), T0)
    assert daily(db, Config(), day(1))["sla_apologies"]["coupons"] == 0
    assert coupons(db, "apology") == []


# --- the job as a whole -------------------------------------------------------------------------


def test_a_second_run_the_same_day_changes_nothing(db: Database) -> None:
    config = Config(
        points=Points(expire_after_days=30),
        birthday_reward=BirthdayReward(percent=Decimal(10)),
        sla=Sla(breach_reward=CampaignReward(points=20)),
    )
    ann = customer(db, "Ann", config, at=day(-100), birthday="03-03")
    complaint(db, ann, day(-1))
    with db.session(write=True) as s:
        add_purchase(
            session=s,
            customer=find_customer(s, str(ann)),
            data=PurchaseInput(50_000, at=day(-60), due_at=day(-50), unpaid=True),
            config=config,
            now=day(-60),
        )
    first = daily(db, config, T0)
    assert first["late_payment_resets"]["entries"] == 1 and first["tenure_points"]["points"] == 3
    assert first["birthday_rewards"]["coupons"] == 1 and first["sla_apologies"]["points"] == 20
    again = daily(db, config, T0 + timedelta(hours=2))
    changes = {
        rule: {k: v for k, v in done.items() if k != "checked"} for rule, done in again.items() if rule != "as_of"
    }
    assert all(not any(done.values()) for done in changes.values()), changes


def test_points_expire_in_the_daily_run(db: Database) -> None:
    config = Config(points=Points(expire_after_days=30, per_month_of_tenure=0))
    ann = customer(db, "Ann", config, at=day(-100))
    with db.session(write=True) as s:
        add_purchase(
            session=s,
            customer=find_customer(s, str(ann)),
            data=PurchaseInput(10_000, at=day(-40)),
            config=config,
            now=day(-40),
        )
    assert daily(db, config, T0)["points_expiry"] == {"entries": 1, "points": 10}
    assert daily(db, config, T0)["points_expiry"] == {"entries": 0, "points": 0}


# --- referral rewards held until the qualifying purchase has stood -------------------------------


def test_rewards_wait_for_the_hold_and_a_refund_in_the_hold_gives_none(db: Database) -> None:
    config = Config(referrals=Referrals(hold_days=14))
    ann = customer(db, "Ann", config)
    bob = customer(db, "Bob", config, referred_by=str(ann))
    cy = customer(db, "Cy", config, referred_by=str(ann))
    with db.session(write=True) as s:
        add_purchase(
            session=s, customer=find_customer(s, str(bob)), data=PurchaseInput(3000, at=T0), config=config, now=T0
        )
        sale, _ = add_purchase(
            session=s, customer=find_customer(s, str(cy)), data=PurchaseInput(3000, at=T0), config=config, now=T0
        )
    with db.session() as s:
        assert [r.status for r in s.execute(select(Referral).order_by(Referral.id)).scalars()] == ["verified"] * 2
    assert coupons(db, "referral") == []
    assert daily(db, config, day(13))["referral_rewards_released"] == {"referrals": 0}
    with db.session(write=True) as s:
        assert sale.id is not None
        refund_purchase(session=s, purchase_id=sale.id, config=config, at=day(13), now=day(13))
    assert daily(db, config, day(14))["referral_rewards_released"] == {"referrals": 1}
    assert sorted(cid for cid, _ in coupons(db, "referral")) == [ann, bob]
    assert daily(db, config, day(15))["referral_rewards_released"] == {"referrals": 0}
    with db.session() as s:
        statuses = [r.status for r in s.execute(select(Referral).order_by(Referral.id)).scalars()]
    assert statuses == ["verified", "pending"]
