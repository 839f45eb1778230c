"""A large purchase import builds the secondary indexes of the tables it fills once, after the
insert, instead of writing them row by row (``crmcli.io.importing.indexes_built_after``).

Differential: the same shop's files imported with the indexes built after and with them kept
leave the same rows, byte for byte, and the same schema; a failure after the drop leaves the
indexes in place.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import event
from sqlalchemy.engine import Engine

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import ImportFailed
from crmcli.io import importing
from crmcli.io.purchases import import_purchases
from crmcli.io.reader import CsvOptions
from crmcli.services import points
from tests.services.test_paths_agree import END, Shop, by_files, shops


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL every engine sends meanwhile."""
    sent: list[str] = []

    def grab(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", grab)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", grab)


def schema(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()


RANDOM = {"referral_code", "code"}  # drawn at random: the same on no two databases


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in rowid order, with every column but the random codes, the
    audit's times and OS user and when each ledger was replayed (the clock's and the machine's,
    not the import's)."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        found = {}
        for name in names:
            columns = [c for _, c, *_ in conn.execute(f'PRAGMA table_info("{name}")') if c not in RANDOM]
            if name == "audit_entry":
                columns = ["id", "command"]
            if name == "points_settled":  # when each ledger was replayed: the import's clock
                columns.remove("at")
            shown = ", ".join(f'"{c}"' for c in columns)
            found[name] = conn.execute(f'SELECT {shown} FROM "{name}" ORDER BY rowid').fetchall()
        return found


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "empty.db"
    db = Database(str(path))
    with db.session():  # (opening it migrates it)
        pass
    db.close()
    return path


def load(empty: Path, folder: Path, name: str, shop: Shop) -> Path:
    target = folder / f"{name}.db"
    shutil.copy(empty, target)
    db = Database(str(target))
    try:
        by_files(db, Config(), shop, folder, split=True)
    finally:
        db.close()
    return target


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shop=shops())
def test_building_the_indexes_after_leaves_the_same_database(
    shop: Shop, empty: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    kept = load(empty, folder, "kept", shop)
    monkeypatch.setattr(importing, "REBUILD_MIN_ROWS", 1)
    with statements() as sent:
        built = load(empty, folder, "built", shop)
    monkeypatch.undo()
    dropped = [s for s in sent if s.startswith("DROP INDEX")]
    # the first sales file fills the empty table: its indexes were built after, unless every sale
    # used a coupon (the command's path, row by row); the second file only updates
    assert bool(dropped) == any(not sale.coupon for sale in shop.sales)
    assert rows(built) == rows(kept)
    assert schema(built) == schema(kept) == schema(empty)


def sales_file(folder: Path, count: int, *, first: int = 0) -> Path:
    path = folder / f"sales-{first}.csv"
    lines = [f"id:1,{10 + i % 7}.50,2026-0{1 + i % 9}-1{i % 10}T10:00,S{first + i}" for i in range(count)]
    path.write_text("customer,amount,at,ref\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def shop_db(empty: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "crm.db"
    shutil.copy(empty, path)
    db = Database(str(path))
    from crmcli.services.customers import CustomerInput, add_customer

    with db.session(write=True) as session:
        add_customer(session=session, data=CustomerInput(name="Ann"), config=Config())
    yield db
    db.close()


def test_a_failure_after_the_drop_leaves_the_indexes(
    shop_db: Database, empty: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "REBUILD_MIN_ROWS", 1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ImportFailed("the disk is full", [])

    monkeypatch.setattr(points, "record_refund_points", broken)
    with statements() as sent, pytest.raises(ImportFailed):
        import_purchases(db=shop_db, config=Config(), path=sales_file(tmp_path, 5), options=CsvOptions(), now=END)
    assert any(s.startswith("DROP INDEX") for s in sent)
    assert shop_db.path is not None
    path = Path(shop_db.path)
    assert schema(path) == schema(empty)
    assert rows(path)["purchase"] == []


def test_a_smaller_import_keeps_the_indexes(shop_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "REBUILD_MIN_ROWS", 1)
    import_purchases(db=shop_db, config=Config(), path=sales_file(tmp_path, 6), options=CsvOptions(), now=END)
    with statements() as sent:  # 5 rows into a table of 6: kept and written row by row
        summary = import_purchases(
            db=shop_db, config=Config(), path=sales_file(tmp_path, 5, first=6), options=CsvOptions(), now=END
        )
    assert summary["inserted"] == 5
    assert not any(s.startswith("DROP INDEX") for s in sent)
