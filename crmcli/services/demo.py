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
from crmcli.services.customers import CustomerInput, add_customer, change_stage
from crmcli.services.interactions import log_interaction, resolve, respond
from crmcli.services.referrals import record_referral

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
STAGE_WEIGHTS = {"lead": 12, "verified": 6, "prospect": 8, "customer": 40, "repeat": 28, "lost": 6}
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
            hint="run it on its own database: crmcli --db demo.db demo",
        )
    if demo:
        return {"created": 0, "already_loaded": demo}
    rng = random.Random(seed)
    made: list[Customer] = []
    for n in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        joined = now - timedelta(days=rng.randint(1, 720), minutes=rng.randint(0, 1440))
        data = CustomerInput(
            name=f"{first} {last}",
            email=f"{first}.{last}.{n}@example.com".lower().replace(" ", "").replace("'", ""),
            phone=f"+1555{rng.randint(1000000, 9999999)}" if rng.random() < 0.7 else None,
            company=rng.choice(COMPANIES),
            city=rng.choice(CITIES),
            source=DEMO_SOURCE,
            ref=f"demo-{n + 1:05d}",
            tags=rng.sample(TAGS, k=rng.choice([0, 0, 1, 1, 2])),
            note=f"came via {rng.choice(SOURCES)}",
        )
        customer = add_customer(session=session, data=data, config=config, now=joined)
        stage = rng.choices(list(STAGE_WEIGHTS), weights=list(STAGE_WEIGHTS.values()))[0]
        change_stage(session=session, customer=customer, stage=stage, now=joined + timedelta(days=rng.randint(0, 30)))
        _interactions(session, rng, customer, joined, now)
        made.append(customer)
    _referrals(session, rng, made, now)
    return {"created": len(made), "already_loaded": 0}


def _interactions(session: Session, rng: random.Random, customer: Customer, joined: datetime, now: datetime) -> None:
    count = rng.choice([0, 1, 1, 2, 3, 4, 6])
    moments = sorted(joined + (now - joined) * rng.random() for _ in range(count))
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


def _referrals(session: Session, rng: random.Random, made: list[Customer], now: datetime) -> None:
    """Chains of word of mouth: a few customers bring friends, some of whom bring more."""
    for index, customer in enumerate(made[1:], start=1):
        if rng.random() < 0.25:
            referrer = made[rng.randrange(0, index)]
            record_referral(session=session, referrer=referrer, referred=customer, now=now)
