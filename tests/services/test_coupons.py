"""The coupon rules, called as a library: no CLI, a temp SQLite database per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Conflict, Invalid
from crmcli.models import Coupon
from crmcli.services.coupons import (
    CouponTerms,
    coupon_status,
    discount_for,
    issue_coupons,
    use_coupon,
    void_coupon,
)
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.values import parse_when

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DEFAULTS = Config()


@pytest.fixture
def shop(database: Database, config: Config) -> tuple[int, int]:
    """Two customers, Ann and Bob; their ids."""
    with database.session(write=True) as session:
        ids = [
            add_customer(session=session, data=CustomerInput(name=name), config=config, now=NOW).id
            for name in ("Ann", "Bob")
        ]
    ann, bob = ids
    assert ann is not None and bob is not None
    return ann, bob


def issue(database: Database, customer_id: int, **terms: Any) -> str:
    with database.session(write=True) as session:
        (coupon,) = issue_coupons(session=session, customer_ids=[customer_id], terms=CouponTerms(**terms), now=NOW)
    return coupon.code


def use(
    database: Database, code: str, customer_id: int, amount: int | None, at: datetime = NOW, config: Config = DEFAULTS
) -> int:
    """One use of the coupon in its own transaction; the discount."""
    with database.session(write=True) as session:
        _, discount = use_coupon(session, code=code, customer_id=customer_id, amount_minor=amount, at=at, config=config)
    return discount


def stored(database: Database, code: str) -> Coupon:
    with database.session() as session:
        return session.execute(select(Coupon).where(Coupon.code == code)).scalar_one()


# --- the discount --------------------------------------------------------------------


@given(
    percent_bp=st.one_of(st.none(), st.integers(1, 10_000)),
    amount_off=st.integers(1, 10**9),
    amount=st.integers(0, 10**9),
)
def test_the_discount_never_exceeds_the_amount(percent_bp: int | None, amount_off: int, amount: int) -> None:
    coupon = Coupon(code="X", percent_bp=percent_bp, amount_minor=None if percent_bp else amount_off, max_uses=1)
    discount = discount_for(coupon, amount)
    assert 0 <= discount <= amount
    if percent_bp is not None:  # the exact share, rounded half up, in integers
        assert discount == (amount * percent_bp * 2 + 10_000) // 20_000
    else:
        assert discount == min(amount_off, amount)


@pytest.mark.parametrize(
    ("percent_bp", "amount", "discount"),
    [
        (1500, 999, 150),  # 15% of 9.99 = 1.4985 -> 1.50
        (1250, 4, 1),  # 12.5% of 0.04 = 0.005 -> 0.01: half up, not to even
        (1250, 12, 2),  # 0.015 -> 0.02
        (1000, 5, 1),  # 0.005 -> 0.01
        (1000, 4, 0),  # 0.004 -> 0.00
        (3333, 100, 33),  # 33.33% of 1.00
        (10_000, 1999, 1999),  # 100% off
    ],
)
def test_percent_rounding(percent_bp: int, amount: int, discount: int) -> None:
    assert discount_for(Coupon(code="X", percent_bp=percent_bp, max_uses=1), amount) == discount


def test_an_amount_off_larger_than_the_order_takes_only_the_order(database: Database, shop: tuple[int, int]) -> None:
    ann, _ = shop
    code = issue(database, ann, amount_minor=5000)
    assert use(database, code, ann, 1999) == 1999


# --- the terms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "message", "fields"),
    [
        ({}, "a coupon takes either a percent or an amount off", ("percent", "amount")),
        ({"percent_bp": 1000, "amount_minor": 100}, "a coupon takes either a percent or an amount off", None),
        ({"percent_bp": 0}, "the percent off must be more than 0 and at most 100", ("percent",)),
        ({"percent_bp": 10_001}, "the percent off must be more than 0 and at most 100", ("percent",)),
        ({"amount_minor": 0}, "the amount off must be more than 0", ("amount",)),
        ({"amount_minor": 100, "min_spend_minor": -1}, "the minimum spend cannot be negative", ("min_spend",)),
        ({"amount_minor": 100, "max_uses": 0}, "a coupon must allow at least 1 use", ("max_uses",)),
    ],
)
def test_bad_terms_are_refused_in_the_domain_s_words(
    terms: dict[str, Any], message: str, fields: tuple[str, ...] | None
) -> None:
    with pytest.raises(Invalid) as refused:
        CouponTerms(**terms).check()
    assert refused.value.message == message
    assert refused.value.hint is None
    if fields is not None:
        assert refused.value.fields == fields


def test_a_chosen_code_is_for_one_customer(database: Database, shop: tuple[int, int]) -> None:
    with database.session(write=True) as session, pytest.raises(Invalid) as refused:
        issue_coupons(session=session, customer_ids=list(shop), terms=CouponTerms(amount_minor=100), code="MINE")
    assert refused.value.fields == ("code", "customer")
    with database.session() as session:
        assert session.execute(select(Coupon)).first() is None


# --- who, when and how much ------------------------------------------------------------


def test_minimum_spend(database: Database, shop: tuple[int, int]) -> None:
    ann, _ = shop
    code = issue(database, ann, percent_bp=1000, min_spend_minor=2000, max_uses=2)
    with pytest.raises(Conflict, match=rf"^coupon {code} needs a spend of at least 20\.00$"):
        use(database, code, ann, 1999)
    assert stored(database, code).uses == 0
    assert use(database, code, ann, 2000) == 200  # exactly the minimum is enough
    assert stored(database, code).uses == 1


def test_expiry_is_the_end_of_the_day_in_the_business_time_zone(database: Database, shop: tuple[int, int]) -> None:
    ann, _ = shop
    config = Config(timezone="Asia/Shanghai")
    shanghai = ZoneInfo("Asia/Shanghai")
    expires = parse_when("2026-03-31", config.tz, end_of_day=True)
    code = issue(database, ann, amount_minor=100, expires_at=expires, max_uses=5)

    last_moment = datetime(2026, 3, 31, 23, 59, 59, tzinfo=shanghai)
    assert use(database, code, ann, 1000, at=last_moment, config=config) == 100
    # Still March 31 in UTC, but already April 1 in the shop: expired.
    utc_same_day = datetime(2026, 3, 31, 16, 0, 0, tzinfo=UTC)
    with pytest.raises(Conflict, match=rf"^coupon {code} expired at 2026-03-31T23:59:59\+08:00$"):
        use(database, code, ann, 1000, at=utc_same_day, config=config)
    assert stored(database, code).uses == 1
    assert coupon_status(stored(database, code), now=last_moment) == "active"
    assert coupon_status(stored(database, code), now=last_moment + timedelta(seconds=1)) == "expired"


def test_someone_else_s_coupon_is_refused(database: Database, shop: tuple[int, int]) -> None:
    ann, bob = shop
    code = issue(database, ann, amount_minor=100)
    with pytest.raises(Conflict, match=rf"^coupon {code} belongs to another customer$"):
        use(database, code, bob, 1000)
    assert stored(database, code).uses == 0
    assert use(database, code, ann, 1000) == 100


def test_a_void_coupon_is_refused(database: Database, shop: tuple[int, int]) -> None:
    ann, _ = shop
    code = issue(database, ann, amount_minor=100, max_uses=3)
    with database.session(write=True) as session:
        void_coupon(session=session, code=code, now=NOW)
    with pytest.raises(Conflict, match=rf"^coupon {code} was voided$"):
        use(database, code, ann, 1000)
    assert stored(database, code).uses == 0
    assert coupon_status(stored(database, code), now=NOW) == "void"
    with database.session(write=True) as session, pytest.raises(Conflict, match="is already void"):
        void_coupon(session=session, code=code)


# --- max_uses ---------------------------------------------------------------------------

# Mostly the owner trying, so that sequences often reach max_uses; now and then someone else, or a void.
ATTEMPT = st.tuples(st.sampled_from(["owner", "owner", "owner", "other", "void"]), st.integers(0, 3000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_uses=st.integers(1, 3), min_spend=st.integers(0, 1000), attempts=st.lists(ATTEMPT, max_size=10))
def test_uses_never_exceed_max_uses_and_count_the_successes(
    database: Database, shop: tuple[int, int], max_uses: int, min_spend: int, attempts: list[tuple[str, int]]
) -> None:
    """Any sequence of attempts (by the owner, by someone else, voiding it on the way):
    the coupon is used exactly as often as an attempt succeeded, never more than max_uses."""
    ann, bob = shop
    code = issue(database, ann, amount_minor=500, min_spend_minor=min_spend, max_uses=max_uses)
    succeeded = 0
    for who, amount in attempts:
        if who == "void":
            try:
                with database.session(write=True) as session:
                    void_coupon(session=session, code=code, now=NOW)
            except Conflict:
                pass
            continue
        try:
            use(database, code, ann if who == "owner" else bob, amount)
        except Conflict:
            pass
        else:
            succeeded += 1
        assert stored(database, code).uses == succeeded <= max_uses
    assert stored(database, code).uses == succeeded
