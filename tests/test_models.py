"""The model helpers: an object for a row written in SQL reads as the constructor's would."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect

from crmcli.models import Purchase, as_written

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_a_row_written_in_sql_reads_as_the_constructed_model_with_no_changes_pending() -> None:
    values = {"id": 7, "customer_id": 3, "gross_minor": 1990, "net_minor": 1790, "coupon_discount_minor": 200}
    values |= {"at": AT, "created_at": AT, "paid_at": AT, "ref": "T-1"}
    written = as_written(Purchase, values)
    assert written.model_dump() == Purchase(**values).model_dump()
    assert written.refunded_at is None and written.points_used == 0  # a column not given: its default
    state = inspect(written)
    assert state.transient
    assert not any(state.attrs[name].history.has_changes() for name in values)
