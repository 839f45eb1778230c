from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from crmcli.db import Database, backup_sqlite, head_revision, migrations_dir
from crmcli.errors import DatabaseError


def test_head_revision_read_without_alembic_matches_alembic() -> None:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == head_revision()


def test_migrations_produce_exactly_the_models_schema(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_sqlite_connection_settings(database: Database) -> None:
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_write_sessions_take_the_write_lock_at_begin(database: Database, db_path: Path) -> None:
    with database.session(write=True) as session:
        session.execute(text("SELECT count(*) FROM customer"))  # a read is enough to hold the lock
        other = sqlite3.connect(db_path, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        Database(str(tmp_path / "no" / "such" / "crm.db"))


def test_not_a_database_file(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a crmcli database"):
        Database(str(bogus)).engine  # noqa: B018


def test_upgrade_backs_up_an_existing_database_first(db_path: Path) -> None:
    db = Database(str(db_path))
    db.engine  # noqa: B018
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    db.close()
    # Pretend the file is at an older revision that the scripts know nothing of: the
    # backup must be taken before alembic is asked to move it.
    fresh = Database(str(db_path))
    with pytest.raises(Exception):  # noqa: B017 - alembic cannot locate 'older'
        fresh.upgrade()
    backups = list(db_path.parent.glob("crm.db.older.*.bak"))
    assert len(backups) == 1
    copy = sqlite3.connect(backups[0])
    assert copy.execute("SELECT version_num FROM alembic_version").fetchone() == ("older",)
    copy.close()


def test_new_database_is_not_backed_up(db_path: Path) -> None:
    Database(str(db_path)).engine  # noqa: B018
    assert list(db_path.parent.glob("*.bak")) == []


def test_backup_is_consistent_and_private(cli, db_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("customer", "add", "Ann Lee", "--email", "ann@example.com")
    target = tmp_path / "copy.db"
    result = cli.ok("db", "backup", str(target))
    assert result.stdout.strip() == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT email FROM customer").fetchall() == [("ann@example.com",)]
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()


def test_backup_while_another_connection_writes(database: Database, db_path: Path, tmp_path: Path) -> None:
    database.engine  # noqa: B018
    writer = sqlite3.connect(db_path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO customer (name, stage, referral_code, created_at, updated_at) "
        "VALUES ('Uncommitted', 'lead', 'ZZZZZZZZ', '2026-01-01', '2026-01-01')"
    )
    target = backup_sqlite(db_path, tmp_path / "during.db")
    writer.commit()
    writer.close()
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT count(*) FROM customer").fetchone() == (0,)
    copy.close()


def test_db_current_and_check(cli) -> None:  # type: ignore[no-untyped-def]
    cli.ok("db", "upgrade")
    current = cli.ok("db", "current", "-f", "json").json()
    assert current["revision"] == current["head"] == head_revision()
    assert current["up_to_date"] is True
    assert cli.ok("db", "check").stderr.strip() == "ok"


def test_db_check_finds_broken_foreign_keys(cli, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("db", "upgrade")
    raw = sqlite3.connect(db_path)
    raw.execute("INSERT INTO customer_tag (customer_id, tag) VALUES (999, 'ghost')")
    raw.commit()
    raw.close()
    result = cli("db", "check")
    assert result.exit_code == 1
    assert "foreign key: customer_tag" in result.stderr
    assert "Error: 1 integrity problem(s) found" in result.stderr


def test_upgrading_a_real_older_database_keeps_its_data_and_a_backup(db_path: Path) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    engine = Database(str(db_path))._raw_engine()
    with engine.begin() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            text(
                "INSERT INTO customer (name, stage, referral_code, created_at, updated_at) "
                "VALUES ('Ann', 'lead', 'AAAAAAAA', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )
    engine.dispose()
    db = Database(str(db_path))
    assert db.current_revision() == "0001"
    with db.session() as session:  # first use upgrades
        assert session.execute(text("SELECT name FROM customer")).scalar_one() == "Ann"
    assert db.current_revision() == head_revision()
    (backup,) = db_path.parent.glob("crm.db.0001.*.bak")
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    copy.close()
    db.close()
