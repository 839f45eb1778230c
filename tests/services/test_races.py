"""Races between real OS processes released together on a barrier, on SQLite and PostgreSQL:
the same rules and the same one-line messages as when commands run one after another.

Each race runs ROUNDS times with PROCESSES processes on a fresh database.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError
from crmcli.models import Coupon, Referral
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase
from crmcli.services.referrals import record_referral, verify_referral

pytestmark = pytest.mark.slow
CTX = mp.get_context("fork")
ROUNDS = int(os.environ.get("CRMCLI_RACE_ROUNDS", "15"))
PROCESSES = 6


def _worker(target: str, job: Callable[[Any, int], None], n: int, barrier: Any, results: Any) -> None:
    db = Database(target)
    try:
        barrier.wait()
        with db.session(write=True) as session:
            job(session, n)
        results.put("ok")
    except CrmError as exc:
        results.put(f"refused: {exc}")
    except Exception as exc:  # a raw driver error, a deadlock: what the test must never see
        results.put(f"CRASH {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        db.close()


def race(target: str, job: Callable[[Any, int], None], processes: int = PROCESSES) -> list[str]:
    barrier = CTX.Barrier(processes)
    results = CTX.Queue()
    workers = [CTX.Process(target=_worker, args=(target, job, n, barrier, results)) for n in range(processes)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return outcomes


def people(target: str, *names: str) -> None:
    db = Database(target)
    with db.session(write=True) as s:
        for name in names:
            add_customer(session=s, data=CustomerInput(name=name, email=f"{name.lower()}@example.com"), config=Config())
    db.close()


def rounds(backend: Any, tmp_path: Path) -> Any:
    for n in range(ROUNDS):
        target, drop = backend(Path(tempfile.mkdtemp(dir=tmp_path)), f"round{n}")
        try:
            yield target
        finally:
            drop()


def referrals(target: str) -> list[tuple[int, int, str]]:
    db = Database(target)
    with db.session() as s:
        found = [(r.referrer_id, r.referred_id, r.status) for r in s.execute(select(Referral)).scalars()]
    db.close()
    return found


def has_cycle(links: list[tuple[int, int, str]]) -> bool:
    parent = {referred: referrer for referrer, referred, _ in links}
    for start in parent:
        seen, node = {start}, parent.get(start)
        while node is not None:
            if node in seen:
                return True
            seen.add(node)
            node = parent.get(node)
    return False


def _refer_in_a_circle(session: Any, n: int) -> None:
    # Processes 0,3 add A->B, 1,4 add B->C, 2,5 add C->A: all three would close a circle.
    referrer, referred = (("1", "2"), ("2", "3"), ("3", "1"))[n % 3]
    record_referral(
        session=session, referrer=find_customer(session, referrer), referred=find_customer(session, referred)
    )


def test_concurrent_referrals_never_close_a_circle(backend: Any, tmp_path: Path) -> None:
    for target in rounds(backend, tmp_path):
        people(target, "A", "B", "C")
        outcomes = race(target, _refer_in_a_circle)
        assert not [o for o in outcomes if o.startswith("CRASH")], outcomes
        links = referrals(target)
        assert not has_cycle(links) and len(links) == 2
        refusals = {o for o in outcomes if o.startswith("refused")}
        assert all("cannot close a circle" in o or "already referred" in o for o in refusals), refusals


def _verify_or_buy(session: Any, n: int) -> None:
    if n % 2 == 0:
        verify_referral(session=session, referral_id=1, config=Config())
    else:
        add_purchase(
            session=session,
            customer=find_customer(session, "2"),
            data=PurchaseInput(amount_minor=5000),
            config=Config(),
        )


def test_verification_racing_the_first_purchase_rewards_once_without_deadlock(backend: Any, tmp_path: Path) -> None:
    for target in rounds(backend, tmp_path):
        people(target, "A", "B")
        db = Database(target)
        with db.session(write=True) as s:
            record_referral(session=s, referrer=find_customer(s, "1"), referred=find_customer(s, "2"))
        db.close()
        outcomes = race(target, _verify_or_buy)
        assert not [o for o in outcomes if o.startswith("CRASH")], outcomes
        assert all(o == "ok" or "already verified" in o for o in outcomes), outcomes
        db = Database(target)
        with db.session() as s:
            rewards = s.execute(select(Coupon.customer_id).where(Coupon.referral_id == 1)).scalars().all()
        db.close()
        assert sorted(rewards) == [1, 2]  # one reward each side, whoever verified


def _add_same_email(session: Any, n: int) -> None:
    add_customer(session=session, data=CustomerInput(name=f"Twin {n}", email="twin@example.com"), config=Config())


def test_a_lost_unique_race_reads_like_the_check(backend: Any, tmp_path: Path) -> None:
    for target in rounds(backend, tmp_path):
        outcomes = race(target, _add_same_email)
        assert outcomes.count("ok") == 1, outcomes
        refusals = [o for o in outcomes if o != "ok"]
        assert all(o == "refused: customer 1 already has email twin@example.com" for o in refusals), refusals
