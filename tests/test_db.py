from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from crmcli.db import Database, backup_sqlite, head_revision, migrations_dir
from crmcli.errors import DatabaseError
from tests.conftest import Cli


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


def _database_at(db_path: Path, revision: str) -> None:
    """A real database at an older revision, holding one customer."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    engine = Database(str(db_path))._raw_engine()
    with engine.begin() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.execute(
            text(
                "INSERT INTO customer (name, stage, referral_code, created_at, updated_at) "
                "VALUES ('Ann', 'lead', 'AAAAAAAA', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )
    engine.dispose()


def _failing_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Database, connection: object) -> None:
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(Database, "_run_alembic", fail)


def test_upgrade_backs_up_an_existing_database_first(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _database_at(db_path, "0001")
    _failing_migration(monkeypatch)
    with pytest.raises(RuntimeError):
        Database(str(db_path)).upgrade()
    (backup,) = db_path.parent.glob("crm.db.0001.*.bak")
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    copy.close()


def test_a_failing_upgrade_retried_by_every_command_backs_up_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: each command retried the upgrade and wrote another full-size backup."""
    _database_at(db_path, "0001")
    _failing_migration(monkeypatch)
    for _ in range(5):
        db = Database(str(db_path))
        with pytest.raises(RuntimeError):
            db.engine  # noqa: B018
        db.close()
    assert len(list(db_path.parent.glob("crm.db.0001.*.bak"))) == 1


def test_a_changed_database_gets_a_new_backup(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _database_at(db_path, "0001")
    _failing_migration(monkeypatch)
    with pytest.raises(RuntimeError):
        Database(str(db_path)).upgrade()
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE grown (x)")
    raw.executemany("INSERT INTO grown VALUES (?)", [("x" * 1000,)] * 200)
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError):
        Database(str(db_path)).upgrade()
    assert len(list(db_path.parent.glob("crm.db.0001.*.bak"))) == 2


def test_a_database_from_a_newer_crmcli_is_refused_without_a_backup(db_path: Path) -> None:
    db = Database(str(db_path))
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    db.close()
    for _ in range(2):
        with pytest.raises(DatabaseError, match=r"written by a newer crmcli \(revision 0099\); upgrade crmcli"):
            Database(str(db_path)).engine  # noqa: B018
    assert list(db_path.parent.glob("*.bak")) == []


def test_a_newer_database_is_a_one_line_error_for_every_command(cli, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("db", "upgrade")
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.commit()
    raw.close()
    for args in (("customer", "list"), ("db", "upgrade")):
        result = cli(*args)
        assert result.exit_code == 1
        assert result.stderr == "Error: this database was written by a newer crmcli (revision 9999); upgrade crmcli\n"
    assert cli.ok("db", "current", "-f", "json").json()["revision"] == "9999"
    assert list(db_path.parent.glob("*.bak")) == []


def test_automatic_backups_are_pruned_to_the_configured_number(cli, db_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("customer", "add", "Ann")
    made = [Path(cli.ok("db", "backup").stdout.strip()) for _ in range(5)]
    kept = sorted(db_path.parent.glob("crm.db.*.bak"))
    assert kept == sorted(made[-3:])
    config = tmp_path / "config.yaml"
    config.write_text("backups: {keep: 1}\n")
    only = Path(Cli(db_path, config)("db", "backup").stdout.strip())
    assert list(db_path.parent.glob("crm.db.*.bak")) == [only]


def test_a_named_backup_is_never_pruned(cli, db_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("db", "backup", str(tmp_path / "mine.db"))
    for _ in range(4):
        cli.ok("db", "backup")
    assert (tmp_path / "mine.db").exists()


def test_a_temp_file_left_by_an_interrupted_backup_is_removed(cli, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli.ok("db", "upgrade")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = db_path.parent / f".crm.db.0003.20260101T000000Z.bak.{dead.stdout.strip()}.0a0b0c0d.crmcli-tmp"
    left.write_bytes(b"half a backup")
    live = db_path.parent / f".crm.db.0003.20260101T000000Z.bak.{os.getppid()}.0a0b0c0d.crmcli-tmp"
    live.write_bytes(b"another process is writing this one")
    cli.ok("db", "backup")
    assert not left.exists()
    assert live.exists()


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


def test_db_check_on_a_damaged_file_names_the_backup_to_restore(cli, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    for n in range(300):
        cli.ok("customer", "add", f"Customer {n}", "--email", f"c{n}@example.com")
    backup = Path(cli.ok("db", "backup").stdout.strip())
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    data = bytearray(db_path.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xff" * (3 * page)  # wreck a few pages in the middle
    db_path.write_bytes(bytes(data))
    result = cli("db", "check")
    assert result.exit_code == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and "integrity problem(s) found" in last
    assert f"restore the last backup: cp {backup} {db_path}" in last


def test_db_check_on_a_file_that_is_not_a_database(cli, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    db_path.write_bytes(b"not a database at all" * 500)
    result = cli("db", "check")
    assert result.exit_code == 1
    assert "file is not a database" in result.stderr
    assert "restore your last backup" in result.stderr
