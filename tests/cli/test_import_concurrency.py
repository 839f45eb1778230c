"""A purchase import holds the write lock only for its final insert: a till's sale from another
process goes through while the import reads and checks its file, and what that sale changed
is taken into account when the import writes.

Two real processes: the import runs here (a library call) and, from its progress callback,
that is while it is still reading the file, runs ``crmcli purchase add`` as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import ImportFailed
from crmcli.io.purchases import import_purchases
from crmcli.io.reader import CsvOptions
from crmcli.models import Purchase
from tests.conftest import Cli

ROWS = 3000  # the progress callback runs every 1,000 rows


def till(db_path: Path, config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``crmcli purchase add`` in its own process, giving up on the lock after 2 s."""
    return subprocess.run(
        [sys.executable, "-m", "crmcli", "--db", str(db_path), "--config", str(config_path), "purchase", "add", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, Path]:
    db_path = tmp_path / "crm.db"
    config_path = tmp_path / "config.yaml"
    config_path.write_text("lock_timeout_seconds: 2\n")
    cli = Cli(db_path, config_path)
    for n in range(3):
        cli.ok("customer", "add", f"Customer {n}", "--ref", f"C{n}")
    return db_path, config_path


def sales_file(tmp_path: Path, *, refs: bool = False) -> Path:
    lines = ["customer,amount,at,ref"]
    lines += [
        f"ref:C{n % 3},{10 + n % 7}.50,2026-01-{1 + n % 28:02d} 10:00,{f'S{n}' if refs else ''}" for n in range(ROWS)
    ]
    path = tmp_path / "sales.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def import_with(db_path: Path, path: Path, during: Any, **options: Any) -> dict[str, Any]:
    calls: list[int] = []

    def progress(_: int) -> None:
        if not calls:
            during()
        calls.append(1)

    db = Database(str(db_path))
    try:
        return import_purchases(db=db, config=Config(), path=path, options=CsvOptions(), progress=progress, **options)
    finally:
        db.close()


def count(db_path: Path) -> int:
    db = Database(str(db_path))
    try:
        with db.session() as session:
            return int(session.execute(select(func.count()).select_from(Purchase)).scalar_one())
    finally:
        db.close()


def test_a_sale_goes_through_while_an_import_reads_its_file(shop: tuple[Path, Path], tmp_path: Path) -> None:
    db_path, config_path = shop
    sales = sales_file(tmp_path)
    added: list[subprocess.CompletedProcess[str]] = []
    summary = import_with(db_path, sales, lambda: added.append(till(db_path, config_path, "ref:C1", "12.00")))
    assert added[0].returncode == 0, added[0].stderr
    assert summary["inserted"] == ROWS
    assert count(db_path) == ROWS + 1


def test_a_ref_the_till_recorded_meanwhile_is_a_duplicate(shop: tuple[Path, Path], tmp_path: Path) -> None:
    """The till records sale S5 while the import, whose file also has S5, reads: the import
    notices at its write and, all or nothing, writes none of its rows."""
    db_path, config_path = shop
    sales = sales_file(tmp_path, refs=True)
    added: list[subprocess.CompletedProcess[str]] = []
    with pytest.raises(ImportFailed) as failed:
        import_with(db_path, sales, lambda: added.append(till(db_path, config_path, "ref:C1", "12.00", "--ref", "S5")))
    assert added[0].returncode == 0, added[0].stderr
    assert [line for line, _ in failed.value.problems] == [7]  # the header is line 1
    assert "ref S5 is already purchase" in failed.value.problems[0][1]
    assert count(db_path) == 1


def test_skip_leaves_out_what_the_till_recorded_meanwhile(shop: tuple[Path, Path], tmp_path: Path) -> None:
    db_path, config_path = shop
    sales = sales_file(tmp_path, refs=True)
    added: list[subprocess.CompletedProcess[str]] = []
    summary = import_with(
        db_path,
        sales,
        lambda: added.append(till(db_path, config_path, "ref:C1", "12.00", "--ref", "S5")),
        on_duplicate="skip",
    )
    assert added[0].returncode == 0, added[0].stderr
    assert (summary["inserted"], summary["skipped"]) == (ROWS - 1, 1)
    assert count(db_path) == ROWS


def test_a_customer_merged_meanwhile_is_resolved_again(shop: tuple[Path, Path], tmp_path: Path) -> None:
    """Customer C2 is merged into C0 while the import reads: rows naming C2 no longer name a
    customer, and the import refuses them instead of writing to a customer that is gone."""
    db_path, config_path = shop
    sales = sales_file(tmp_path)

    def merge() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "crmcli", "--db", str(db_path), "--config", str(config_path)]
            + ["customer", "merge", "ref:C0", "ref:C2", "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    with pytest.raises(ImportFailed) as failed:
        import_with(db_path, sales, merge)
    assert len(failed.value.problems) == ROWS // 3
    assert "no customer 'ref:C2'" in failed.value.problems[0][1]
    assert count(db_path) == 0
