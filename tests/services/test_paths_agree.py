"""Differential: the same shop history, typed in one command at a time or loaded from CSV files
(in one file, or split with payments and refunds arriving in a later file), leaves the same state.

Hypothesis generates the histories: customers with till refs (numbers, so a bare "1" would be
ambiguous), referrals, coupons, purchases paid at the till, on time, late or never, refunds,
tenure accrual and a merge. A failure shrinks to a short story: the customers, then the sales.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmcli.config import Config, Points, Referrals
from crmcli.db import Database
from crmcli.errors import CrmError
from crmcli.io.customers import import_customers
from crmcli.io.purchases import import_purchases
from crmcli.io.reader import CsvOptions
from crmcli.models import Coupon, Customer, PointsEntry, Purchase, Referral, StageChange
from crmcli.services import points as ledger
from crmcli.services.coupons import CouponTerms, issue_coupons
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.daily import run_daily
from crmcli.services.identify import find_customer
from crmcli.services.merge import merge_customers
from crmcli.services.purchases import PurchaseInput, add_purchase, pay_purchase, refund_purchase

START = datetime(2026, 1, 1, 9, tzinfo=UTC)  # every customer joins then
END = START + timedelta(days=200)  # after every event: everything is loaded and accrued as of then
EXAMPLES = int(os.environ.get("CRMCLI_DIFFERENTIAL_EXAMPLES", "200"))


@dataclass(frozen=True)
class Sale:
    ref: str
    customer: int  # index into the customers
    day: int
    amount: int  # minor units
    coupon: bool
    due_days: int | None  # None: paid at the till
    paid_after: int | None  # days after the sale, for a sale on credit; None: never
    refund_after: int | None

    @property
    def at(self) -> datetime:
        return START + timedelta(days=self.day, hours=1)

    @property
    def due(self) -> datetime | None:
        if self.due_days is None:
            return None
        local = (self.at + timedelta(days=self.due_days)).date()
        return datetime(local.year, local.month, local.day, 23, 59, 59, 999999, tzinfo=UTC)

    @property
    def paid(self) -> datetime | None:
        if self.due_days is None:
            return self.at
        return None if self.paid_after is None else self.at + timedelta(days=self.paid_after, hours=2)

    @property
    def refunded(self) -> datetime | None:
        return None if self.refund_after is None else self.at + timedelta(days=self.refund_after, hours=3)


@dataclass(frozen=True)
class Shop:
    refs: list[str]
    referrers: list[int | None]  # index of an earlier customer, or None
    sales: list[Sale]
    merge: tuple[int, int] | None


@st.composite
def shops(draw: st.DrawFn) -> Shop:
    n = draw(st.integers(2, 5))
    # Numeric refs that are also other customers' ids: only the explicit forms name them.
    refs = [str(n - i) for i in range(n)]
    referrers = [None] + [draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, n)]
    sales = []
    for k in range(draw(st.integers(0, 10))):
        credit = draw(st.booleans())
        sales.append(
            Sale(
                ref=f"S{k}",
                customer=draw(st.integers(0, n - 1)),
                day=draw(st.integers(0, 120)),
                amount=draw(st.integers(0, 60_000)),  # 0: a free order
                coupon=draw(st.booleans()),
                due_days=draw(st.integers(0, 20)) if credit else None,
                paid_after=draw(st.one_of(st.none(), st.integers(0, 40))) if credit else None,
                refund_after=draw(st.one_of(st.none(), st.integers(0, 25))),
            )
        )
    # A coupon is used once: later sales of the same customer go without.
    seen: set[int] = set()
    fixed = []
    for sale in sorted(sales, key=lambda s: (s.day, s.ref)):
        use = sale.coupon and sale.customer not in seen
        if use:
            seen.add(sale.customer)
        fields = {**sale.__dict__, "coupon": use}
        if sale.paid_after is not None and sale.refund_after is not None and sale.refund_after <= sale.paid_after:
            fields["paid_after"] = None  # a refunded sale is not paid afterwards
        fixed.append(Sale(**fields))
    merge = draw(st.one_of(st.none(), st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))))
    if merge is not None and merge[0] == merge[1]:
        merge = None
    return Shop(refs, referrers, fixed, merge)


# --- the two ways in ----------------------------------------------------------------------


def coupon_code(i: int) -> str:
    return f"WELCOME-{i}"


def give_coupons(db: Database, config: Config, shop: Shop) -> None:
    with db.session(write=True) as s:
        for i, ref in enumerate(shop.refs):
            customer = find_customer(s, f"ref:{ref}")
            assert customer.id is not None
            terms = CouponTerms(percent_bp=1000, campaign="welcome")
            issue_coupons(session=s, customer_ids=[customer.id], terms=terms, code=coupon_code(i), now=START)


def by_commands(db: Database, config: Config, shop: Shop) -> None:
    """One service call per command, each at the moment it happened."""
    with db.session(write=True) as s:
        for i, ref in enumerate(shop.refs):
            referrer = shop.referrers[i]
            code = None
            if referrer is not None:
                code = find_customer(s, f"ref:{shop.refs[referrer]}").referral_code
            add_customer(
                session=s, data=CustomerInput(name=f"C{i}", ref=ref), config=config, referred_by=code, now=START
            )
    give_coupons(db, config, shop)
    events: list[tuple[datetime, int, Sale]] = []
    for sale in shop.sales:
        events.append((sale.at, 0, sale))
        if sale.due_days is not None and sale.paid is not None:
            events.append((sale.paid, 1, sale))
        if sale.refunded is not None:
            events.append((sale.refunded, 2, sale))
    for when, kind, sale in sorted(events, key=lambda e: (e[0], e[1], e[2].ref)):
        with db.session(write=True) as s:
            if kind == 0:
                customer = find_customer(s, f"ref:{shop.refs[sale.customer]}")
                data = PurchaseInput(
                    amount_minor=sale.amount,
                    at=sale.at,
                    coupon=coupon_code(sale.customer) if sale.coupon else None,
                    due_at=sale.due,
                    paid_at=sale.paid if sale.due_days is None else None,
                    unpaid=sale.due_days is not None,
                    ref=sale.ref,
                )
                add_purchase(session=s, customer=customer, data=data, config=config, now=when)
            else:
                pid = s.execute(select(Purchase.id).where(Purchase.ref == sale.ref)).scalar_one()
                if kind == 1:
                    pay_purchase(session=s, purchase_id=pid, config=config, at=when, now=when)
                else:
                    refund_purchase(session=s, purchase_id=pid, config=config, at=when, now=when)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def by_files(db: Database, config: Config, shop: Shop, folder: Path, *, split: bool) -> None:
    """A customer file, then the sales in one file, or in two: the first as the till wrote them
    (credit sales unpaid, nothing refunded yet), the second re-listing the sales with their
    payments and refunds (``--on-duplicate update``)."""
    people = write_csv(
        folder / "customers.csv",
        ["name", "ref", "referred_by"],
        [
            [f"C{i}", ref, None if r is None else f"ref:{shop.refs[r]}"]
            for i, (ref, r) in enumerate(zip(shop.refs, shop.referrers, strict=True))
        ],
    )
    import_customers(db=db, config=config, path=people, options=CsvOptions(), now=START)
    give_coupons(db, config, shop)
    header = ["customer_ref", "amount", "at", "due", "paid_at", "refunded_at", "coupon", "ref"]

    def row(sale: Sale, *, whole: bool) -> list[Any]:
        paid = sale.paid if whole or sale.due_days is None else None
        return [
            shop.refs[sale.customer],
            f"{sale.amount // 100}.{sale.amount % 100:02d}",
            iso(sale.at),
            iso(sale.due),
            iso(paid),
            iso(sale.refunded) if whole else None,
            coupon_code(sale.customer) if sale.coupon else None,
            sale.ref,
        ]

    if not shop.sales:
        return
    first = write_csv(folder / "sales-1.csv", header, [row(s, whole=not split) for s in shop.sales])
    import_purchases(db=db, config=config, path=first, options=CsvOptions(), now=END)
    if split:
        later = [s for s in shop.sales if s.refunded is not None or (s.due_days is not None and s.paid is not None)]
        if not later:
            return
        second = write_csv(folder / "sales-2.csv", header, [row(s, whole=True) for s in later])
        import_purchases(db=db, config=config, path=second, options=CsvOptions(), on_duplicate="update", now=END)


def finish(db: Database, config: Config, shop: Shop) -> str | None:
    """The daily job at the end, then the merge, the same way on every database; the merge's
    refusal, if any (the same refusal on every path is part of the state)."""
    with db.session(write=True) as s:
        run_daily(session=s, config=config, as_of=END)
    if shop.merge is not None:
        keep, drop = (f"ref:{shop.refs[i]}" for i in shop.merge)
        try:
            with db.session(write=True) as s:
                merge_customers(
                    session=s, keep=find_customer(s, keep), drop=find_customer(s, drop), config=config, now=END
                )
        except CrmError as exc:
            return str(exc)
    return None


# --- the state compared -----------------------------------------------------------------------


def state(db: Database, shop: Shop) -> dict[str, Any]:
    moments = sorted({START, END, *(s.at for s in shop.sales), *(s.due for s in shop.sales if s.due)})
    with db.session() as s:
        refs = dict(s.execute(select(Customer.id, Customer.ref)).all())
        people: dict[str, Any] = {}
        for customer in s.execute(select(Customer).order_by(Customer.id)).scalars():
            cid = customer.id
            assert cid is not None
            history = [
                (c.from_stage, c.to_stage, c.at, c.cause)
                for c in s.execute(
                    select(StageChange).where(StageChange.customer_id == cid).order_by(StageChange.at, StageChange.id)
                ).scalars()
            ]
            entries = s.execute(select(PointsEntry.kind, PointsEntry.delta).where(PointsEntry.customer_id == cid))
            by_kind: dict[str, int] = {}
            for kind, delta in entries:
                by_kind[kind] = by_kind.get(kind, 0) + delta
            people[customer.ref or f"#{customer.name}"] = {
                "stage": customer.stage,
                "history": history,
                "balances": [ledger.balance(s, cid, t) for t in moments],
                "by_kind": by_kind,
                "rewards": sorted(
                    (c.campaign, c.percent_bp, c.uses)
                    for c in s.execute(
                        select(Coupon).where(Coupon.customer_id == cid, Coupon.voided_at.is_(None))
                    ).scalars()
                ),
            }
        referrals = sorted(
            (refs[r.referrer_id], refs[r.referred_id], r.status, r.decided_at)
            for r in s.execute(select(Referral)).scalars()
        )
        sales = sorted(
            (p.ref, refs[p.customer_id], p.gross_minor, p.net_minor, p.coupon_discount_minor, p.paid_at, p.refunded_at)
            for p in s.execute(select(Purchase)).scalars()
        )
    return {"customers": people, "referrals": referrals, "sales": sales}


# --- the test ---------------------------------------------------------------------------------


def run_paths(shop: Shop, make: Any, folder: Path) -> list[dict[str, Any]]:
    # Points expire after 60 days, so expiry (a removal the replay derives) is part of every history;
    # in half the shops referral rewards are held 7 days (released by the daily job in finish).
    config = Config(
        points=Points(expire_after_days=60), referrals=Referrals(hold_days=7 if len(shop.refs) % 2 else 0)
    )
    states = []
    for name, load in (
        ("commands", lambda db: by_commands(db, config, shop)),
        ("one-file", lambda db: by_files(db, config, shop, folder, split=False)),
        ("split-files", lambda db: by_files(db, config, shop, folder, split=True)),
    ):
        target, drop = make(folder, name)
        db = Database(target)
        try:
            load(db)
            refused = finish(db, config, shop)
            states.append({**state(db, shop), "merge_refused": refused})
        finally:
            db.close()
            drop()
    return states


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(shop=shops())
# A sale with a coupon and a refunded one at the same moment: an import writes coupon sales after
# the others, so the ids come in another order than the commands'; the refunded-purchase signal
# once broke the tie by id and held the referral for review on one path only.
@example(
    shop=Shop(
        refs=["3", "2", "1"],
        referrers=[None, None, 0],
        sales=[
            Sale("S0", customer=2, day=0, amount=0, coupon=True, due_days=None, paid_after=None, refund_after=None),
            Sale("S1", customer=2, day=0, amount=0, coupon=False, due_days=None, paid_after=None, refund_after=0),
        ],
        merge=None,
    )
)
def test_commands_and_imports_leave_the_same_state(shop: Shop, backend: Any, tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    commands, one_file, split_files = run_paths(shop, backend, folder)
    assert one_file == commands
    assert split_files == commands
