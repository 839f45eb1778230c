"""Differential: settle_stages works out the common case (one hand-made row, no refund) in SQL;
the result must be the one the Python replay gives, for any purchases, ties and earlier
derived rows, and on every backend."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from crmcli.db import Database
from crmcli.models import Customer, Purchase, StageChange, table_of
from crmcli.services.stages import STAGE_RANK, settle_stages

START = datetime(2026, 1, 1, 9, tzinfo=UTC)
EXAMPLES = int(os.environ.get("CRMCLI_DIFFERENTIAL_EXAMPLES", "200"))

histories = st.lists(
    st.tuples(
        st.sampled_from(sorted(STAGE_RANK)),  # the stage the customer joined with
        st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=5),  # (day, bought before the first settle)
        st.lists(st.tuples(st.integers(0, 5), st.sampled_from(sorted(STAGE_RANK))), max_size=1),  # a later change
        st.booleans(),  # a refund
    ),
    min_size=1,
    max_size=6,
)


def load(session: Any, shop: list[Any], replay_all: bool) -> tuple[list[Any], list[Any], list[int]]:
    c, p, sc = table_of(Customer), table_of(Purchase), table_of(StageChange)
    ids = []
    later: list[dict[str, Any]] = []
    for n, (joined, sales, changes, refund) in enumerate(shop):
        cid = session.execute(
            insert(c)
            .values(name=f"C{n}", stage=joined, referral_code=f"CODE{n:04d}", created_at=START, updated_at=START)
            .returning(c.c.id)
        ).scalar_one()
        ids.append(cid)
        session.execute(insert(sc).values(customer_id=cid, from_stage=None, to_stage=joined, at=START, cause="manual"))
        for day, to in changes:
            session.execute(
                insert(sc).values(
                    customer_id=cid, from_stage=joined, to_stage=to, at=START + timedelta(days=day, hours=1)
                )
            )
        for k, (day, early) in enumerate(sales):
            row = {
                "customer_id": cid,
                "gross_minor": 100,
                "net_minor": 100,
                "at": START + timedelta(days=day),
                "refunded_at": START + timedelta(days=day + 1) if refund and k == 0 else None,
                "created_at": START,
            }
            if early:
                session.execute(insert(p).values(**row))
            else:
                later.append(row)
    written = [settle_stages(session, ids, replay_all=replay_all)]
    for row in later:
        session.execute(insert(p).values(**row))
    written.append(settle_stages(session, ids, replay_all=replay_all))
    first = ids[0]  # ids compared by position (a PostgreSQL sequence does not roll back)
    stages = [(cid - first, stage) for cid, stage in session.execute(select(c.c.id, c.c.stage).order_by(c.c.id))]
    history = sorted(
        (r.customer_id - first, r.at, r.from_stage or "", r.to_stage, r.cause)
        for r in session.execute(select(sc.c.customer_id, sc.c.at, sc.c.from_stage, sc.c.to_stage, sc.c.cause))
    )
    session.rollback()
    return stages, history, written


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(shop=histories)
def test_sql_stages_equal_the_replay(shop: list[Any], backend: Any, tmp_path: Path) -> None:
    target, drop = backend(Path(tempfile.mkdtemp(dir=tmp_path)), "stages")
    db = Database(target)
    try:
        with db.session(write=True) as session:
            fast = load(session, shop, replay_all=False)
            replayed = load(session, shop, replay_all=True)
        assert fast == replayed
    finally:
        db.close()
        drop()
