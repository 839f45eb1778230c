"""Alembic environment for crmcli.

crmcli passes an open connection (``config.attributes["connection"]``) so the
upgrade runs inside its own ``BEGIN IMMEDIATE`` transaction; run from the
``alembic`` command line, ``sqlalchemy.url`` or ``CRMCLI_DB`` names the database.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import crmcli.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("CRMCLI_DB")
    if not url:
        raise SystemExit("set sqlalchemy.url or CRMCLI_DB to the database to upgrade")
    if "://" not in url:
        url = f"sqlite:///{url}"
    with create_engine(url).connect() as conn:
        _configure(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run against a database")
run_migrations_online()
