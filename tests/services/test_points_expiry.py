"""Points expiry: a derived removal of the replay, oldest points first, never below zero."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmcli.config import Config, Points
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.services import points as ledger
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.expiry import customers_with_points_to_expire
from crmcli.services.identify import find_customer
from crmcli.services.points import Expiry, Fact, Removal, replay
from crmcli.services.profile import points_summary

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
EXPIRING = Config(points=Points(expire_after_days=30, per_month_of_tenure=0))


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def end_of(n: int) -> datetime:
    """The end of day ``n`` (UTC business calendar): when points earned on day n-30 expire."""
    return datetime.combine((T0 + timedelta(days=n)).date(), datetime.max.time(), tzinfo=UTC)


def test_what_is_left_of_a_lot_expires_at_the_end_of_the_day_it_reaches_its_age() -> None:
    facts = [Fact(day(0), 100, "earn", 1), Fact(day(10), 50, "earn", 2), Fact(day(20), -120, "redeem")]
    outcome = replay(facts, [], expiry=Expiry(30, UTC_ZONE), until=day(60))
    # The spend took day 0's 100 and 20 of day 10's: day 0's lot is empty, day 10's 30 expire.
    assert [(r.kind, r.at, amount) for r, amount in outcome.removals] == [("expire", end_of(40), 30)]


def test_expiry_waits_for_until_and_reads_in_the_business_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    earned = datetime(2026, 1, 1, 20, tzinfo=UTC)  # already 2 January in Shanghai
    outcome = replay([Fact(earned, 10, "earn")], [], expiry=Expiry(1, shanghai), until=datetime(2026, 1, 3, tzinfo=UTC))
    assert outcome.removals == []  # 3 January ends at 16:00 UTC, after until
    outcome = replay([Fact(earned, 10, "earn")], [], expiry=Expiry(1, shanghai), until=datetime(2026, 1, 4, tzinfo=UTC))
    ((removal, amount),) = outcome.removals
    assert amount == 10 and removal.at.astimezone(shanghai).date() == date(2026, 1, 3)


def test_a_spend_at_the_last_moment_uses_the_points_before_they_expire() -> None:
    facts = [Fact(day(0), 10, "earn"), Fact(end_of(30), -10, "redeem")]
    outcome = replay(facts, [], expiry=Expiry(30, UTC_ZONE), until=day(90))
    assert outcome.short is None and outcome.removals == []


lots = st.lists(st.tuples(st.integers(0, 120), st.integers(-200, 200).filter(bool)), min_size=1, max_size=25)


@given(raw=lots, days=st.integers(1, 60), resets=st.lists(st.integers(0, 120), max_size=3))
def test_expiry_never_takes_the_balance_below_zero_and_takes_the_oldest_first(
    raw: list[tuple[int, int]], days: int, resets: list[int]
) -> None:
    facts = [Fact(day(d), delta, "earn" if delta > 0 else "redeem") for d, delta in raw]
    removals = [Removal(day(d) + timedelta(hours=3), "reset", None, "late") for d in resets]
    expiry = Expiry(days, UTC_ZONE)
    outcome = replay(facts, removals, expiry=expiry, until=day(400))
    if outcome.short is not None:
        return  # a write would refuse this history
    moments = sorted({f.at for f in facts} | {r.at for r, _ in outcome.removals})
    for t in moments:
        held = sum(f.delta for f in facts if f.at <= t) - sum(a for r, a in outcome.removals if r.at <= t)
        assert held >= 0
        # Nothing held is past its age: the points held are always the young ones.
        assert held <= sum(f.delta for f in facts if 0 < f.delta and f.at <= t < expiry.at(f.at))
    # Oldest first: an expiry only ever removes points earned before (or on the day of) every
    # point still held after it, so the expiries come in the order the points were earned,
    # and none removes points younger than its age.
    expiries = [(r.at, a) for r, a in outcome.removals if r.kind == "expire"]
    assert expiries == sorted(expiries)
    for at, amount in expiries:
        assert amount > 0
        earned_by = at - timedelta(days=days)
        assert sum(f.delta for f in facts if f.delta > 0 and f.at <= earned_by) >= amount
    # Nothing old enough is left: after everything, the points still held are younger than the age.
    remaining = sum(f.delta for f in facts) - sum(a for _, a in outcome.removals)
    young = sum(f.delta for f in facts if f.delta > 0 and expiry.at(f.at) > day(400))
    assert 0 <= remaining <= young


# --- against a database ---------------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Database:
    db = Database(str(tmp_path / "p.db"))
    with db.session(write=True) as s:
        add_customer(session=s, data=CustomerInput(name="Ann"), config=EXPIRING, now=T0)
    return db


def give(db: Database, points: int, at: datetime) -> None:
    with db.session(write=True) as s:
        ledger.add_points(
            session=s, customer=find_customer(s, "1"), points=points, reason="gift", config=EXPIRING, now=at
        )


def test_expired_points_leave_an_expire_entry_and_as_of_reads_still_see_them(shop: Database) -> None:
    give(shop, 100, day(0))
    give(shop, 40, day(20))
    with shop.session(write=True) as s:
        summary = points_summary(session=s, config=EXPIRING, customer_id=1, now=day(35))
    assert summary["balance"] == 40
    assert summary["ledger"][0]["kind"] == "expire" and summary["ledger"][0]["delta"] == -100
    assert summary["expiring_soon"] == [{"date": date(2026, 2, 20), "points": 40}]
    with shop.session() as s:
        assert ledger.balance(s, 1, day(29)) == 140 and ledger.balance(s, 1, day(35)) == 40
    with shop.session(write=True) as s:
        then = points_summary(session=s, config=EXPIRING, customer_id=1, now=day(35), as_of=day(25))
    assert then["balance"] == 140
    assert then["expiring_soon"] == [
        {"date": date(2026, 1, 31), "points": 100},
        {"date": date(2026, 2, 20), "points": 40},
    ]


def test_a_spend_cannot_use_expired_points(shop: Database) -> None:
    give(shop, 100, day(0))
    with shop.session(write=True) as s, pytest.raises(Invalid, match="has 0 points"):
        ledger.redeem_points(
            session=s, customer=find_customer(s, "1"), points=10, reason="late", config=EXPIRING, now=day(31)
        )


def test_points_spent_in_time_are_not_expired_and_the_daily_settle_changes_nothing_twice(shop: Database) -> None:
    give(shop, 100, day(0))
    with shop.session(write=True) as s:
        ledger.redeem_points(
            session=s, customer=find_customer(s, "1"), points=70, reason="coffee", config=EXPIRING, now=day(10)
        )
    for _ in range(2):
        with shop.session(write=True) as s:
            ids = customers_with_points_to_expire(s, EXPIRING, day(50))
            ledger.settle_points(s, EXPIRING, ids, now=day(50), strict=False)
        with shop.session() as s:
            assert [(e["kind"], e["delta"]) for e in ledger.ledger(s, 1)][:1] == [("expire", -30)]
            assert ledger.balance(s, 1) == 0


def test_expiry_off_by_default_keeps_points_forever(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "q.db"))
    with db.session(write=True) as s:
        add_customer(session=s, data=CustomerInput(name="Bo"), config=Config(), now=T0)
        ledger.add_points(session=s, customer=find_customer(s, "1"), points=5, reason="x", config=Config(), now=T0)
        summary = points_summary(session=s, config=Config(), customer_id=1, now=day(3000))
    assert summary["balance"] == 5 and summary["expiring_soon"] == []
