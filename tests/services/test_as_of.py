"""Differential: a report of the past equals the report of a database that holds only the past.

Hypothesis builds a shop history over 120 days (the sales of test_paths_agree, plus customers
joining on different days, contacts, complaints with their response and resolution, follow-ups,
stage changes by hand, points redeemed, coupons voided and referrals decided by hand). One
database gets all of it, another only what had happened by a random moment T; every report,
``followup due``, ``points show`` and ``customer show`` as of T must agree field for field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import Session

from crmcli.config import Config, Referrals, Reward
from crmcli.db import Database
from crmcli.errors import CrmError, NotFound
from crmcli.models import Customer, Purchase
from crmcli.services import points as ledger
from crmcli.services.coupons import CouponTerms, issue_coupons, void_coupon
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.interactions import log_interaction, respond
from crmcli.services.interactions import resolve as resolve_complaint
from crmcli.services.purchases import PurchaseInput, add_purchase, pay_purchase, refund_purchase
from crmcli.services.referrals import reject_referral, verify_referral
from crmcli.services.stages import change_stage
from tests.services.test_paths_agree import START, Sale, Shop, coupon_code, shops

EXAMPLES = int(os.environ.get("CRMCLI_ASOF_EXAMPLES", "50"))
STAGE_CHOICES = ("lead", "verified", "prospect", "customer", "lost")


@dataclass(frozen=True)
class Contact:
    customer: int
    day: int
    kind: str  # note, call, email, complaint
    rating: int | None
    follow_up_days: int | None
    respond_minutes: int | None  # complaints only
    resolve_hours: int | None


@dataclass(frozen=True)
class Step:
    """Something done by hand on a day: a stage change, points redeemed, a coupon voided, a
    referral verified or rejected."""

    what: str
    customer: int
    day: int
    value: str | int | None = None


@dataclass(frozen=True)
class History:
    shop: Shop
    joined: list[int]  # the day each customer joined (in order: a referrer joins first)
    contacts: list[Contact]
    steps: list[Step]
    points_rewards: bool
    cut: timedelta  # T = START + cut


@st.composite
def histories(draw: st.DrawFn) -> History:
    shop = draw(shops())
    shop = Shop(shop.refs, shop.referrers, shop.sales, None)  # a merge rewrites the past: not here
    n = len(shop.refs)
    joined = sorted(draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))
    # A sale comes after its customer joined.
    sales = [Sale(**{**s.__dict__, "day": max(s.day, joined[s.customer])}) for s in shop.sales]
    shop = Shop(shop.refs, shop.referrers, sales, None)
    contacts = []
    for _ in range(draw(st.integers(0, 8))):
        who = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(("note", "call", "email", "complaint")))
        complaint = kind == "complaint"
        contacts.append(
            Contact(
                customer=who,
                day=max(draw(st.integers(0, 120)), joined[who]),
                kind=kind,
                rating=draw(st.one_of(st.none(), st.integers(1, 5))),
                follow_up_days=draw(st.one_of(st.none(), st.integers(0, 30))),
                respond_minutes=draw(st.one_of(st.none(), st.integers(1, 60 * 30))) if complaint else None,
                resolve_hours=draw(st.one_of(st.none(), st.integers(1, 200))) if complaint else None,
            )
        )
    steps = []
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(("stage", "redeem", "void", "verify", "reject")))
        who = draw(st.integers(0, n - 1))
        value: str | int | None = None
        if what == "stage":
            value = draw(st.sampled_from(STAGE_CHOICES))
        elif what == "redeem":
            value = draw(st.integers(1, 40))
        steps.append(Step(what, who, max(draw(st.integers(0, 125)), joined[who]), value))
    cut = timedelta(days=draw(st.integers(0, 170)), hours=draw(st.sampled_from((0, 1, 2, 3, 4, 5, 6, 12, 23))))
    return History(shop, joined, contacts, steps, draw(st.booleans()), cut)


def config_for(history: History) -> Config:
    if not history.points_rewards:
        return Config()
    return Config(referrals=Referrals(reward_referrer=Reward(points=30), reward_referred=Reward(points=20)))


# --- loading, one command at a time, up to a moment ----------------------------------------------


def events(history: History) -> list[tuple[datetime, int, str, Callable[[Session, Config, datetime], None]]]:
    """Every event of the history with its moment, in the order the shop typed them."""
    shop = history.shop
    found: list[tuple[datetime, int, str, Callable[[Session, Config, datetime], None]]] = []

    def customer(s: Session, i: int) -> Customer:
        return find_customer(s, f"ref:{shop.refs[i]}")

    for i, ref in enumerate(shop.refs):
        joined = START + timedelta(days=history.joined[i])

        def join(s: Session, config: Config, when: datetime, i: int = i, ref: str = ref) -> None:
            referrer = shop.referrers[i]
            code = customer(s, referrer).referral_code if referrer is not None else None
            added = add_customer(
                session=s, data=CustomerInput(name=f"C{i}", ref=ref), config=config, referred_by=code, now=when
            )
            assert added.id is not None
            terms = CouponTerms(percent_bp=1000, campaign="welcome")
            issue_coupons(session=s, customer_ids=[added.id], terms=terms, code=coupon_code(i), now=when)

        found.append((joined, 0, f"join {i}", join))
    for sale in shop.sales:

        def buy(s: Session, config: Config, when: datetime, sale: Sale = sale) -> None:
            data = PurchaseInput(
                amount_minor=sale.amount,
                at=sale.at,
                coupon=coupon_code(sale.customer) if sale.coupon else None,
                due_at=sale.due,
                paid_at=sale.paid if sale.due_days is None else None,
                unpaid=sale.due_days is not None,
                ref=sale.ref,
            )
            add_purchase(session=s, customer=customer(s, sale.customer), data=data, config=config, now=when)

        def pay(s: Session, config: Config, when: datetime, sale: Sale = sale) -> None:
            pid = sale_id(s, sale.ref)
            pay_purchase(session=s, purchase_id=pid, config=config, at=when, now=when)

        def refund(s: Session, config: Config, when: datetime, sale: Sale = sale) -> None:
            pid = sale_id(s, sale.ref)
            refund_purchase(session=s, purchase_id=pid, config=config, at=when, now=when)

        found.append((sale.at, 1, f"sale {sale.ref}", buy))
        if sale.due_days is not None and sale.paid is not None:
            found.append((sale.paid, 2, f"pay {sale.ref}", pay))
        if sale.refunded is not None:
            found.append((sale.refunded, 3, f"refund {sale.ref}", refund))
    for n, contact in enumerate(history.contacts):
        at = START + timedelta(days=contact.day, hours=5, minutes=n)
        follow_up = None if contact.follow_up_days is None else at + timedelta(days=contact.follow_up_days)

        def log(
            s: Session, config: Config, when: datetime, c: Contact = contact, f: datetime | None = follow_up, n: int = n
        ) -> None:
            log_interaction(
                session=s,
                customer=customer(s, c.customer),
                kind=c.kind,
                summary=f"contact {n}",
                rating=c.rating,
                at=when,
                follow_up=f,
                now=when,
            )

        found.append((at, 4, f"contact {n}", log))
        if contact.respond_minutes is not None:
            found.append((at + timedelta(minutes=contact.respond_minutes), 5, f"respond {n}", _complaint_step(n, "r")))
        if contact.resolve_hours is not None:
            found.append((at + timedelta(hours=contact.resolve_hours), 6, f"resolve {n}", _complaint_step(n, "s")))
    for n, step in enumerate(history.steps):
        at = START + timedelta(days=step.day, hours=7, minutes=n)

        def act(s: Session, config: Config, when: datetime, step: Step = step) -> None:
            who = customer(s, step.customer)
            assert who.id is not None
            if step.what == "stage":
                change_stage(session=s, customer=who, stage=str(step.value), now=when)
            elif step.what == "redeem":
                ledger.redeem_points(
                    session=s, customer=who, points=int(step.value or 1), reason="gift", config=config, now=when
                )
            elif step.what == "void":
                void_coupon(session=s, code=coupon_code(step.customer), now=when)
            else:
                from crmcli.models import Referral

                rid = s.execute(select(Referral.id).where(Referral.referred_id == who.id)).scalar()
                if rid is None:
                    return
                if step.what == "verify":
                    verify_referral(session=s, referral_id=rid, config=config, now=when)
                else:
                    reject_referral(session=s, referral_id=rid, reason="not a real referral", now=when)

        found.append((at, 7, f"step {n}", act))
    return sorted(found, key=lambda e: (e[0], e[1], e[2]))


def sale_id(s: Session, ref: str) -> int:
    """The sale's id; a sale that was refused (its coupon voided first) cannot be paid or refunded."""
    pid = s.execute(select(Purchase.id).where(Purchase.ref == ref)).scalar()
    if pid is None:
        raise NotFound(f"no sale {ref}")
    return int(pid)


def _complaint_step(n: int, which: str) -> Callable[[Session, Config, datetime], None]:
    def step(s: Session, config: Config, when: datetime) -> None:
        from crmcli.models import Interaction

        iid = s.execute(select(Interaction.id).where(Interaction.summary == f"contact {n}")).scalar_one()
        if which == "r":
            respond(session=s, interaction_id=iid, at=when)
        else:
            resolve_complaint(session=s, interaction_id=iid, summary="sorted", at=when)

    return step


def load(db: Database, config: Config, history: History, until: datetime | None) -> list[str]:
    """Type the events up to ``until`` (all of them for None) in time order, then run the daily
    job as of the last moment; the refusals met on the way (the same on every database)."""
    refused = []
    for when, _, name, apply in events(history):
        if until is not None and when > until:
            break
        try:
            with db.session(write=True) as s:
                apply(s, config, when)
        except CrmError as exc:
            refused.append(f"{name}: {exc}")
    end = until if until is not None else START + timedelta(days=200)
    with db.session(write=True) as s:
        ledger.accrue_tenure(session=s, config=config, as_of=end)
    return refused


# --- what is compared -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """The JSON the renderer would print, as Python values."""
    return json.loads(json.dumps(value, default=lambda v: str(v) if isinstance(v, (Decimal, datetime)) else None))


def without_codes(profile: dict[str, Any]) -> dict[str, Any]:
    """Referral codes and reward coupon codes are drawn at random: equal on no two databases."""
    coupons = [{**c, "code": c["code"] if c["campaign"] != "referral" else "*"} for c in profile["coupons"]]
    return {**profile, "referral_code": "*", "coupons": coupons}


def without_entry_ids(summary: dict[str, Any]) -> dict[str, Any]:
    """Derived ledger entries are rewritten with new ids: the ids are not part of the story."""
    return {**summary, "ledger": [{**e, "id": None} for e in summary["ledger"]]}


def as_of_reports(db: Database, config: Config, as_of: datetime, *, people: bool = True) -> dict[str, Any]:
    from crmcli.reports.dashboard import dashboard
    from crmcli.reports.funnel import funnel
    from crmcli.reports.pareto import pareto
    from crmcli.reports.payment import payment_report
    from crmcli.reports.referrals import referral_report
    from crmcli.reports.rfm import rfm_customers, rfm_segments
    from crmcli.reports.satisfaction import satisfaction, sla
    from crmcli.reports.value import value_report
    from crmcli.services.coupons import coupon_stats
    from crmcli.services.interactions import followups_due
    from crmcli.services.profile import customer_profile, points_summary

    kw: dict[str, Any] = {"config": config, "as_of": as_of}
    with db.session() as s:
        out: dict[str, Any] = {
            "dashboard": dashboard(session=s, **kw),
            "pareto": pareto(session=s, **kw),
            "rfm": rfm_segments(session=s, **kw),
            "rfm customers": rfm_customers(session=s, **kw),
            "value": value_report(session=s, with_customers=True, **kw),
            "funnel": funnel(session=s, **kw),
            # as `report referrals --as-of` runs it: without the fraud-signal counts, which are
            # the latest check's findings and no history (docs/reports.md)
            "referrals": referral_report(session=s, **kw, signals=False),
            "payment": payment_report(session=s, **kw),
            "satisfaction": satisfaction(session=s, **kw),
            "sla": sla(session=s, **kw),
            "coupon stats": coupon_stats(session=s, **kw),
            "followup due": followups_due(session=s, config=config, now=as_of),
        }
        for customer in s.execute(select(Customer).order_by(Customer.id)).scalars():
            if customer.created_at > as_of or not people:
                continue
            assert customer.id is not None
            out[f"points {customer.ref}"] = without_entry_ids(
                points_summary(session=s, config=config, customer_id=customer.id, limit=None, as_of=as_of)
            )
            out[f"customer {customer.ref}"] = without_codes(
                customer_profile(session=s, customer=customer, config=config, as_of=as_of)
            )
    return plain(out)


# --- the test ---------------------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=histories())
def test_as_of_equals_a_database_cut_at_that_moment(history: History, backend: Any, tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    config = config_for(history)
    cut = START + history.cut
    results = []
    for name, until in (("full", None), ("cut", cut)):
        target, drop = backend(folder, name)
        db = Database(target)
        try:
            refused = load(db, config, history, until)
            results.append((as_of_reports(db, config, cut), refused))
        finally:
            db.close()
            drop()
    (full, full_refused), (part, part_refused) = results
    assert part_refused == full_refused[: len(part_refused)]
    for key in sorted(set(full) | set(part)):
        assert full.get(key) == part.get(key), key


# --- the spreadsheet round trip -------------------------------------------------------------------


def round_trip_reports(db: Database, config: Config, moments: list[datetime]) -> dict[str, Any]:
    """Every report at each moment, each customer's net spend and points balance."""
    from crmcli.services.profile import customer_totals

    out: dict[str, Any] = {}
    for moment in moments:
        out[moment.isoformat()] = as_of_reports(db, config, moment, people=False)
    with db.session() as s:
        for cid, ref in s.execute(select(Customer.id, Customer.ref).order_by(Customer.id)).all():
            out[f"net spend {ref}"] = str(customer_totals(s, cid)["net_minor"])
            out[f"points {ref}"] = ledger.balance(s, cid)
    return out


def export_and_import(source: Database, target: Database, config: Config, folder: Path, now: datetime) -> None:
    from crmcli.io.coupons import export_coupons, import_coupons
    from crmcli.io.customers import export_customers, import_customers
    from crmcli.io.interactions import export_interactions, import_interactions
    from crmcli.io.points import export_points, import_points
    from crmcli.io.purchases import export_purchases, import_purchases
    from crmcli.io.reader import CsvOptions

    names = ("customers", "coupons", "points", "purchases", "interactions")
    files = {name: folder / f"{name}.csv" for name in names}
    export_customers(db=source, path=files["customers"], config=config)
    export_coupons(db=source, config=config, path=files["coupons"])
    export_points(db=source, config=config, path=files["points"])
    export_purchases(db=source, config=config, path=files["purchases"])
    export_interactions(db=source, config=config, path=files["interactions"])
    import_customers(db=target, config=config, path=files["customers"], options=CsvOptions(), now=now)
    with target.session(write=True) as s:
        ledger.accrue_tenure(session=s, config=config, as_of=now)  # points accrue: before the sales that spent them
    import_coupons(db=target, config=config, path=files["coupons"], options=CsvOptions(), now=now)
    import_points(db=target, config=config, path=files["points"], options=CsvOptions(), now=now, before_sales=True)
    import_purchases(db=target, config=config, path=files["purchases"], options=CsvOptions(), now=now)
    import_interactions(db=target, config=config, path=files["interactions"], options=CsvOptions(), now=now)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=histories())
def test_export_then_import_reproduces_every_report(history: History, backend: Any, tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    config = config_for(history)
    end = START + timedelta(days=200)
    moments = [START + history.cut, end]
    made = [backend(folder, name) for name in ("original", "copy")]
    source, target = (Database(path) for path, _ in made)
    try:
        load(source, config, history, None)
        export_and_import(source, target, config, folder, end)
        copied = round_trip_reports(target, config, moments)
        assert copied == round_trip_reports(source, config, moments)
    finally:
        for db in (source, target):
            db.close()
        for _, drop in made:
            drop()
