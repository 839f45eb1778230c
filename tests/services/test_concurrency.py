"""Real OS processes racing for the same coupon, points and referral."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError
from crmcli.models import Coupon, PointsEntry, Purchase
from crmcli.services.coupons import CouponTerms, issue_coupons
from crmcli.services.customers import CustomerInput, add_customer
from crmcli.services.identify import find_customer
from crmcli.services.purchases import PurchaseInput, add_purchase
from crmcli.services.referrals import verify_referral

pytestmark = pytest.mark.slow
CTX = mp.get_context("fork")


def _buy(db_path: str, code: str, attempts: int, barrier: Any, results: Any) -> None:
    db = Database(db_path)
    config = Config()
    barrier.wait()
    for _ in range(attempts):
        try:
            with db.session(write=True) as session:
                customer = find_customer(session, "1")
                add_purchase(
                    session=session,
                    customer=customer,
                    config=config,
                    data=PurchaseInput(amount_minor=1000, coupon=code),
                )
            results.put("ok")
        except CrmError as exc:
            results.put(str(exc))
        except Exception as exc:  # anything else is a failure the test must see
            results.put(f"CRASH {type(exc).__name__}: {exc}")
    db.close()


def _race(db_path: Path, code: str, processes: int, attempts: int) -> list[str]:
    barrier = CTX.Barrier(processes)
    results = CTX.Queue()
    workers = [
        CTX.Process(target=_buy, args=(str(db_path), code, attempts, barrier, results)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(processes * attempts)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return outcomes


def _setup(db_path: Path, max_uses: int) -> tuple[Database, str]:
    db = Database(str(db_path))
    with db.session(write=True) as session:
        customer = add_customer(session=session, data=CustomerInput(name="Ann"), config=Config())
        assert customer.id is not None
        (coupon,) = issue_coupons(
            session=session, customer_ids=[customer.id], terms=CouponTerms(amount_minor=100, max_uses=max_uses)
        )
    return db, coupon.code


def _uses(db: Database, code: str) -> tuple[int, int]:
    with db.session() as session:
        coupon = session.execute(select(Coupon).where(Coupon.code == code)).scalar_one()
        carried = session.execute(select(func.count()).where(Purchase.coupon_id == coupon.id)).scalar_one()
        return coupon.uses, carried


def test_single_use_coupon_raced_by_processes(tmp_path: Path) -> None:
    for round_no in range(5):
        db, code = _setup(tmp_path / f"round{round_no}.db", max_uses=1)
        outcomes = _race(db.path, code, processes=6, attempts=1)  # type: ignore[arg-type]
        assert outcomes.count("ok") == 1, outcomes
        assert all(o == "ok" or o == f"coupon {code} was already used" for o in outcomes), outcomes
        assert _uses(db, code) == (1, 1)
        db.close()


def test_coupon_with_ten_uses_attacked_by_four_processes(tmp_path: Path) -> None:
    db, code = _setup(tmp_path / "attack.db", max_uses=10)
    outcomes = _race(db.path, code, processes=4, attempts=50)  # type: ignore[arg-type]
    assert outcomes.count("ok") == 10
    assert not [o for o in outcomes if "CRASH" in o or "locked" in o]
    assert _uses(db, code) == (10, 10)
    db.close()


def test_cli_processes_race_for_one_coupon(tmp_path: Path) -> None:
    db, code = _setup(tmp_path / "cli.db", max_uses=1)
    db.close()
    command = [
        sys.executable,
        "-m",
        "crmcli",
        "--db",
        str(tmp_path / "cli.db"),
        "purchase",
        "add",
        "1",
        "10",
        "--coupon",
        code,
        "-q",
    ]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code_ for code_, _ in results) == [0, 1, 1, 1]
    for exit_code, stderr in results:
        if exit_code:
            assert stderr == f"Error: coupon {code} was already used\n"


def _verify(db_path: str, referral_id: int, barrier: Any, results: Any) -> None:
    db = Database(db_path)
    barrier.wait()
    try:
        with db.session(write=True) as session:
            verify_referral(session=session, referral_id=referral_id, config=Config())
        results.put("ok")
    except CrmError as exc:
        results.put(str(exc))
    db.close()


def test_concurrent_verification_rewards_once(tmp_path: Path) -> None:
    from crmcli.services.referrals import record_referral

    db = Database(str(tmp_path / "ref.db"))
    with db.session(write=True) as session:
        a = add_customer(session=session, data=CustomerInput(name="A"), config=Config())
        b = add_customer(session=session, data=CustomerInput(name="B"), config=Config())
        referral_id = record_referral(session=session, referrer=a, referred=b).id
    barrier = CTX.Barrier(5)
    results = CTX.Queue()
    workers = [CTX.Process(target=_verify, args=(str(db.path), referral_id, barrier, results)) for _ in range(5)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(5)]
    for w in workers:
        w.join(timeout=60)
    assert outcomes.count("ok") == 1
    assert outcomes.count(f"referral {referral_id} is already verified") == 4
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(Coupon)).scalar_one() == 2
        assert session.execute(select(func.count()).select_from(PointsEntry)).scalar_one() == 0
    db.close()
