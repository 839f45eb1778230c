"""Copy every table of one database into another, empty one (SQLite <-> PostgreSQL).

The target's schema is made by the migrations, the rows are copied table by table in
foreign-key order and in batches inside one transaction on the target, PostgreSQL
sequences are moved past the copied ids, and the copy is verified: per table, the
number of rows and the sum of every money column (the BigInteger columns) must equal
the source's before it counts as done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crmcli.db import Database
from crmcli.errors import Conflict, DatabaseError, Invalid

if TYPE_CHECKING:
    from sqlalchemy import Table

BATCH = 5_000


@dataclass
class TableCopy:
    table: str
    rows: int
    sums: dict[str, int]


def copy_database(
    *,
    source: Database,
    target: Database,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> list[TableCopy]:
    """Copy ``source`` into the empty ``target``; returns the verified counts and sums per table.

    ``progress(done, total)`` is called after each batch with rows copied so far.
    """
    if _same_database(source, target):
        raise Invalid("the target is the database being copied", subject="copy-target")
    tables = _tables()
    source.engine  # noqa: B018 - brings the source up to date first
    _refuse_non_empty(target, tables)
    target.engine  # noqa: B018 - creates the schema with the migrations
    with source.engine.connect() as src, target.writer.connect() as dst:
        with src.begin():
            counts = {t.name: src.execute(_count(t)).scalar_one() for t in tables}
            total = sum(counts.values())
            done = 0
            with dst.begin():
                if target.is_sqlite:
                    # Rows arrive table by table; a row may point to a later row of its own table.
                    dst.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
                write = _insert if target.is_sqlite or dst.dialect.driver != "psycopg" else _copy_in
                for table in tables:
                    for batch in _batches(src, table, batch_size):
                        write(dst, table, batch)
                        done += len(batch)
                        if progress is not None:
                            progress(done, total)
                if not target.is_sqlite:
                    _reset_sequences(dst, tables)
            expected = [_measure(src, t) for t in tables]
    with target.engine.connect() as dst:
        found = [_measure(dst, t) for t in tables]
    for want, got in zip(expected, found, strict=True):
        if want != got:
            raise DatabaseError(
                f"the copy of table {want.table} differs: {got.rows} rows and sums {got.sums} "
                f"instead of {want.rows} and {want.sums}",
                subject="copy-verify",
            )
    return expected


def _tables() -> list[Table]:
    from sqlmodel import SQLModel

    import crmcli.models  # noqa: F401 - registers the tables

    return list(SQLModel.metadata.sorted_tables)


def _same_database(source: Database, target: Database) -> bool:
    if source.path is not None and target.path is not None:
        return source.path.expanduser().resolve() == target.path.expanduser().resolve()
    return source.url == target.url


def _refuse_non_empty(target: Database, tables: list[Table]) -> None:
    """An empty database, or one holding only crmcli's empty schema, may be copied into."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DatabaseError as SADatabaseError

    ours = {t.name for t in tables} | {"alembic_version"}
    try:
        conn = target._raw_engine().connect()
        present = set(inspect(conn).get_table_names())
    except SADatabaseError as exc:
        raise Conflict(
            f"the target is not an empty database: {str(exc.orig).splitlines()[0]}", subject="copy-target"
        ) from None
    with conn:
        foreign = sorted(present - ours)
        if foreign:
            raise Conflict(
                f"the target database is not empty: it has table {foreign[0]}", subject="copy-target", key=foreign[0]
            )
        for table in tables:
            if table.name in present and conn.execute(_count(table)).scalar_one():
                raise Conflict(
                    f"the target database is not empty: table {table.name} has rows",
                    subject="copy-target",
                    key=table.name,
                )


def _count(table: Table) -> Any:
    from sqlalchemy import func, select

    return select(func.count()).select_from(table)


def _money_columns(table: Table) -> list[Any]:
    from sqlalchemy import BigInteger

    return [c for c in table.columns if isinstance(c.type, BigInteger)]


def _measure(conn: Any, table: Table) -> TableCopy:
    from sqlalchemy import func, select

    money = _money_columns(table)
    columns = [func.count(), *(func.coalesce(func.sum(c), 0) for c in money)]
    row = conn.execute(select(*columns).select_from(table)).one()
    return TableCopy(table.name, int(row[0]), {c.name: int(v) for c, v in zip(money, row[1:], strict=True)})


def _batches(conn: Any, table: Table, size: int) -> Any:
    """The table's rows in primary-key order, as tuples in column order, ``size`` at a time."""
    from sqlalchemy import select

    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True, yield_per=size).execute(select(table).order_by(*order))
    while rows := result.fetchmany(size):
        yield [tuple(row) for row in rows]


def _insert(conn: Any, table: Table, batch: list[tuple[Any, ...]]) -> None:
    names = [c.name for c in table.columns]
    conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in batch])


def _copy_in(conn: Any, table: Table, batch: list[tuple[Any, ...]]) -> None:
    """PostgreSQL's COPY through psycopg, in the transaction of ``conn``: several times faster than INSERTs.

    Values go through each column type's bind processing first (UTC times), as an INSERT's would.
    """
    columns = list(table.columns)
    processors = [c.type.bind_processor(conn.dialect) for c in columns]
    names = ", ".join(f'"{c.name}"' for c in columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in batch:
                copy.write_row([v if p is None or v is None else p(v) for p, v in zip(processors, row, strict=True)])
    finally:
        cursor.close()


def _reset_sequences(conn: Any, tables: list[Table]) -> None:
    """Move each serial column's sequence past the highest copied id, so new rows get new ids."""
    from sqlalchemy import text

    for table in tables:
        for column in table.primary_key.columns:
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": column.name}
            ).scalar()
            if sequence is None:
                continue
            conn.execute(
                text(f'SELECT setval(:seq, COALESCE((SELECT max("{column.name}") FROM "{table.name}"), 0) + 1, false)'),
                {"seq": sequence},
            )
