"""Files crmcli writes: never over what matters, never over anything without --force, owner-only."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Cli

EXPORTS = (("customer", "export"), ("purchase", "export"))


def _customers(db_path: Path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute("SELECT count(*) FROM customer").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def shop(cli: Cli) -> Cli:
    ann = cli.new_id("customer", "add", "Ann Lee", "--email", "ann@example.com")
    cli.ok("purchase", "add", str(ann), "19.90")
    return cli


@pytest.mark.parametrize("command", EXPORTS, ids=" ".join)
@pytest.mark.parametrize("force", [False, True])
def test_an_export_never_replaces_the_database(shop: Cli, db_path: Path, command: tuple[str, str], force: bool) -> None:
    """Regression: `crmcli --db q.db customer export --out q.db` replaced the database with a CSV."""
    result = shop(*command, "--out", str(db_path), *(["--force"] if force else []))
    assert result.exit_code == 1
    assert (
        result.stderr == f"Error: refusing to write {db_path}: it is the database ({db_path}) (write to another file)\n"
    )
    assert _customers(db_path) == 1


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_an_export_never_replaces_the_databases_wal_or_shm(shop: Cli, db_path: Path, suffix: str) -> None:
    result = shop("customer", "export", "--out", f"{db_path}{suffix}", "--force")
    assert result.exit_code == 1
    assert "it is a file of the database" in result.stderr


def test_another_name_for_the_database_is_refused(shop: Cli, db_path: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(db_path)
    hard = tmp_path / "hard.db"
    os.link(db_path, hard)
    relative = os.path.relpath(db_path)
    for name in (str(link), str(hard), relative):
        result = shop("customer", "export", "--out", name, "--force")
        assert result.exit_code == 1, name
        assert "refusing to write" in result.stderr
    assert _customers(db_path) == 1


@pytest.mark.parametrize("noun", ["customer", "purchase"])
def test_rejected_rows_never_replace_the_database_or_the_input(
    shop: Cli, db_path: Path, tmp_path: Path, noun: str
) -> None:
    """Regression: --skip-invalid aimed at the database imported the rows, then replaced the database."""
    file = tmp_path / "in.csv"
    file.write_text("name,customer,amount\nBob,ann@example.com,5\n,nobody@example.com,x\n", encoding="utf-8")
    for target in (db_path, file):
        result = shop(noun, "import", str(file), "--skip-invalid", str(target), "--force")
        assert result.exit_code == 1
        assert "refusing to write" in result.stderr
    assert _customers(db_path) == 1
    assert file.read_text(encoding="utf-8").startswith("name,customer,amount")


def test_an_existing_file_is_replaced_only_with_force(shop: Cli, tmp_path: Path) -> None:
    out = tmp_path / "customers.csv"
    out.write_text("keep me", encoding="utf-8")
    result = shop("customer", "export", "--out", str(out))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out} already exists (pass --force to replace it)\n"
    assert out.read_text(encoding="utf-8") == "keep me"
    shop.ok("customer", "export", "--out", str(out), "--force")
    assert "ann@example.com" in out.read_text(encoding="utf-8-sig")


def test_existing_rejected_rows_file_is_refused_before_anything_is_imported(
    shop: Cli, db_path: Path, tmp_path: Path
) -> None:
    file = tmp_path / "in.csv"
    file.write_text("name,email\nBob,bob@example.com\nCy,not-an-email\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("older rejects", encoding="utf-8")
    result = shop("customer", "import", str(file), "--skip-invalid", str(rejects))
    assert result.exit_code == 1
    assert "already exists (pass --force to replace it)" in result.stderr
    assert _customers(db_path) == 1
    shop.ok("customer", "import", str(file), "--skip-invalid", str(rejects), "--force")
    assert "not-an-email" in rejects.read_text(encoding="utf-8-sig")
    assert _customers(db_path) == 2


def test_a_folder_as_the_target_is_named(shop: Cli, tmp_path: Path) -> None:
    result = shop("customer", "export", "--out", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {tmp_path}: {tmp_path} is a folder (give a file name inside that folder)\n"
    )


def test_backup_refuses_the_database_and_existing_files(shop: Cli, db_path: Path, tmp_path: Path) -> None:
    assert "refusing to write" in shop("db", "backup", str(db_path), "--force").stderr
    assert _customers(db_path) == 1
    target = tmp_path / "copy.db"
    target.write_text("an older copy", encoding="utf-8")
    assert "already exists" in shop("db", "backup", str(target)).stderr
    shop.ok("db", "backup", str(target), "--force")
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT count(*) FROM customer").fetchone() == (1,)
    copy.close()


def test_a_failed_export_leaves_no_temp_file(shop: Cli, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    out.write_text("old", encoding="utf-8")
    shop("customer", "export", "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _run(script: str, umask: int = 0o022) -> str:
    """Run Python in a fresh process under ``umask``, as a shop's shell would."""
    code = f"import os\nos.umask({umask:#o})\n" + textwrap.dedent(script)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_and_shm_are_owner_only_under_umask_022(tmp_path: Path) -> None:
    """Regression: the database and its -wal/-shm were created 0644 under umask 022."""
    db_path = tmp_path / "shop.db"
    out = _run(
        f"""
        from sqlalchemy import text
        from crmcli.db import Database
        db = Database({str(db_path)!r})
        with db.session(write=True) as session:
            session.execute(text("INSERT INTO customer (name, stage, referral_code, created_at, updated_at) "
                                 "VALUES ('Ann', 'lead', 'AAAAAAAA', '2026-01-01', '2026-01-01')"))
        # The connection is still open: the -wal and -shm exist now.
        for suffix in ("", "-wal", "-shm"):
            print(oct(os.stat({str(db_path)!r} + suffix).st_mode & 0o777))
        """
    )
    assert out.split() == ["0o600", "0o600", "0o600"]


def test_every_file_crmcli_writes_is_owner_only_under_umask_022(tmp_path: Path) -> None:
    """Regression: exports were forced to 0644 even under umask 077."""
    db_path = tmp_path / "shop.db"
    bad = tmp_path / "in.csv"
    bad.write_text("name,email\nBob,bob@example.com\nCy,not-an-email\n", encoding="utf-8")
    commands = [
        ["customer", "add", "Ann", "--email", "ann@example.com"],
        ["customer", "export", "--out", str(tmp_path / "c.csv")],
        ["purchase", "export", "--out", str(tmp_path / "p.json"), "--format", "json"],
        ["customer", "import", str(bad), "--skip-invalid", str(tmp_path / "rejects.csv")],
        ["db", "backup", str(tmp_path / "named.db")],
        ["db", "backup"],
    ]
    _run(
        f"""
        import sys
        from typer.testing import CliRunner
        from crmcli.cli.app import app
        for args in {commands!r}:
            result = CliRunner().invoke(app, ["--db", {str(db_path)!r}, *args])
            assert result.exit_code == 0, (args, result.output)
        """
    )
    written = [p for p in tmp_path.iterdir() if p != bad]
    assert {p.name for p in written} >= {"shop.db", "c.csv", "p.json", "rejects.csv", "named.db"}
    assert any(p.name.endswith(".bak") for p in written)
    assert {p.name: _mode(p) for p in written} == {p.name: 0o600 for p in written}


def test_an_existing_database_keeps_its_permissions(tmp_path: Path) -> None:
    db_path = tmp_path / "shared.db"
    Cli(db_path).ok("customer", "add", "Ann")
    db_path.chmod(0o640)
    Cli(db_path).ok("customer", "add", "Bob")
    assert _mode(db_path) == 0o640
