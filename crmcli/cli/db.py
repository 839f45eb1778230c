"""crmcli db ...: schema upgrades, backups and integrity checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import FormatOpt
from crmcli.errors import CrmError, Invalid
from crmcli.render import Format

app = typer.Typer(help="Database: upgrade, current revision, backup, integrity check.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Upgrade the schema to the newest revision (backing up an existing SQLite file first).

    Example: crmcli --db shop.db db upgrade
    """
    rt = runtime(ctx)
    before, after = rt.database(migrate=False).upgrade()
    rt.output().message(
        f"Database at revision {after}" if before == after else f"Upgraded database from {before or 'empty'} to {after}"
    )


@app.command("current")
def current(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Show the database's schema revision and the newest one this crmcli knows.

    Example: crmcli db current --format json
    """
    from crmcli.db import head_revision

    rt = runtime(ctx)
    db = rt.database(migrate=False)
    revision = db.current_revision()
    rt.output(fmt).record(
        {
            "database": str(db.path or db.url),
            "revision": revision,
            "head": head_revision(),
            "up_to_date": revision == head_revision(),
        }
    )


@app.command("backup")
def backup(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="Backup file (default: next to the database, dated).")] = None,
) -> None:
    """Write a consistent copy of the SQLite database, even while others write to it.

    Example: crmcli db backup ~/backups/crm-$(date +%F).db
    """
    from datetime import UTC, datetime

    from crmcli.db import backup_sqlite

    rt = runtime(ctx)
    db = rt.db
    if db.path is None:
        raise Invalid("db backup copies SQLite files; back up PostgreSQL with pg_dump")
    if path is None:
        path = db.path.with_name(f"{db.path.stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db")
    target = backup_sqlite(db.path, path)
    rt.output().message(f"Backed up {db.path} to {target}")
    typer.echo(str(target))


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Check the database's integrity; exit 1 when it finds a problem.

    Example: crmcli db check
    """
    from crmcli.db import integrity_check

    rt = runtime(ctx)
    problems = integrity_check(rt.db)
    out = rt.output()
    for problem in problems:
        out.message(problem)
    if problems:
        raise CrmError(f"{len(problems)} integrity problem(s) found", hint="restore from a backup")
    out.message("ok")
