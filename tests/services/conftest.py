"""Fixtures for service tests: empty migrated databases, on SQLite and (when a server is
named by CRMCLI_TEST_PG_URL) on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from crmcli.db import Database

PG_URL = os.environ.get("CRMCLI_TEST_PG_URL")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``make(folder, name) -> (database path or URL, drop)``: empty migrated databases, copies of
    one migrated SQLite file or PostgreSQL databases created from one migrated template
    (migrating is the slow part)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("template") / "empty.db"
        _migrate(Database(str(path)))

        def make_sqlite(folder: Path, name: str) -> tuple[str, Any]:
            target = folder / f"{name}.db"
            shutil.copy(path, target)
            return str(target), lambda: None

        yield make_sqlite
        return
    if not PG_URL:
        pytest.skip("set CRMCLI_TEST_PG_URL to run the PostgreSQL tests")
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    template = f"crmcli_paths_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {template}"))
        conn.execute(text(f"CREATE DATABASE {template}"))
    url = make_url(PG_URL)
    _migrate(Database(url.set(database=template).render_as_string(hide_password=False)))
    count = iter(range(10**9))

    def make_pg(folder: Path, name: str) -> tuple[str, Any]:
        db_name = f"{template}_{next(count)}"
        for attempt in range(20):  # the template is briefly "being accessed" while a connection closes
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"CREATE DATABASE {db_name} TEMPLATE {template}"))
                break
            except OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        target = url.set(database=db_name).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {db_name}"))

        return target, drop

    yield make_pg
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {template}"))
    admin.dispose()


def _migrate(db: Database) -> None:
    with db.session():
        pass
    db.close()
