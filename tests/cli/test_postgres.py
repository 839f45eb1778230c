"""The same commands and reports on PostgreSQL as on SQLite.

Runs when CRMCLI_TEST_PG_URL names a server (e.g. postgresql+psycopg://postgres@127.0.0.1:55432/postgres);
CI starts one. Each test gets an empty ``public`` schema.
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Cli
from tests.datasets import build_shop

PG_URL = os.environ.get("CRMCLI_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="set CRMCLI_TEST_PG_URL to run the PostgreSQL tests"),
]
REPORTS = ("pareto", "rfm", "value", "funnel", "referrals", "payment", "satisfaction", "sla", "cohorts", "clv")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Cli]:
    assert PG_URL is not None
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield Cli(PG_URL)  # type: ignore[arg-type]


def test_migrations_match_the_models(pg: Cli) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from crmcli.db import Database

    db = Database(str(pg.db_path))
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata) == []
    db.close()
    assert pg.ok("db", "current", "-f", "json").json()["up_to_date"] is True


def _reports(cli: Cli) -> dict[str, Any]:
    results = {}
    for report in REPORTS:
        data = cli.ok("report", report, "--as-of", "2026-04-01", "-f", "json").json()
        if isinstance(data, dict):
            data.pop("as_of", None)
        results[report] = data
    results["rfm_customers"] = cli.ok("report", "rfm", "--customers", "-f", "json").json()
    results["value_customers"] = cli.ok("report", "value", "--customers", "-f", "json").json()
    results["value_customers"].pop("as_of")
    # the SQL under report clv: purchase days, gaps between them, the first day's spend
    results["clv_customers"] = cli.ok("report", "clv", "--customers", "--as-of", "2026-04-01", "-f", "json").json()
    results["cohorts_quarter"] = cli.ok("report", "cohorts", "--period", "quarter", "-f", "json").json()["cohorts"]
    return results


def test_reports_agree_with_sqlite(pg: Cli, cli: Cli) -> None:
    build_shop(pg)
    build_shop(cli)
    assert _reports(pg) == _reports(cli)


def test_customers_referrals_and_exports_agree(pg: Cli, cli: Cli, tmp_path: Path) -> None:
    JOINED = ("--at", "2026-01-02")  # noqa: N806 - the same moment on both databases, as the export carries it
    for target in (pg, cli):
        a = target.new_id("customer", "add", "Ann Lee", "--email", "Ann@Example.com", "--tag", "vip", *JOINED)
        b = target.new_id("customer", "add", "Bob", "--referred-by", str(a), "--phone", "+44 20 7946 0018", *JOINED)
        c = target.new_id("customer", "add", "Cy", "--referred-by", str(b), *JOINED)
        assert "cannot close a circle" in target("referral", "add", str(c), str(a)).stderr
        target.ok("interaction", "log", str(a), "--kind", "call", "--at", "2026-03-01", "--follow-up", "2026-03-04")
        # C came through B, whom A brought: merged, A would be its own referrer
        assert "their own referrer" in target("customer", "merge", str(a), str(c), "--yes").stderr
        d = target.new_id("customer", "add", "Dee", "--phone", "+44 20 7946 0019", *JOINED)
        target.ok("customer", "merge", str(a), str(d), "--yes")
    assert _without_codes(pg.ok("customer", "export").stdout) == _without_codes(cli.ok("customer", "export").stdout)
    assert pg.ok("referral", "tree", "1", "-f", "json").json() == cli.ok("referral", "tree", "1", "-f", "json").json()
    due_pg = pg.ok("followup", "due", "--as-of", "2026-03-05", "-f", "json").json()
    due_sqlite = cli.ok("followup", "due", "--as-of", "2026-03-05", "-f", "json").json()
    assert due_pg == due_sqlite and due_pg


def _without_codes(export: str) -> list[dict[str, str]]:
    """A customer export's rows without their referral codes, which each database makes at random."""
    rows = list(csv.DictReader(io.StringIO(export.removeprefix("\ufeff"))))
    assert rows and all(len(row.pop("referral_code")) == 8 for row in rows)
    return rows


def test_customer_import_round_trip(pg: Cli, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("name,email,tags,referred_by\nAnn,ann@example.com,vip;local,\nBob,,,ann@example.com\n")
    summary = pg.ok("customer", "import", str(source), "-f", "json").json()
    assert (summary["inserted"], summary["referrals"]) == (2, 1)
    again = pg.ok("customer", "import", str(source), "--on-duplicate", "skip", "-f", "json").json()
    assert (again["inserted"], again["skipped"]) == (0, 2)


def _buy(url: str, code: str, attempts: int, barrier: Any, results: Any) -> None:
    from crmcli.config import Config
    from crmcli.db import Database
    from crmcli.errors import CrmError
    from crmcli.services.identify import find_customer
    from crmcli.services.purchases import PurchaseInput, add_purchase

    db = Database(url)
    barrier.wait()
    for _ in range(attempts):
        try:
            with db.session(write=True) as session:
                add_purchase(
                    session=session,
                    customer=find_customer(session, "1"),
                    config=Config(),
                    data=PurchaseInput(amount_minor=1000, coupon=code),
                )
            results.put("ok")
        except CrmError as exc:
            results.put(str(exc))
        except Exception as exc:
            results.put(f"CRASH {type(exc).__name__}: {exc}")
    db.close()


def test_coupon_uses_are_capped_under_concurrency(pg: Cli) -> None:
    pg.ok("customer", "add", "Ann")
    code = pg.ok("coupon", "issue", "--customer", "1", "--amount", "1", "--max-uses", "5", "-f", "json").json()[0][
        "code"
    ]
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_buy, args=(PG_URL, code, 15, barrier, results)) for _ in range(4)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(60)]
    for w in workers:
        w.join(timeout=60)
    assert outcomes.count("ok") == 5, [o for o in outcomes if o != "ok"][:3]
    assert not [o for o in outcomes if o.startswith("CRASH")]
    shown = pg.ok("coupon", "show", code, "-f", "json").json()
    assert shown["uses"] == 5 and len(shown["purchases"]) == 5


def test_batch_atomic_is_all_or_nothing(pg: Cli) -> None:
    import json

    pg.ok("customer", "add", "Ann Lee", "--email", "ann@example.com")
    lines = [
        {"cmd": "customer add", "args": {"name": "Cy", "email": "cy@example.com", "quiet": True}},
        {"cmd": "purchase add", "args": {"customer": "cy@example.com", "amount": "5"}},
        {"cmd": "purchase add", "args": {"customer": "nobody@example.com", "amount": "5"}},
    ]
    text_in = "".join(json.dumps(line) + "\n" for line in lines)
    failed = pg("batch", "--atomic", input=text_in)
    assert failed.exit_code == 1
    assert [json.loads(r)["ok"] for r in failed.stdout.splitlines()] == [False, False, False]
    assert pg.ok("purchase", "list", "-f", "json").json() == []
    assert len(pg.ok("customer", "list", "-f", "json").json()) == 1
    done = pg("batch", "--atomic", input="".join(json.dumps(line) + "\n" for line in lines[:2]))
    assert done.exit_code == 0, done.stdout
    assert [p["customer"] for p in pg.ok("purchase", "list", "-f", "json").json()] == ["Cy"]
    assert [e["command"].split()[1:3] for e in pg.ok("audit", "list", "-f", "json").json()][:2] == [
        ["purchase", "add"],
        ["customer", "add"],
    ]


def test_the_daily_job_and_its_reports_agree_with_sqlite(pg: Cli, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "loyalty.yaml"
    config.write_text(
        "points: {expire_after_days: 30}\n"
        "birthday_reward: {amount: 5, days_before: 7}\n"
        "sla: {breach_reward: {percent: 10, campaign: sorry}}\n",
        encoding="utf-8",
    )
    results = []
    for plain in (pg, cli):
        target = Cli(plain.db_path, config)
        ann = target.new_id("customer", "add", "Ann Lee", "--email", "ann.lee@example.com", "--birthday", "03-14")
        bob = target.new_id("customer", "add", "Bo Lee", "--email", "annlee@mailinator.com", "--referred-by", str(ann))
        target.ok("purchase", "add", str(bob), "50", "--at", "2026-01-10")
        target.ok("interaction", "log", str(ann), "--kind", "complaint", "--at", "2026-03-09 10:00")
        target.ok(
            "coupon", "issue", "--customer", str(ann), "--amount", "5", "--campaign", "sorry", "--budget-uses", "1"
        )
        runs = [target.ok("daily", "--as-of", "2026-03-10", "-f", "json").json() for _ in range(2)]
        referrals = target.ok("referral", "list", "-f", "json").json()
        results.append(
            {
                "runs": runs,
                "referrals": [(r["status"], r["signals"]) for r in referrals],
                "signals": target.ok("report", "referrals", "-f", "json").json()["signals"],
                "sla": [  # coupon codes are random: compare the rest
                    {**b, "apology": b["apology"] is not None}
                    for b in target.ok("report", "sla", "--as-of", "2026-03-10", "-f", "json").json()["breaches"]
                ],
                "stats": target.ok("coupon", "stats", "-f", "json").json(),
            }
        )
    assert results[0] == results[1]
    assert results[0]["referrals"] == [("review", "same_email disposable_email no_repeat_purchase")]
    assert (
        results[0]["runs"][0]["sla_apologies"]["coupons"] == 1
        and results[0]["runs"][1]["sla_apologies"]["coupons"] == 0
    )
