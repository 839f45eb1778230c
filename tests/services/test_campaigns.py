"""Campaign budgets: the total uses and discount of all a campaign's coupons, also under races."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Conflict, Invalid
from crmcli.models import Campaign, Coupon, Purchase
from crmcli.services.campaigns import set_budget
from crmcli.services.coupons import CouponTerms, coupon_stats, issue_coupons, use_coupon
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase
from crmcli.values import utcnow
from tests.services.test_races import race, rounds

CONFIG = Config()


def shop(target: str, customers: int = 3, **budget: Any) -> list[str]:
    """Customers with one 5.00-off coupon each in campaign 'winback', under ``budget``."""
    db = Database(target)
    with db.session(write=True) as s:
        ids = []
        for n in range(customers):
            c = add_customer(session=s, data=CustomerInput(name=f"C{n}"), config=CONFIG)
            assert c.id is not None
            ids.append(c.id)
        if budget:
            set_budget(s, "winback", **budget)
        coupons = issue_coupons(
            session=s, customer_ids=ids, terms=CouponTerms(amount_minor=500, max_uses=5, campaign="winback")
        )
        codes = [c.code for c in coupons]
    db.close()
    return codes


def buy(db: Database, customer: int, code: str, amount: int = 2000) -> None:
    with db.session(write=True) as s:
        add_purchase(
            session=s,
            customer=find_customer(s, str(customer)),
            data=PurchaseInput(amount_minor=amount, coupon=code),
            config=CONFIG,
        )


def test_a_use_budget_caps_all_the_campaigns_coupons_together(tmp_path: Path) -> None:
    target = str(tmp_path / "b.db")
    codes = shop(target, budget_uses=2)
    db = Database(target)
    buy(db, 1, codes[0])
    buy(db, 2, codes[1])
    with pytest.raises(Conflict, match="campaign winback has used its budget of 2 coupon uses"):
        buy(db, 3, codes[2])
    with db.session() as s:
        (row,) = coupon_stats(session=s, config=CONFIG, campaign="winback")
        assert s.execute(select(func.count()).select_from(Purchase)).scalar_one() == 2  # the refused sale is not kept
        assert s.execute(select(Coupon.uses).where(Coupon.code == codes[2])).scalar_one() == 0
    assert (row["budget_uses"], row["spent_uses"], row["left_uses"]) == (2, 2, 0)
    db.close()


def test_an_amount_budget_refuses_the_discount_that_would_pass_it(tmp_path: Path) -> None:
    target = str(tmp_path / "a.db")
    codes = shop(target, budget_minor=1200)
    db = Database(target)
    buy(db, 1, codes[0])
    buy(db, 2, codes[1])  # 10.00 given, 2.00 left
    with pytest.raises(Conflict, match=r"has 2\.00 of its 12\.00 budget left, less than this discount of 5\.00"):
        buy(db, 3, codes[2])
    buy(db, 3, codes[2], amount=200)  # a 2.00 order takes a 2.00 discount: exactly the rest
    with db.session() as s:
        (row,) = coupon_stats(session=s, config=CONFIG, campaign="winback")
    assert (row["budget_amount"], row["spent_amount"], row["left_amount"]) == (
        Decimal("12.00"),
        Decimal("12.00"),
        Decimal("0.00"),
    )
    db.close()


def test_a_percent_coupon_needs_the_order_amount_under_an_amount_budget(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "p.db"))
    with db.session(write=True) as s:
        c = add_customer(session=s, data=CustomerInput(name="Ann"), config=CONFIG)
        assert c.id is not None
        set_budget(s, "spring", budget_minor=10_000)
        (coupon,) = issue_coupons(session=s, customer_ids=[c.id], terms=CouponTerms(percent_bp=1000, campaign="spring"))
    with db.session(write=True) as s, pytest.raises(Invalid, match="the order amount is needed"):
        use_coupon(s, code=coupon.code, customer_id=1, amount_minor=None, at=utcnow(), config=CONFIG)
    db.close()


def test_a_budget_below_what_is_spent_is_refused_and_campaigns_without_one_are_counted(tmp_path: Path) -> None:
    target = str(tmp_path / "c.db")
    codes = shop(target)
    db = Database(target)
    buy(db, 1, codes[0])
    buy(db, 1, codes[0])
    with db.session(write=True) as s, pytest.raises(Invalid, match="already used 2 coupons"):
        set_budget(s, "winback", budget_uses=1)
    with db.session() as s:
        campaign = s.get(Campaign, "winback")
        assert campaign is not None and (campaign.uses, campaign.spent_minor, campaign.budget_uses) == (2, 1000, None)
    db.close()


# --- races: real processes released together, on SQLite and PostgreSQL -------------------------


def _use_one(session: Any, n: int) -> None:
    """Process n uses customer n+1's own coupon: six coupons, one budget of three uses."""
    code = session.execute(select(Coupon.code).where(Coupon.customer_id == n + 1)).scalar_one()
    add_purchase(
        session=session,
        customer=find_customer(session, str(n + 1)),
        data=PurchaseInput(amount_minor=2000, coupon=code),
        config=CONFIG,
    )


def _spent(target: str) -> tuple[int, int, int]:
    db = Database(target)
    with db.session() as s:
        campaign = s.get(Campaign, "winback")
        assert campaign is not None
        carried = s.execute(select(func.count()).where(Purchase.coupon_id.is_not(None))).scalar_one()
        found = (campaign.uses, campaign.spent_minor, carried)
    db.close()
    return found


@pytest.mark.slow
def test_a_use_budget_is_never_passed_by_processes_racing_for_it(backend: Any, tmp_path: Path) -> None:
    for target in rounds(backend, tmp_path):
        shop(target, customers=6, budget_uses=3)
        outcomes = race(target, _use_one)
        assert not [o for o in outcomes if o.startswith("CRASH")], outcomes
        assert outcomes.count("ok") == 3, outcomes
        assert all(o == "ok" or o == "refused: campaign winback has used its budget of 3 coupon uses" for o in outcomes)
        assert _spent(target) == (3, 1500, 3)


@pytest.mark.slow
def test_an_amount_budget_is_never_passed_by_processes_racing_for_it(backend: Any, tmp_path: Path) -> None:
    for target in rounds(backend, tmp_path):
        shop(target, customers=6, budget_minor=1000)  # two 5.00 discounts
        outcomes = race(target, _use_one)
        assert not [o for o in outcomes if o.startswith("CRASH")], outcomes
        assert outcomes.count("ok") == 2, outcomes
        assert all(o == "ok" or "of its 10.00 budget left" in o for o in outcomes), outcomes
        assert _spent(target) == (2, 1000, 2)
