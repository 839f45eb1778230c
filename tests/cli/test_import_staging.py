"""The purchase import stages its rows before writing: a ref repeated in a later batch of the
file is found at the end of staging, and the rejected-rows file still gets the row's cells."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import ImportFailed
from crmcli.io import purchases
from crmcli.io.reader import CsvOptions
from tests.conftest import Cli


def test_a_ref_repeated_in_a_later_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "crm.db"
    Cli(db_path).ok("customer", "add", "Ann", "--ref", "C1")
    monkeypatch.setattr(purchases, "BATCH", 2)
    sales = tmp_path / "sales.csv"
    sales.write_text("customer,amount,at,ref\nC1,1.00,2026-01-01,S1\nC1,2.00,2026-01-02,S2\nC1,3.00,2026-01-03,S1\n")
    db = Database(str(db_path))
    try:
        with pytest.raises(ImportFailed) as failed:
            purchases.import_purchases(db=db, config=Config(), path=sales, options=CsvOptions())
        assert failed.value.problems == [(4, "same ref as line 2 of this file")]
        rejects = tmp_path / "rejects.csv"
        summary = purchases.import_purchases(
            db=db, config=Config(), path=sales, options=CsvOptions(), reject_file=rejects
        )
    finally:
        db.close()
    assert (summary["inserted"], summary["rejected"]) == (2, 1)
    with rejects.open(encoding="utf-8-sig", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["line"], row["amount"], row["at"], row["ref"]) == ("4", "3.00", "2026-01-03", "S1")
