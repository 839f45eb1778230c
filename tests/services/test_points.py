"""The points rules without the CLI: the replayed timeline, FIFO, late-payment resets, tenure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.services import points as ledger
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.points import Fact, Removal, replay
from crmcli.services.profile import points_summary
from crmcli.services.purchases import PurchaseInput, add_purchase, pay_purchase

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


# --- the replay, as a pure function ---------------------------------------------------------


def test_a_reset_takes_what_was_earned_by_then_and_later_points_stay() -> None:
    facts = [Fact(day(0), 100, "earn", 1), Fact(day(5), 40, "earn", 2)]
    outcome = replay(facts, [Removal(day(3), "reset", None, "late")])
    assert [(r.at, amount) for r, amount in outcome.removals] == [(day(3), 100)]
    assert outcome.short is None


def test_spending_takes_the_oldest_points_first() -> None:
    # 100 earned on day 0, 50 on day 2; 120 spent on day 3 takes all of day 0's and 20 of day 2's.
    # A reversal of day 2's sale on day 4 can take back only the 30 left of it.
    facts = [Fact(day(0), 100, "earn", 1), Fact(day(2), 50, "earn", 2), Fact(day(3), -120, "redeem")]
    outcome = replay(facts, [Removal(day(4), "reversal", 50, "refund", 2)])
    assert [amount for _, amount in outcome.removals] == [30]


def test_a_sale_cannot_spend_the_points_it_earns_itself() -> None:
    """Regression: at one moment arrivals came before spends, so a file's sale could pay with
    its own points, which `purchase add` (the balance before the sale) refuses."""
    own = [Fact(day(0), 10, "earn", 1), Fact(day(5), 19, "earn", 2), Fact(day(5), -25, "redeem", 2)]
    outcome = replay(own, [])
    assert outcome.short is not None and outcome.short[1] == 10
    other = [Fact(day(0), 10, "earn", 1), Fact(day(5), 19, "earn", 3), Fact(day(5), -25, "redeem", 2)]
    assert replay(other, []).short is None  # another sale of that moment does pay


def test_a_spend_the_timeline_cannot_cover_is_reported() -> None:
    outcome = replay([Fact(day(0), 10, "earn"), Fact(day(1), -20, "redeem")], [])
    assert outcome.short is not None and outcome.short[1] == 10


facts_strategy = st.lists(
    st.tuples(st.integers(0, 60), st.integers(-300, 300).filter(bool), st.sampled_from(["earn", "redeem"])),
    max_size=25,
)
removals_strategy = st.lists(st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(1, 200))), max_size=6)


@given(raw=facts_strategy, raw_removals=removals_strategy, order=st.randoms(use_true_random=False))
def test_replay_never_goes_below_zero_and_ignores_recording_order(raw, raw_removals, order) -> None:  # type: ignore[no-untyped-def]
    facts = [Fact(day(d), delta, kind if delta < 0 else "earn") for d, delta, kind in raw]
    removals = [
        Removal(day(d) + timedelta(hours=1), "reset" if cap is None else "reversal", cap, "r")
        for d, cap in raw_removals
    ]
    outcome = replay(facts, removals)
    shuffled_facts, shuffled_removals = facts[:], removals[:]
    order.shuffle(shuffled_facts)
    order.shuffle(shuffled_removals)
    again = replay(shuffled_facts, shuffled_removals)
    assert again.removals == outcome.removals and again.short == outcome.short
    if outcome.short is None:
        # The balance at every moment: facts and removals dated no later; never negative.
        moments = sorted({f.at for f in facts} | {r.at for r in removals})
        for t in moments:
            held = sum(f.delta for f in facts if f.at <= t) - sum(a for r, a in outcome.removals if r.at <= t)
            assert held >= 0


# --- against a database ---------------------------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Database:
    db = Database(str(tmp_path / "p.db"))
    with db.session(write=True) as s:
        add_customer(session=s, data=CustomerInput(name="Ann"), config=Config(), now=T0)
    return db


def buy(db: Database, amount: int, at: datetime, now: datetime | None = None, **kw: object) -> int:
    with db.session(write=True) as s:
        from crmcli.services.identify import find_customer

        data = PurchaseInput(amount_minor=amount, at=at, **kw)  # type: ignore[arg-type]
        purchase, _ = add_purchase(session=s, customer=find_customer(s, "1"), data=data, config=Config(), now=now or at)
        assert purchase.id is not None
        return purchase.id


def balance(db: Database, at: datetime | None = None) -> int:
    with db.session() as s:
        return ledger.balance(s, 1, at)


def test_a_payment_in_a_later_file_gives_the_same_balance_as_one_file(shop: Database) -> None:
    """Regression: 5 points when imported in one file, 0 when the payment came later."""
    credit = buy(shop, 10_000, day(0), due_at=day(10), unpaid=True)  # earns 10
    buy(shop, 5_000, day(20))  # earns 5, after the due date: stays
    with shop.session(write=True) as s:
        ledger.settle_points(s, Config(), [1], now=day(30))
    assert balance(shop) == 5
    with shop.session(write=True) as s:
        pay_purchase(session=s, purchase_id=credit, config=Config(), at=day(25), now=day(30))
    assert balance(shop) == 5  # paying late does not reset again
    assert balance(shop, day(9)) == 10 and balance(shop, day(11)) == 0


def test_a_customer_who_never_pays_is_reset_when_points_are_read(shop: Database) -> None:
    buy(shop, 10_000, day(0), due_at=day(3), unpaid=True)
    with shop.session(write=True) as s:
        summary = points_summary(session=s, config=Config(), customer_id=1, now=day(40))
    assert summary["balance"] == 0 and summary["ledger"][0]["kind"] == "reset"


def test_a_backdated_sale_before_a_reset_is_reset_with_the_rest(shop: Database) -> None:
    buy(shop, 10_000, day(5), due_at=day(8), unpaid=True)  # earns 10, reset at day 8
    buy(shop, 20_000, day(1))  # recorded later, happened earlier: earned 20 before the reset
    with shop.session(write=True) as s:
        ledger.settle_points(s, Config(), [1], now=day(30))
    assert balance(shop, day(7)) == 30 and balance(shop) == 0


def test_a_backdated_sale_that_would_uncover_a_spend_is_refused(shop: Database) -> None:
    buy(shop, 50_000, day(0))  # 50 points
    with shop.session(write=True) as s:
        from crmcli.services.identify import find_customer

        ledger.redeem_points(
            session=s, customer=find_customer(s, "1"), points=50, reason="gift", config=Config(), now=day(20)
        )
    with pytest.raises(Invalid, match="fewer than the 50 redeemed by hand then"):
        buy(shop, 1_000, day(2), now=day(30), due_at=day(3), unpaid=True)  # its due date resets the 50 first
    assert balance(shop) == 0


def test_tenure_months_are_dated_when_they_complete_and_never_twice(shop: Database) -> None:
    config = Config()
    with shop.session(write=True) as s:
        first = ledger.accrue_tenure(session=s, config=config, as_of=day(45))  # Feb 1: one month
        monthly = ledger.accrue_tenure(session=s, config=config, as_of=day(45))
        later = ledger.accrue_tenure(session=s, config=config, as_of=day(95))  # Apr 6: three months
    assert (first["points"], monthly["points"], later["points"]) == (1, 0, 2)
    with shop.session() as s:
        months = [e["at"] for e in ledger.ledger(s, 1) if e["kind"] == "tenure"]
    assert sorted(months) == [datetime(2026, m, 1, tzinfo=UTC) for m in (2, 3, 4)]


def test_month_end_on_a_short_month() -> None:
    joined = datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert ledger.month_end(joined, 1, Config()) == datetime(2026, 2, 28, 10, tzinfo=UTC)
    assert ledger.full_months(joined, datetime(2026, 2, 28, 9, tzinfo=UTC), Config()) == 0
    assert ledger.full_months(joined, datetime(2026, 3, 31, 10, tzinfo=UTC), Config()) == 2


def test_a_ledger_an_older_version_wrote_never_stops_a_read_or_the_daily_job(shop: Database) -> None:
    """Older versions dated the late-payment reset at the payment, so a spend between the due
    date and the payment was allowed; replayed today it would be uncovered. Reads and the
    accrual leave such a customer's entries as they are instead of failing."""
    from sqlalchemy import insert

    from crmcli.models import PointsEntry, table_of

    buy(shop, 10_000, day(0), due_at=day(3), paid_at=day(20))  # 10 points, paid late
    with shop.session(write=True) as s:
        s.execute(
            insert(table_of(PointsEntry)),
            [
                {"customer_id": 1, "delta": -4, "kind": "redeem", "at": day(10), "reason": "old"},
                {"customer_id": 1, "delta": -6, "kind": "reset", "at": day(20), "reason": "old reset"},
            ],
        )
        s.execute(table_of(PointsEntry).delete().where(table_of(PointsEntry).c.at == day(3)))
    with shop.session(write=True) as s:
        summary = points_summary(session=s, config=Config(), customer_id=1, now=day(40))
        ledger.accrue_tenure(session=s, config=Config(), as_of=day(40))
    assert summary["balance"] == 0
    assert balance(shop, day(15)) == 6 and balance(shop, day(21)) == 0  # as the older version left it
    with pytest.raises(Invalid, match="fewer than the 4 redeemed by hand then"):
        with shop.session(write=True) as s:
            ledger.settle_points(s, Config(), [1], now=day(40))  # a write still refuses to build on it


def _ledger_after_settling(path: Path, together: bool) -> list[tuple[object, ...]]:
    """Five customers (the second never buys, the fourth has a refund, the others a sale left
    unpaid past its due date among sales paid on time), settled in one call or one by one."""
    from crmcli.models import PointsEntry, table_of
    from crmcli.services.identify import find_customer
    from crmcli.services.purchases import refund_purchase

    db, config = Database(str(path)), Config()
    with db.session(write=True) as s:
        for name in ("Ann", "Bo", "Cy", "Di", "Ed"):
            add_customer(session=s, data=CustomerInput(name=name), config=config, now=T0)
    with db.session(write=True) as s:
        for cid in (1, 3, 4, 5):
            customer = find_customer(s, f"id:{cid}")
            sales = []
            for n in range(cid + 2):  # a different number of entries each
                data = PurchaseInput(amount_minor=1_000 * (n + 1), at=day(n))
                sales.append(add_purchase(session=s, customer=customer, data=data, config=config, now=day(n))[0].id)
            if cid == 4:
                refund_purchase(session=s, purchase_id=sales[0], config=config, now=day(8))
            else:
                data = PurchaseInput(amount_minor=7_000, at=day(9), due_at=day(12), unpaid=True)
                add_purchase(session=s, customer=customer, data=data, config=config, now=day(9))
    with db.session(write=True) as s:
        for ids in [[1, 2, 3, 4, 5]] if together else [[1], [2], [3], [4], [5]]:
            ledger.settle_points(s, config, ids, now=day(30))
    e = table_of(PointsEntry)
    with db.session() as s:
        found = s.execute(select(e.c.customer_id, e.c.kind, e.c.delta, e.c.at, e.c.purchase_id))
        return sorted(tuple(row) for row in found)


def test_settling_customers_together_or_one_by_one_gives_the_same_ledger(tmp_path: Path) -> None:
    """The facts of many customers are read in one query and replayed one customer at a time
    (memory stays flat): each customer's removals must be the ones settled alone."""
    together = _ledger_after_settling(tmp_path / "together.db", together=True)
    alone = _ledger_after_settling(tmp_path / "alone.db", together=False)
    assert together == alone
    removed = {(cid, kind) for cid, kind, *_ in together if kind in ("reset", "reversal")}
    assert removed == {(1, "reset"), (3, "reset"), (4, "reversal"), (5, "reset")}
