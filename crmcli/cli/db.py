"""crmcli db ...: schema upgrades, backups, integrity checks and copies to another database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import ForceOpt, FormatOpt
from crmcli.errors import CrmError, Invalid
from crmcli.render import Format

app = typer.Typer(
    help=(
        "Database: upgrade, current revision, backup, integrity check, copy.\n\n"
        "Example: crmcli db backup ~/backups/crm.db"
    ),
    no_args_is_help=True,
)


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
    path: Annotated[
        Path | None, typer.Argument(help="Backup file (default: next to the database, named by revision and time).")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write a consistent copy of the SQLite database, even while others write to it.

    Without PATH the copy goes next to the database and only the newest few such
    backups are kept (config backups.keep); a PATH you name is yours to keep.

    Example: crmcli db backup ~/backups/crm-$(date +%F).db
    """
    from crmcli.db import automatic_backup, backup_sqlite

    rt = runtime(ctx)
    db = rt.db
    if db.path is None:
        raise Invalid("db backup copies SQLite files; back up PostgreSQL with pg_dump")
    db.engine  # noqa: B018 - opens (and creates or upgrades) the database first
    if path is None:
        target = automatic_backup(db.path, db.revision_for_backup(), keep=db.backups_kept)
    else:
        target = backup_sqlite(db.path, rt.target(path, force=force))
    rt.output().message(f"Backed up {db.path} to {target}")
    typer.echo(str(target))


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Check the database's integrity; exit 1 when it finds a problem, naming the backup to restore.

    Example: crmcli db check
    """
    from crmcli.db import integrity_check, latest_backup

    rt = runtime(ctx)
    db = rt.database(migrate=False)
    problems = integrity_check(db)
    out = rt.output()
    for problem in problems:
        out.message(problem)
    if problems:
        last = latest_backup(db.path)
        hint = (
            f"stop every crmcli job, then restore the last backup: cp {last} {db.path} and remove {db.path}-wal "
            f"and {db.path}-shm; check it with 'crmcli db check'"
            if last is not None
            else "restore your last backup (for PostgreSQL, from pg_dump)"
        )
        raise CrmError(f"{len(problems)} integrity problem(s) found", hint=hint)
    out.message("ok")


@app.command("copy")
def copy(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="The empty database to copy into: a path or URL.", show_default=False)
    ],
    fmt: FormatOpt = Format.table,
) -> None:
    """Copy every table into an empty database (SQLite <-> PostgreSQL), verified by counts and money sums.

    The target's schema is created by the migrations; a target that holds data is refused.

    Example: crmcli --db shop.db db copy --to postgresql+psycopg://shop@db.local/crm
    """
    from crmcli.copying import copy_database
    from crmcli.db import Database

    rt = runtime(ctx)
    config = rt.config
    target = Database(to, lock_timeout=config.lock_timeout_seconds, backups_kept=config.backups.keep)
    try:
        tables = copy_database(source=rt.db, target=target, progress=rt.count_progress("Copying rows"))
    finally:
        target.close()
    tables_out: list[dict[str, Any]] = [
        {"table": t.table, "rows": t.rows, "sums_minor_units": t.sums if Format(fmt).structured else _pairs(t.sums)}
        for t in tables
    ]
    record = {"to": to, "rows": sum(t.rows for t in tables), "verified": True, "tables": tables_out}
    rt.output(fmt).record(record, title="Copied; counts and money sums verified", csv_rows="tables")


def _pairs(sums: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in sums.items()) or "-"
