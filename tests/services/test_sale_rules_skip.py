"""A sale at the till lets the rules skip what provably has nothing to do (a customer already at
the top stage whose sale is their latest event; a ledger with nothing to derive). These tests
show each rule still fires when it should, and that what a sale leaves is what the full
replay of every rule gives, on every backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmcli.config import Config, Points
from crmcli.db import Database
from crmcli.errors import Conflict, Invalid
from crmcli.models import Customer, PointsEntry, StageChange, table_of
from crmcli.services import points as ledger
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase, refund_purchase
from crmcli.services.stages import STAGE_RANK, change_stage, settle_stages

T0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
EXAMPLES = int(os.environ.get("CRMCLI_DIFFERENTIAL_EXAMPLES", "200"))


# the differential story tests: each example is a few transactions on a fresh customer
stories = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def shop(backend: Any, tmp_path: Path) -> Iterator[Database]:
    target, drop = backend(tmp_path, "skip")
    db = Database(target)
    with db.session(write=True) as s:
        add_customer(session=s, data=CustomerInput(name="Ann"), config=Config(), now=T0)
    yield db
    db.close()
    drop()


def buy(
    db: Database, amount: int, at: datetime, *, now: datetime | None = None, config: Config | None = None, **kw: Any
) -> tuple[str, dict[str, Any]]:
    with db.session(write=True) as s:
        customer = find_customer(s, "id:1")
        data = PurchaseInput(amount_minor=amount, at=at, **kw)
        _, effects = add_purchase(session=s, customer=customer, data=data, config=config or Config(), now=now or at)
        return customer.stage, effects


def steps(db: Database) -> list[tuple[datetime, str | None, str]]:
    sc = table_of(StageChange)
    with db.session() as s:
        rows = s.execute(
            select(sc.c.at, sc.c.from_stage, sc.c.to_stage).where(sc.c.cause == "purchase").order_by(sc.c.at, sc.c.id)
        ).all()
    return [(at.astimezone(UTC), frm, to) for at, frm, to in rows]


def entries(db: Database, kind: str) -> list[tuple[datetime, int]]:
    e = table_of(PointsEntry)
    with db.session() as s:
        rows = s.execute(select(e.c.at, e.c.delta).where(e.c.kind == kind).order_by(e.c.at)).all()
    return [(at.astimezone(UTC), delta) for at, delta in rows]


def assert_fully_settled(db: Database, config: Config | None = None, now: datetime | None = None) -> None:
    """Replaying every rule in full for the customer changes nothing the sales left."""
    e = table_of(PointsEntry)
    before = (steps(db), sorted(entries(db, "reset") + entries(db, "expire") + entries(db, "reversal")))
    with db.session(write=True) as s:
        stage = find_customer(s, "id:1").stage
        settle_stages(s, [1], replay_all=True)
        ledger.settle_points(s, config or Config(), [1], now=now)
        again = s.execute(select(e.c.id).where(e.c.kind.in_(ledger.REMOVALS))).all()
        assert find_customer(s, "id:1").stage == stage
    after = (steps(db), sorted(entries(db, "reset") + entries(db, "expire") + entries(db, "reversal")))
    assert after == before
    assert len(again) == len(before[1])


def test_a_sale_after_everything_leaves_a_repeat_customer_as_the_full_replay_would(shop: Database) -> None:
    buy(shop, 1000, day(1))
    assert buy(shop, 1000, day(2))[0] == "repeat"
    assert buy(shop, 1000, day(3))[0] == "repeat"  # nothing to move: the skipped case
    assert steps(shop) == [(day(1), "lead", "customer"), (day(2), "customer", "repeat")]
    assert_fully_settled(shop, now=day(3))


def test_a_backdated_sale_still_moves_a_repeat_customer_earlier(shop: Database) -> None:
    buy(shop, 1000, day(5))
    buy(shop, 1000, day(6))
    stage, _ = buy(shop, 1000, day(1), now=day(7))  # a later sale exists: the stages are replayed
    assert stage == "repeat"
    assert steps(shop) == [(day(1), "lead", "customer"), (day(5), "customer", "repeat")]
    assert_fully_settled(shop, now=day(7))


def test_a_sale_still_moves_up_a_customer_moved_down_by_hand(shop: Database) -> None:
    buy(shop, 1000, day(1))
    buy(shop, 1000, day(2))
    with shop.session(write=True) as s:
        change_stage(session=s, customer=find_customer(s, "id:1"), stage="lost", now=day(3))
    stage, _ = buy(shop, 1000, day(4))
    assert stage == "repeat"
    assert steps(shop)[-1] == (day(4), "lost", "repeat")
    assert_fully_settled(shop, now=day(4))


def test_a_stage_change_dated_after_the_sale_still_gets_the_sale_replayed(shop: Database) -> None:
    with shop.session(write=True) as s:
        change_stage(session=s, customer=find_customer(s, "id:1"), stage="repeat", now=day(10))  # by hand
    stage, _ = buy(shop, 1000, day(5), now=day(12))  # dated before the change by hand
    assert stage == "repeat"
    assert steps(shop) == [(day(5), "lead", "customer")]
    assert_fully_settled(shop, now=day(12))


def test_a_till_sale_still_writes_the_reset_an_earlier_unpaid_sale_fell_due_for(shop: Database) -> None:
    buy(shop, 10000, day(0), due_at=day(3))  # on credit, never paid
    assert entries(shop, "reset") == []  # not due yet when it was recorded
    _, effects = buy(shop, 5000, day(10))  # paid at the till: no due date of its own
    assert [delta for _, delta in entries(shop, "reset")] == [-10]
    assert effects["points_earned"] == 5 and effects["points_reset"] == 0
    assert_fully_settled(shop, now=day(10))


def test_a_backdated_sale_on_credit_reports_the_reset_it_causes(shop: Database) -> None:
    buy(shop, 5000, day(0))
    _, effects = buy(shop, 3000, day(1), now=day(20), due_at=day(2))  # due long ago, unpaid
    assert effects["points_reset"] == 8  # everything held at the end of the due date
    assert effects["points_earned"] == 3


def test_a_till_sale_still_expires_points_that_grew_old(shop: Database) -> None:
    config = Config(points=Points(expire_after_days=30))
    buy(shop, 4000, day(0), config=config)
    assert entries(shop, "expire") == []
    buy(shop, 1000, day(45), config=config)
    assert [delta for _, delta in entries(shop, "expire")] == [-4]
    assert_fully_settled(shop, config, now=day(45))


def test_points_earned_reported_without_a_read_match_the_entry_written(shop: Database) -> None:
    _, effects = buy(shop, 19990, day(1))
    assert effects["points_earned"] == ledger.points_for_spend(19990, Config()) == 19
    assert entries(shop, "earn") == [(day(1), 19)]
    _, free = buy(shop, 0, day(2))
    assert free["points_earned"] == 0


till_days = st.integers(0, 3)  # a few days: sales, refunds and changes by hand often share a moment
till_stories = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), till_days, st.sampled_from([0, 1000])),  # 0: a free order is a purchase too
        st.tuples(st.just("refund"), st.integers(0, 6).map(lambda half: half / 2), st.integers(0, 7)),  # n-th sale
        st.tuples(st.just("stage"), till_days, st.sampled_from(sorted(STAGE_RANK))),
    ),
    min_size=1,
    max_size=10,
)


@stories
@given(story=till_stories)
# a refund at the very moment of the next sale comes after it: the refunded sale still counts
@example(story=[("sale", 0, 1000), ("refund", 1.0, 0), ("sale", 1, 1000)])
# changed by hand, backdated, before ever buying: the first sale replays the history
@example(story=[("stage", 1, "customer"), ("stage", 0, "lead"), ("sale", 1, 0)])
def test_each_till_sale_leaves_the_stages_the_full_replay_gives(shop: Database, story: list[Any]) -> None:
    """Differential: a sale at the till settles the stage from the sale alone when it is the
    customer's last event, else replays; after every step of any story (backdated sales,
    ties, refunds, changes by hand), replaying the whole history must change nothing."""
    sc, c = table_of(StageChange), table_of(Customer)
    with shop.session(write=True) as s:
        cid = add_customer(session=s, data=CustomerInput(name="Story"), config=Config(), now=T0).id
    assert cid is not None
    sales: list[int] = []

    def state() -> tuple[list[Any], str]:
        with shop.session() as s:
            rows = s.execute(
                select(sc.c.at, sc.c.from_stage, sc.c.to_stage, sc.c.cause)
                .where(sc.c.customer_id == cid)
                .order_by(sc.c.at, sc.c.id)
            ).all()
            return [tuple(r) for r in rows], s.execute(select(c.c.stage).where(c.c.id == cid)).scalar_one()

    for kind, when, what in story:
        with shop.session(write=True) as s:
            customer = find_customer(s, f"id:{cid}")
            if kind == "sale":
                sale, _ = add_purchase(
                    session=s, customer=customer, data=PurchaseInput(amount_minor=what, at=day(when)), config=Config()
                )
                assert sale.id is not None
                sales.append(sale.id)
                shown = customer.stage  # what the command shows
            elif kind == "refund" and what < len(sales):
                try:
                    refund_purchase(session=s, purchase_id=sales[what], config=Config(), at=day(when))
                except (Conflict, Invalid):  # refunded already, or before the sale: refused, nothing written
                    continue
            elif kind == "stage":
                change_stage(session=s, customer=customer, stage=what, now=day(when))
        left = state()
        if kind == "sale":
            assert shown == left[1]
        with shop.session(write=True) as s:
            settle_stages(s, [cid], replay_all=True)
        assert state() == left


# --- the points ledger: a till's sale skips the replay its customer's last one still vouches for ---


def removals(db: Database, cid: int) -> list[tuple[Any, ...]]:
    e = table_of(PointsEntry)
    with db.session() as s:
        rows = s.execute(
            select(e.c.at, e.c.kind, e.c.delta, e.c.purchase_id)
            .where(e.c.customer_id == cid, e.c.kind.in_(ledger.REMOVALS))
            .order_by(e.c.at, e.c.kind, e.c.purchase_id, e.c.delta)
        ).all()
    return [tuple(r) for r in rows]


def test_a_till_sale_after_a_replay_still_writes_a_reset_that_fell_due_since(shop: Database) -> None:
    buy(shop, 4000, day(0))
    buy(shop, 10000, day(1), due_at=day(3))  # on credit, never paid
    with shop.session(write=True) as s:
        refund_purchase(session=s, purchase_id=1, config=Config(), at=day(2), now=day(2))  # replayed, recorded
    assert [kind for _, kind, _, _ in removals(shop, 1)] == ["reversal"]
    _, effects = buy(shop, 5000, day(10))  # the due date passed in between, unseen by anyone
    assert [(kind, delta) for _, kind, delta, _ in removals(shop, 1)] == [("reversal", -4), ("reset", -10)]
    assert effects["points_earned"] == 5
    assert_fully_settled(shop, now=day(10))


def test_a_till_sale_after_a_backdated_reward_replays_the_ledger(shop: Database) -> None:
    buy(shop, 10000, day(0), due_at=day(1))
    buy(shop, 2000, day(5))  # the reset at day 1 is written, and the replay recorded
    e = table_of(PointsEntry)
    with shop.session(write=True) as s:  # a fact dated before the reset, written without a replay
        s.execute(e.insert().values(customer_id=1, delta=7, kind="adjust", reason="by a script", at=day(0.5)))
    buy(shop, 3000, day(6))
    assert_fully_settled(shop, now=day(6))
    assert [delta for _, kind, delta, _ in removals(shop, 1) if kind == "reset"] == [-17]


def test_a_replay_recorded_under_other_settings_vouches_for_nothing(shop: Database) -> None:
    lenient = Config(points=Points(reset_on_late_payment=False))
    buy(shop, 4000, day(0), config=lenient)
    buy(shop, 10000, day(0), due_at=day(1), config=lenient)  # on credit, never paid: no reset under these
    with shop.session(write=True) as s:  # replayed and recorded under the lenient settings
        refund_purchase(session=s, purchase_id=1, config=lenient, at=day(2), now=day(2))
    assert [kind for _, kind, _, _ in removals(shop, 1)] == ["reversal"]
    buy(shop, 2000, day(5))  # a till sale under the default settings: resets are on
    assert [kind for _, kind, _, _ in removals(shop, 1)] == ["reset"]  # everything was reset on day 1
    assert_fully_settled(shop, now=day(5))


point_days = st.integers(0, 8).map(lambda half: half / 2)
point_stories = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), point_days, st.sampled_from([0, 1500, 4000])),
        # 5.00 earns no points: a sale that writes no fact
        st.tuples(st.just("credit"), point_days, st.sampled_from([500, 1500, 4000]), st.integers(0, 2)),  # days to pay
        st.tuples(st.just("pay"), point_days, st.integers(0, 7)),  # n-th sale
        st.tuples(st.just("refund"), point_days, st.integers(0, 7)),
        st.tuples(st.just("adjust"), point_days, st.integers(1, 9)),
        st.tuples(st.just("daily"), point_days, st.just(0)),  # the cron job, maybe run for a past day
    ),
    min_size=1,
    max_size=12,
)


@stories
@given(story=point_stories)
# a replay at day 1, then a due date passes unseen before the next sale
@example(story=[("credit", 0, 4000, 1), ("refund", 1, 0), ("sale", 3, 1500)])
# the cron job run for a past day rewrites the removals as of then
@example(story=[("credit", 0, 4000, 1), ("sale", 3, 1500), ("daily", 0.5, 0), ("sale", 4, 1500)])
# a sale dated before the last replay, due before it too, that earns nothing: it leaves no fact
@example(story=[("sale", 0, 4000), ("refund", 2, 0), ("credit", 0.5, 500, 1)])
def test_each_till_sale_leaves_the_ledger_the_full_replay_gives(shop: Database, story: list[Any]) -> None:
    """Differential: a sale at the till skips the points replay when its customer's last replay
    still vouches for the removals (nothing fell due and no fact came before it since). In any
    story (sales on credit, late and backdated payments, refunds, points by hand, the cron job
    run for any day), after every sale a full replay as of the sale must change nothing."""
    from crmcli.services.daily import run_daily
    from crmcli.services.purchases import pay_purchase

    config = Config()
    with shop.session(write=True) as s:
        cid = add_customer(session=s, data=CustomerInput(name="Story"), config=config, now=T0).id
    assert cid is not None
    sales: list[int] = []
    clock = T0
    for kind, when, *what in story:
        clock = max(clock, day(when))  # time goes forward; what happened may be dated earlier
        now = day(when) if kind == "daily" else clock
        with shop.session(write=True) as s:
            customer = find_customer(s, f"id:{cid}")
            try:
                if kind in ("sale", "credit"):
                    due = day(when + what[1]) if kind == "credit" else None
                    data = PurchaseInput(amount_minor=what[0], at=day(when), due_at=due)
                    sale, _ = add_purchase(session=s, customer=customer, data=data, config=config, now=now)
                    assert sale.id is not None
                    sales.append(sale.id)
                elif kind == "pay" and what[0] < len(sales):
                    pay_purchase(session=s, purchase_id=sales[what[0]], config=config, at=day(when), now=now)
                elif kind == "refund" and what[0] < len(sales):
                    refund_purchase(session=s, purchase_id=sales[what[0]], config=config, at=day(when), now=now)
                elif kind == "adjust":
                    ledger.add_points(
                        session=s, customer=customer, points=what[0], reason="story", config=config, now=now
                    )
                elif kind == "daily":
                    run_daily(session=s, config=config, as_of=now)
            except (Conflict, Invalid):  # paid or refunded already, or before the sale: refused, nothing written
                continue
        if kind not in ("sale", "credit"):
            continue  # the other steps replay in full (the cron job as of its own day, maybe a past one)
        left = removals(shop, cid)
        with shop.session(write=True) as s:
            ledger.settle_points(s, config, [cid], now=now)
        assert removals(shop, cid) == left, f"after the {kind} at day {when}"
