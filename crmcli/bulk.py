"""Batched inserts at the speed of the driver.

On SQLite the rows go straight to the DB-API ``executemany`` (SQLAlchemy's per-value
type processing costs more than SQLite's own insert); times are written in exactly
the form SQLAlchemy's SQLite ``DateTime`` stores and reads back (naive UTC,
``YYYY-MM-DD HH:MM:SS.ffffff``). Other databases take the SQLAlchemy Core path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select


def sqlite_time(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores for an aware datetime, in UTC."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def insert_rows(connection: Any, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with at least ``columns``) into ``table`` in one executemany."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), [{c: row[c] for c in columns} for row in rows])
        return
    times = _time_columns(table, columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    texts: dict[datetime, str] = {}  # (most rows of a batch share their times: each is formatted once)

    def text(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        found = texts.get(moment)
        if found is None:
            found = texts[moment] = sqlite_time(moment)
        return found

    values = [tuple(text(row[c]) if c in times else row[c] for c in columns) for row in rows]
    connection.exec_driver_sql(sql, values)


def insert_tuples(connection: Any, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT ``rows`` (values in the order of ``columns``) into ``table`` in one executemany."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    timed = _time_columns(table, columns)
    times = [i for i, c in enumerate(columns) if c in timed]
    connection.exec_driver_sql(sql, [_with_times(row, times) for row in rows] if times else [tuple(r) for r in rows])


IN_CHUNK = 10_000  # values per IN-list: well under SQLite's 32,766 parameters


def sqlite_rows_in(conn: Any, select_from: str, column: str, values: Iterable[Any], where: str = "") -> Iterator[Any]:
    """The rows of ``SELECT … FROM … WHERE column IN (values) [AND where]`` straight through the
    driver, on SQLite only: SQLAlchemy's compiling of an IN-list of thousands of values costs
    more than SQLite's answering it (each look-up is one probe of the column's index)."""
    wanted = list(values)
    extra = f" AND {where}" if where else ""
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = tuple(wanted[start : start + IN_CHUNK])
        yield from conn.exec_driver_sql(f"{select_from} WHERE {column} IN ({','.join('?' * len(chunk))}){extra}", chunk)


def rows_in(conn: Any, columns: Sequence[Any], key: Any, values: Iterable[Any], chunk: int = 5000) -> Iterator[Any]:
    """The ``columns`` of the rows whose ``key`` column is one of ``values``, on any database:
    on SQLite through :func:`sqlite_rows_in`, elsewhere as Core IN-lists of ``chunk`` values."""
    wanted = list(values)
    if conn.dialect.name == "sqlite":
        shown = ", ".join(c.name for c in columns)
        yield from sqlite_rows_in(conn, f"SELECT {shown} FROM {key.table.name}", key.name, wanted)
        return
    for start in range(0, len(wanted), chunk):
        yield from conn.execute(select(*columns).where(key.in_(wanted[start : start + chunk])))


def _with_times(row: Sequence[Any], times: list[int]) -> tuple[Any, ...]:
    values = list(row)
    last: Any = None
    text = ""
    for i in times:
        value = values[i]
        if value is not None:
            if value is not last:  # a sale paid at the till: its payment time is its sale time
                last, text = value, sqlite_time(value)
            values[i] = text
    return tuple(values)


def _time_columns(table: Table, columns: Sequence[str]) -> set[str]:
    from crmcli.models import UTCDateTime

    return {c for c in columns if isinstance(table.c[c].type, UTCDateTime)}
