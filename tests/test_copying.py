"""crmcli.copying as a library: batches, progress, and what a failed verification says."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import SQLModel

from crmcli import copying
from crmcli.db import Database
from crmcli.errors import DatabaseError
from tests.conftest import Cli


def test_progress_counts_every_row_once_in_small_batches(cli: Cli, db_path: Path, tmp_path: Path) -> None:
    for n in range(7):
        cli.ok("customer", "add", f"C{n}", "--tag", "a", "--tag", "b")
    seen: list[tuple[int, int]] = []
    source, target = Database(str(db_path)), Database(str(tmp_path / "copy.db"))
    tables = copying.copy_database(
        source=source, target=target, batch_size=3, progress=lambda done, total: seen.append((done, total))
    )
    source.close()
    target.close()
    total = sum(t.rows for t in tables)
    assert total == 7 + 14 + 7 + 7 + 7  # customers, tags, stage changes, audit entries and their customer links
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_copy_that_differs_is_an_error(
    cli: Cli, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("customer", "add", "Ann")
    cli.ok("purchase", "add", "1", "12.50")
    real = copying._measure
    calls = {"n": 0}

    def measure(conn: object, table: object) -> copying.TableCopy:
        found = real(conn, table)  # type: ignore[arg-type]
        calls["n"] += 1
        if found.table == "purchase" and calls["n"] > len(SQLModel.metadata.tables):  # the target's side
            found.sums["net_minor"] += 1
        return found

    monkeypatch.setattr(copying, "_measure", measure)
    with pytest.raises(DatabaseError, match="the copy of table purchase differs"):
        copying.copy_database(source=Database(str(db_path)), target=Database(str(tmp_path / "copy.db")))
