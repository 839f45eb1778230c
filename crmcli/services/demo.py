"""Realistic sample data for a first look, written through the same services as real data."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import Conflict
from crmcli.models import Customer
from crmcli.services.coupons import CouponTerms, issue_coupons
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.interactions import log_interaction, resolve, respond
from crmcli.services.points import accrue_tenure
from crmcli.services.purchases import PurchaseInput, add_purchase, pay_purchase, refund_purchase
from crmcli.services.referrals import record_referral
from crmcli.services.stages import change_stage

DEMO_SOURCE = "demo"
FIRST = [
    "Ann",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Isabel",
    "Jamal",
    "Kate",
    "Liam",
    "Mei",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tomás",
    "Uma",
    "Victor",
    "Wen",
    "Xavier",
    "Yara",
    "Zoe",
    "Li Na",
    "Arjun",
    "Fatima",
    "Lucas",
]
LAST = [
    "Lee",
    "Smith",
    "García",
    "Chen",
    "Müller",
    "Okafor",
    "Rossi",
    "Nguyen",
    "Kowalski",
    "Silva",
    "Haddad",
    "Jensen",
    "Tanaka",
    "Brown",
    "Dubois",
    "Patel",
    "Wang",
    "Novak",
    "O'Brien",
    "Ivanova",
]
CITIES = ["Springfield", "Riverton", "Lakeside", "Hill Valley", "Portsmouth", "Fairview"]
SOURCES = ["walk-in", "web", "instagram", "referral", "market stall", "newsletter"]
COMPANIES = [None, None, None, "Lee & Sons", "Bright Bakery", "Fixit Ltd", "Green Grocers"]
TAGS = ["vip", "wholesale", "newsletter", "birthday-club", "gluten-free", "local"]
SUMMARIES = {
    "call": ["asked about opening hours", "checked an order", "wants a quote for 20 units"],
    "email": ["sent the new price list", "confirmed delivery date", "answered a sizing question"],
    "meeting": ["showed the spring range", "discussed a standing order"],
    "visit": ["bought a gift", "browsed, will come back", "picked up an order"],
    "message": ["asked for photos", "thanked us for the quick delivery"],
    "survey": ["post-purchase survey"],
    "note": ["prefers to be called after 5pm", "allergic to nuts"],
}
COMPLAINTS = [
    "item arrived damaged",
    "wrong size sent",
    "waited too long at the counter",
    "charged twice",
    "delivery was late",
]


def _ascii(text: str) -> str:
    """García -> garcia, O'Brien -> obrien: plain addresses every mail system takes."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain.lower().replace(" ", "").replace("'", "")


def demo_state(session: Session) -> tuple[int, int]:
    """(demo customers, other customers) in the database."""
    demo = session.execute(select(func.count()).where(col(Customer.source) == DEMO_SOURCE)).scalar_one()
    total = session.execute(select(func.count()).select_from(Customer)).scalar_one()
    return demo, total - demo


def load_demo(*, session: Session, config: Config, customers: int, now: datetime, seed: int = 7) -> dict[str, Any]:
    """Fill an empty database; refuse one that holds real data; do nothing a second time."""
    demo, other = demo_state(session)
    if other:
        raise Conflict(
            f"this database already holds {other} real customer(s); the demo will not mix with them",
            subject="demo",
        )
    if demo:
        return {"created": 0, "already_loaded": demo}
    rng = random.Random(seed)
    made: list[tuple[Customer, datetime]] = []
    for n in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        joined = now - timedelta(days=rng.randint(1, 720), minutes=rng.randint(0, 1440))
        data = CustomerInput(
            name=f"{first} {last}",
            email=_ascii(f"{first}.{last}.{n}@example.com"),
            # distinct for every n below 9 million (7919 is prime to 9,000,000): no clash at 100,000
            phone=f"+1555{1000000 + n * 7919 % 9000000:07d}" if rng.random() < 0.7 else None,
            company=rng.choice(COMPANIES),
            city=rng.choice(CITIES),
            source=DEMO_SOURCE,
            ref=f"demo-{n + 1:05d}",
            tags=rng.sample(TAGS, k=rng.choice([0, 0, 1, 1, 2])),
            note=f"came via {rng.choice(SOURCES)}",
        )
        customer = add_customer(session=session, data=data, config=config, now=joined)
        # Word of mouth: about a quarter were brought by an earlier customer.
        if made and rng.random() < 0.25:
            referrer = made[rng.randrange(len(made))][0]
            record_referral(session=session, referrer=referrer, referred=customer, now=joined)
        made.append((customer, joined))
    campaign = _spring_campaign(session, config, [c for c, _ in made], now)
    for customer, joined in made:
        _lifecycle(session, config, rng, customer, joined, now, campaign)
        _interactions(session, rng, customer, joined, now)
    accrue_tenure(session=session, config=config, as_of=now)
    return {"created": len(made), "already_loaded": 0}


def _spring_campaign(session: Session, config: Config, customers: list[Customer], now: datetime) -> dict[int, str]:
    """A 10%-off campaign for a third of the customers: customer id -> coupon code."""
    chosen = [c.id for c in customers[::3] if c.id is not None]
    terms = CouponTerms(percent_bp=1000, min_spend_minor=2000, expires_at=now + timedelta(days=60), campaign="spring")
    coupons = issue_coupons(session=session, customer_ids=chosen, terms=terms, now=now - timedelta(days=400))
    return {c.customer_id: c.code for c in coupons if c.customer_id is not None}


def _lifecycle(
    session: Session,
    config: Config,
    rng: random.Random,
    customer: Customer,
    joined: datetime,
    now: datetime,
    campaign: dict[int, str],
) -> None:
    """Walk a customer through the stages, then a few purchases: most buy a little, a few a lot."""
    path = rng.choices([1, 2, 3, 4], weights=[12, 6, 8, 74])[0]  # how far along before buying
    moment = joined
    for stage in ("verified", "prospect")[: max(0, path - 1)]:
        moment += timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 23))
        if moment < now:
            change_stage(session=session, customer=customer, stage=stage, now=moment)
    if path < 4 or moment >= now:  # nothing happens after now: a customer who joined lately buys later
        return
    big_spender = rng.random() < 0.15
    orders = rng.choice([1, 1, 1, 2, 2, 3, 4, 6]) + (rng.randint(3, 10) if big_spender else 0)
    span = (now - moment).total_seconds()
    for i in range(orders):
        moment += timedelta(seconds=span * rng.random() / (orders + 1))
        amount = int(rng.lognormvariate(3.6, 0.8) * 100) * (3 if big_spender else 1) + 100
        on_credit = customer.company is not None and rng.random() < 0.6
        due = moment + timedelta(days=30) if on_credit else None
        code = campaign.get(customer.id or 0) if i == 1 and amount >= 2000 and rng.random() < 0.6 else None
        purchase, _ = add_purchase(
            session=session,
            customer=customer,
            config=config,
            now=moment,
            data=PurchaseInput(amount_minor=amount, at=moment, due_at=due, coupon=code),
        )
        if on_credit and purchase.id is not None:
            paid = moment + timedelta(days=rng.choice([5, 12, 25, 29, 35, 48]))
            if paid < now:
                pay_purchase(session=session, purchase_id=purchase.id, config=config, at=paid)
        if rng.random() < 0.03 and purchase.id is not None and moment + timedelta(days=2) < now:
            refund_purchase(session=session, purchase_id=purchase.id, config=config, at=moment + timedelta(days=2))
    if now - moment > timedelta(days=240) and rng.random() < 0.5:
        change_stage(session=session, customer=customer, stage="lost", now=moment + timedelta(days=180))


def _interactions(session: Session, rng: random.Random, customer: Customer, joined: datetime, now: datetime) -> None:
    """Contacts spread over the customer's life, most recent ones close to today."""
    count = rng.choice([0, 1, 1, 2, 3, 4, 6])
    moments = sorted(now - (now - joined) * rng.random() ** 3 for _ in range(count))
    for i, at in enumerate(moments):
        kind = rng.choices(
            ["call", "email", "meeting", "visit", "message", "complaint", "survey", "note"],
            weights=[20, 20, 5, 25, 10, 5, 10, 5],
        )[0]
        last = i == len(moments) - 1
        if kind == "complaint":
            item = log_interaction(
                session=session, customer=customer, kind=kind, summary=rng.choice(COMPLAINTS), at=at, now=at
            )
            assert item.id is not None
            if rng.random() < 0.9 or not last:
                respond(
                    session=session, interaction_id=item.id, at=at + timedelta(minutes=rng.choice([3, 6, 9, 14, 40]))
                )
            if rng.random() < 0.8 or not last:
                resolve(
                    session=session,
                    interaction_id=item.id,
                    summary="sorted out with the customer",
                    at=at + timedelta(hours=rng.choice([1, 2, 3, 5, 24])),
                )
            continue
        rating = rng.choices([5, 4, 3, 2, 1], weights=[50, 25, 12, 8, 5])[0] if kind == "survey" else None
        follow = at + timedelta(days=rng.randint(1, 14)) if last and rng.random() < 0.3 else None
        log_interaction(
            session=session,
            customer=customer,
            kind=kind,
            rating=rating,
            at=at,
            now=at,
            summary=rng.choice(SUMMARIES[kind]),
            follow_up=follow,
        )
