"""Referral fraud signals, computed in SQL, on SQLite and PostgreSQL; review instead of verified."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmcli.config import Config, Referrals
from crmcli.db import Database
from crmcli.models import Coupon, Referral
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase, refund_purchase
from crmcli.services.referrals import record_referral, reject_referral, verify_referral
from crmcli.services.signals import check_referrals, disposable_domains, find_signals

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = Config(referrals=Referrals(max_per_hour=2))


def add(s: Any, name: str, at: datetime = T0, **fields: Any) -> int:
    found = add_customer(session=s, data=CustomerInput(name=name, **fields), config=CONFIG, now=at)
    assert found.id is not None
    return found.id


def refer(s: Any, referrer: int, referred: int, at: datetime = T0) -> int:
    r = record_referral(
        session=s, referrer=find_customer(s, str(referrer)), referred=find_customer(s, str(referred)), now=at
    )
    assert r.id is not None
    return r.id


def buy(s: Any, who: int, at: datetime, amount: int = 3000, config: Config = CONFIG) -> int:
    sale, _ = add_purchase(
        session=s, customer=find_customer(s, str(who)), data=PurchaseInput(amount, at=at), config=config, now=at
    )
    assert sale.id is not None
    return sale.id


def test_the_disposable_list_ships_with_the_package_and_names_its_source() -> None:
    from importlib import resources

    text = resources.files("crmcli").joinpath("data/disposable_domains.txt").read_text(encoding="utf-8")
    assert "github.com/disposable-email-domains/disposable-email-domains" in text and "CC0" in text
    assert {"mailinator.com", "yopmail.com", "guerrillamail.com"} <= disposable_domains()
    assert "gmail.com" not in disposable_domains()


def test_each_signal_on_both_backends(backend: Any, tmp_path: Path) -> None:
    target, drop = backend(Path(tempfile.mkdtemp(dir=tmp_path)), "signals")
    db = Database(target)
    try:
        with db.session(write=True) as s:
            ann = add(s, "Ann Lee", email="ann.lee+shop@example.com", phone="+14155550101", city="Leeds")
            twin = add(s, "Al Smith", email="annlee@other.org")  # same email local part
            phone = add(s, "Bo Diaz", phone="+1 (415) 555 0101".replace("+1 (415) 555 0101", "4155550101"))
            home = add(s, "Cy Lee", city=" leeds ")  # same city and last name
            temp = add(s, "Di Ng", email="di@mailinator.com")
            clean = add(s, "Ed Po", email="ed@example.net", city="York")
            ids = {
                "twin": refer(s, ann, twin, T0),
                "phone": refer(s, ann, phone, T0 + timedelta(minutes=10)),
                "home": refer(s, ann, home, T0 + timedelta(hours=2)),
                "temp": refer(s, ann, temp, T0 + timedelta(hours=5)),
                "clean": refer(s, ann, clean, T0 + timedelta(hours=9)),
            }
            found = find_signals(s, CONFIG, list(ids.values()), T0 + timedelta(days=1))
        assert found.get(ids["twin"]) == ["same_email"]
        assert found.get(ids["phone"]) == ["same_phone"]
        assert found.get(ids["home"]) == ["same_household"]
        assert found.get(ids["temp"]) == ["disposable_email"]
        assert ids["clean"] not in found
        with db.session(write=True) as s:
            # Three referrals in one hour with max_per_hour 2: all three are a burst.
            burst = [add(s, f"B{n} X", at=T0) for n in range(3)]
            rids = [refer(s, clean, b, T0 + timedelta(days=1, minutes=20 * n)) for n, b in enumerate(burst)]
            found = find_signals(s, CONFIG, rids, T0 + timedelta(days=2))
        assert [found.get(rid) for rid in rids] == [["burst"]] * 3
    finally:
        db.close()
        drop()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(str(tmp_path / "s.db"))


def test_a_blocking_signal_holds_the_referral_for_review_and_a_person_decides(db: Database) -> None:
    with db.session(write=True) as s:
        ann = add(s, "Ann", email="ann@example.com")
        bob = add(s, "Bob", email="bob@yopmail.com")
        cy = add(s, "Cy", email="ann@example.org")
        held = refer(s, ann, bob)
        other = refer(s, ann, cy)
        buy(s, bob, T0 + timedelta(hours=1))
        buy(s, cy, T0 + timedelta(hours=1))
    with db.session() as s:
        rows = {r.id: r for r in s.execute(select(Referral)).scalars()}
        assert s.execute(select(Coupon)).scalars().all() == []  # nobody rewarded
    assert (rows[held].status, rows[held].signals) == ("review", "disposable_email")
    assert rows[held].reason == "held for review: disposable_email"
    assert rows[other].status == "review" and rows[other].signals == "same_email"
    with db.session(write=True) as s:
        result = verify_referral(session=s, referral_id=held, config=CONFIG, now=T0 + timedelta(days=1))
        reject_referral(session=s, referral_id=other, reason="same person", now=T0 + timedelta(days=1))
    assert result["referrer_reward"] is not None and result["referred_reward"] is not None
    with db.session() as s:
        assert [r.status for r in s.execute(select(Referral).order_by(Referral.id)).scalars()] == [
            "verified",
            "rejected",
        ]


def test_buy_refund_buy_again_within_the_hold_is_held_for_review(db: Database) -> None:
    held = Config(referrals=Referrals(hold_days=14))
    with db.session(write=True) as s:
        ann = add(s, "Ann")
        bob = add(s, "Bob")
        rid = refer(s, ann, bob)
        first = buy(s, bob, T0 + timedelta(hours=1), config=held)  # verifies; rewards wait for the hold
    with db.session() as s:
        clean = s.get(Referral, rid)
        assert clean is not None and (clean.status, clean.signals) == ("verified", None)  # NULL, not ""
    with db.session(write=True) as s:
        refund_purchase(
            session=s, purchase_id=first, config=held, at=T0 + timedelta(days=1), now=T0 + timedelta(days=1)
        )
        buy(s, bob, T0 + timedelta(days=2), config=held)
    with db.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        assert (referral.status, referral.signals) == ("review", "refunded_purchase")


def test_a_refunded_sale_at_the_same_moment_as_the_verifying_one_is_not_before_it(db: Database) -> None:
    """Sales of one moment get their ids in the order they were written, which a till and a
    file do not share: the signal must not depend on it (regression: it broke the tie by id)."""
    held = Config(referrals=Referrals(hold_days=14))
    moment = T0 + timedelta(hours=1)
    with db.session(write=True) as s:
        ann = add(s, "Ann")
        bob = add(s, "Bob")
        rid = refer(s, ann, bob)
        first = buy(s, bob, moment, config=held)  # verifies the referral
    with db.session(write=True) as s:
        refund_purchase(session=s, purchase_id=first, config=held, at=moment, now=T0 + timedelta(hours=2))
    with db.session(write=True) as s:
        again = buy(s, bob, moment, config=held)  # the same moment, written after: a larger id
    assert again > first
    with db.session() as s:
        referral = s.get(Referral, rid)
        assert referral is not None
        assert (referral.status, referral.signals, referral.purchase_id) == ("verified", None, again)


def test_the_daily_check_adds_no_repeat_and_sends_held_referrals_to_review(db: Database) -> None:
    config = Config(referrals=Referrals(hold_days=7))
    with db.session(write=True) as s:
        ann = add(s, "Ann")
        bob = add(s, "Bob")
        rid = refer(s, ann, bob)
        add_purchase(
            session=s, customer=find_customer(s, str(bob)), data=PurchaseInput(3000, at=T0), config=config, now=T0
        )
        # The referred customer's email changes to a throwaway one while the reward is held.
        find_customer(s, str(bob)).email = "bob@mailinator.com"
    with db.session(write=True) as s:
        assert check_referrals(s, config, T0 + timedelta(days=1))["to_review"] == 1
    with db.session(write=True) as s:
        again = check_referrals(s, config, T0 + timedelta(days=40))
        referral = s.get(Referral, rid)
        assert referral is not None
        assert referral.status == "review" and referral.signals == "disposable_email no_repeat_purchase"
    assert again["changed"] == 1 and again["to_review"] == 0


def test_without_a_hold_a_refund_only_reopens_and_the_next_purchase_verifies(db: Database) -> None:
    with db.session(write=True) as s:
        ann = add(s, "Ann")
        bob = add(s, "Bob")
        rid = refer(s, ann, bob)
        first = buy(s, bob, T0 + timedelta(hours=1))
    with db.session(write=True) as s:
        refund_purchase(
            session=s, purchase_id=first, config=CONFIG, at=T0 + timedelta(days=1), now=T0 + timedelta(days=1)
        )
        buy(s, bob, T0 + timedelta(days=2))
        referral = s.get(Referral, rid)
        assert referral is not None and (referral.status, referral.signals) == ("verified", None)
