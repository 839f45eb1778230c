"""The demo shop is a history like any other: nothing in it has happened after the moment it is
built at (a customer who joined yesterday has not bought next week)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.models import Interaction, PointsEntry, Purchase, StageChange
from crmcli.services.demo import load_demo


def test_nothing_in_the_demo_happens_after_it_is_built(database: Database, config: Config) -> None:
    now = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    with database.session(write=True) as session:
        load_demo(session=session, config=config, customers=300, now=now)
    with database.session() as session:
        latest = {
            "purchase": session.execute(select(func.max(Purchase.at))).scalar_one(),
            "payment": session.execute(select(func.max(Purchase.paid_at))).scalar_one(),
            "refund": session.execute(select(func.max(Purchase.refunded_at))).scalar_one(),
            "stage change": session.execute(select(func.max(StageChange.at))).scalar_one(),
            "points entry": session.execute(select(func.max(PointsEntry.at))).scalar_one(),
            "interaction": session.execute(select(func.max(Interaction.at))).scalar_one(),
        }
    assert all(moment is not None for moment in latest.values()), latest
    assert {what: moment for what, moment in latest.items() if moment > now} == {}
