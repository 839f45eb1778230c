"""Property: after any sequence of ledger operations, the balance at every moment is the sum of the
entries dated no later, and never negative."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError
from crmcli.models import PointsEntry
from crmcli.services import points as ledger
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase, pay_purchase, refund_purchase

START = datetime(2025, 1, 1, 12, tzinfo=UTC)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.db = Database(str(Path(self.dir.name) / "p.db"))
        self.config = Config()
        self.clock = START
        self.purchases: list[int] = []
        self.unpaid: list[int] = []

    @initialize()
    def customer(self) -> None:
        with self.db.session(write=True) as s:
            add_customer(session=s, data=CustomerInput(name="Ann"), config=self.config, now=self.clock)

    def tick(self, days: int = 1) -> datetime:
        self.clock += timedelta(days=days)
        return self.clock

    def attempt(self, action) -> None:  # type: ignore[no-untyped-def]
        try:
            with self.db.session(write=True) as s:
                action(s, find_customer(s, "1"))
        except CrmError:
            pass  # refused operations must leave the ledger as it was; the invariant checks

    @rule(amount=st.integers(1, 500_000), points=st.one_of(st.none(), st.integers(1, 3000)), on_credit=st.booleans())
    def buy(self, amount: int, points: int | None, on_credit: bool) -> None:
        at = self.tick()

        def action(s, c):  # type: ignore[no-untyped-def]
            due = at + timedelta(days=10) if on_credit else None
            p, _ = add_purchase(
                session=s,
                customer=c,
                config=self.config,
                now=at,
                data=PurchaseInput(amount_minor=amount, at=at, points=points, due_at=due),
            )
            self.purchases.append(p.id)
            if on_credit:
                self.unpaid.append(p.id)

        self.attempt(action)

    @rule(points=st.integers(1, 5000))
    def redeem(self, points: int) -> None:
        at = self.tick()
        self.attempt(
            lambda s, c: ledger.redeem_points(
                session=s, customer=c, points=points, reason="r", config=self.config, now=at
            )
        )

    @rule(points=st.integers(1, 500))
    def gift(self, points: int) -> None:
        at = self.tick()
        self.attempt(
            lambda s, c: ledger.add_points(session=s, customer=c, points=points, reason="g", config=self.config, now=at)
        )

    @rule(days=st.integers(1, 120))
    def accrue(self, days: int) -> None:
        at = self.tick(days)
        self.attempt(lambda s, c: ledger.accrue_tenure(session=s, config=self.config, as_of=at))

    @precondition(lambda self: self.unpaid)
    @rule(late=st.booleans(), data=st.data())
    def pay(self, late: bool, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self.unpaid))
        self.unpaid.remove(pid)
        at = self.tick(30 if late else 0)
        self.attempt(lambda s, c: pay_purchase(session=s, purchase_id=pid, config=self.config, at=at, now=at))

    @precondition(lambda self: self.purchases)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self.purchases))
        at = self.tick()
        self.attempt(lambda s, c: refund_purchase(session=s, purchase_id=pid, config=self.config, at=at, now=at))

    @invariant()
    def balance_is_the_sum_and_never_negative(self) -> None:
        with self.db.session() as s:
            entries = s.execute(select(PointsEntry.at, PointsEntry.delta)).all()
            total = s.execute(select(func.coalesce(func.sum(PointsEntry.delta), 0))).scalar_one()
            assert ledger.balance(s, 1) == sum(d for _, d in entries) == total
            # The balance at every moment of the timeline (entries dated no later) is never negative.
            for moment in {at for at, _ in entries}:
                assert ledger.balance(s, 1, moment) == sum(d for at, d in entries if at <= moment) >= 0

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()


TestLedger = LedgerMachine.TestCase
TestLedger.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
