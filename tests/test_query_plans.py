"""The hot queries use an index (EXPLAIN QUERY PLAN), so they stay fast at a million customers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from crmcli.db import Database
from crmcli.models import Coupon, Customer, Interaction, PointsEntry, Purchase, Referral
from crmcli.reports.common import revenue_by_customer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def plan(database: Database, statement: Any) -> str:
    with database.engine.connect() as conn:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize(
    ("name", "statement", "expected"),
    [
        ("customer by email", select(Customer).where(col(Customer.email) == "a@b.com"), "SEARCH customer USING INDEX"),
        ("customer by phone", select(Customer).where(col(Customer.phone) == "+1"), "SEARCH customer USING INDEX"),
        ("customer by ref", select(Customer).where(col(Customer.ref) == "R1"), "SEARCH customer USING INDEX"),
        (
            "customer by referral code",
            select(Customer).where(col(Customer.referral_code) == "X"),
            "SEARCH customer USING INDEX",
        ),
        (
            "purchases of a customer",
            select(Purchase).where(col(Purchase.customer_id) == 1),
            "SEARCH purchase USING INDEX ix_purchase_customer_revenue",
        ),
        ("purchase by ref", select(Purchase).where(col(Purchase.ref) == "R"), "SEARCH purchase USING INDEX"),
        (
            "points balance",
            select(func.sum(col(PointsEntry.delta))).where(col(PointsEntry.customer_id) == 1),
            "SEARCH points_entry USING INDEX ix_points_entry_customer_id",
        ),
        ("coupon by code", select(Coupon).where(col(Coupon.code) == "C"), "SEARCH coupon USING INDEX"),
        (
            "referral of a customer",
            select(Referral).where(col(Referral.referred_id) == 1),
            "SEARCH referral USING INDEX",
        ),
        (
            "referrals made",
            select(Referral).where(col(Referral.referrer_id) == 1),
            "SEARCH referral USING INDEX ix_referral_referrer_id",
        ),
        (
            "interactions of a customer",
            select(Interaction).where(col(Interaction.customer_id) == 1),
            "SEARCH interaction USING INDEX ix_interaction_customer_at",
        ),
        (
            "revenue per customer",
            select(revenue_by_customer(NOW)),
            "SCAN purchase USING COVERING INDEX ix_purchase_customer_revenue",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v and not v.startswith("S") else "",
)
def test_hot_query_uses_an_index(database: Database, name: str, statement: Any, expected: str) -> None:
    text = plan(database, statement)
    assert expected in text, f"{name}:\n{text}"
