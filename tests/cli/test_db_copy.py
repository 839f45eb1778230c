"""crmcli db copy --to URL: every table into an empty database, verified by counts and money sums."""

from __future__ import annotations

import os
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.datasets import build_shop

PG_URL = os.environ.get("CRMCLI_TEST_PG_URL")
REPORTS = ("pareto", "rfm", "value", "funnel", "referrals", "payment", "satisfaction", "sla")


def _state(cli: Cli) -> dict[str, Any]:
    """What a shop sees: its exports and reports as of a fixed time."""
    state: dict[str, Any] = {
        "customers": cli.ok("customer", "export", "-f", "json").json(),
        "purchases": cli.ok("purchase", "export", "-f", "json").json(),
        # Showing points settles due resets again, which may renumber them: compare entries, not ids.
        "points": [
            {k: v for k, v in e.items() if k != "id"}
            for e in cli.ok("points", "show", "1", "-f", "json").json()["ledger"]
        ],
        "coupons": cli.ok("coupon", "list", "-f", "json").json(),
        "referrals": cli.ok("referral", "list", "-f", "json").json(),
    }
    for report in REPORTS:
        state[report] = cli.ok("report", report, "--as-of", "2026-04-01", "-f", "json").json()
    return state


@pytest.fixture
def shop(cli: Cli) -> Cli:
    build_shop(cli)
    cli.ok("interaction", "log", "1", "--kind", "complaint", "--at", "2026-03-01", "--summary", "late delivery")
    cli.ok("coupon", "issue", "--customer", "2", "--amount", "5", "--code", "SORRY5")
    cli.ok("points", "add", "1", "40", "--reason", "welcome")
    return cli


def _copy(source: Cli, to: str) -> dict[str, Any]:
    result = source.ok("db", "copy", "--to", to, "-f", "json")
    assert result.stderr == ""  # no progress bar in a pipe
    return result.json()


def test_sqlite_to_sqlite_copies_every_table_and_verifies(shop: Cli, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    report = _copy(shop, str(target))
    assert report["verified"] is True and report["to"] == str(target)
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["customer"]["rows"] == 6
    assert tables["purchase"]["rows"] == 8
    assert tables["purchase"]["sums_minor_units"]["gross_minor"] == 90000
    assert report["rows"] == sum(t["rows"] for t in report["tables"])
    copy = Cli(target)
    assert _state(copy) == _state(shop)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # New rows get new ids in the copy.
    assert copy.new_id("customer", "add", "G") == 7


def test_the_table_output_lists_counts_and_sums(shop: Cli, tmp_path: Path) -> None:
    result = shop.ok("db", "copy", "--to", str(tmp_path / "copy.db"))
    assert "Copied; counts and money sums verified" in result.stdout
    assert "gross_minor=90000" in result.stdout


def test_a_non_empty_target_is_refused(shop: Cli, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    _copy(shop, str(target))
    result = shop("db", "copy", "--to", str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the target database is not empty: table ")
    assert result.stderr.endswith(" has rows (copy into a new, empty database)\n")
    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE notes (x)")
    raw.close()
    assert "it has table notes" in shop("db", "copy", "--to", str(other)).stderr
    text = tmp_path / "notes.csv"
    text.write_text("name\nAnn\n" * 500, encoding="utf-8")
    assert "the target is not an empty database: file is not a database" in shop("db", "copy", "--to", str(text)).stderr
    assert text.read_text(encoding="utf-8").startswith("name\nAnn")


def test_an_empty_crmcli_schema_is_a_valid_target(shop: Cli, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    Cli(target).ok("db", "upgrade")
    assert _copy(shop, str(target))["verified"] is True


def test_copying_a_database_onto_itself_is_refused(shop: Cli, db_path: Path) -> None:
    result = shop("db", "copy", "--to", str(db_path))
    assert result.exit_code == 1
    assert "the target is the database being copied" in result.stderr


def test_a_copy_after_a_merge(shop: Cli, tmp_path: Path) -> None:
    """A merge moves rows to a customer with a higher id; the copy keeps every link."""
    a = shop.new_id("customer", "add", "Keep", "--email", "keep@example.com")
    b = shop.new_id("customer", "add", "Drop", "--referred-by", str(a))
    shop.ok("customer", "merge", str(b), str(a), "--yes")
    assert _copy(shop, str(tmp_path / "copy.db"))["verified"] is True


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("set CRMCLI_TEST_PG_URL to run the PostgreSQL tests")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"crmcli_copy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_sqlite_to_postgresql_and_back(shop: Cli, pg_url: str, tmp_path: Path) -> None:
    expected = _state(shop)
    report = _copy(shop, pg_url)
    assert report["verified"] is True
    pg = Cli(pg_url)  # type: ignore[arg-type]
    assert _state(pg) == expected
    assert "not empty" in shop("db", "copy", "--to", pg_url).stderr
    # Sequences moved past the copied ids: new rows get new ids on PostgreSQL.
    assert pg.new_id("customer", "add", "G") == 7
    assert pg.new_id("purchase", "add", "7", "10") == 9
    back = tmp_path / "back.db"
    assert _copy(pg, str(back))["verified"] is True
    assert _state(Cli(back)) == _state(pg)
