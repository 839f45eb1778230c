"""Building blocks for set-based statements: conditions on sets of values written so that a
statement runs without SQLAlchemy's per-execution rewrite, and an upsert for both databases.

The rules are set-based: one statement takes the ids of an import's thousand customers or a
command's one. SQLAlchemy renders ``column IN (...)`` with a list (an "expanding"
parameter) by rewriting the compiled SQL on every execution, which costs about as much as
the statement itself on SQLite (~20 µs). A till's sale runs a handful of such statements for
one customer, and a batch a thousand sales, so for one id these helpers write ``column = ?``
instead, and constant lists as plain parameters (``IN (?, ?, ?)``): the SQL is compiled once
and reused as it is. (Statements that run once per command or per import chunk keep plain
``IN`` lists: there the rewrite costs nothing that shows.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, literal


def bound_ids(ids: Sequence[Any]) -> tuple[bool, Any]:
    """``(many, value)`` for a statement built with :func:`among`: a list of one binds its
    single value (and the statement's ``column = ?`` form), any other list itself."""
    return (False, ids[0]) if len(ids) == 1 else (True, list(ids))


def among(column: Any, name: str, many: bool) -> ColumnElement[bool]:
    """``column`` is one of the values bound to ``name`` (see :func:`bound_ids`): for a
    statement built once and run with one id or many."""
    return column.in_(bindparam(name, expanding=True)) if many else column == bindparam(name)


def is_in(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values`` for a statement built for this call: ``column = value`` for one."""
    return column == values[0] if len(values) == 1 else column.in_(list(values))


def one_of(column: Any, constants: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (?, ?, …)`` for a fixed list (kinds, statuses), as plain parameters."""
    return column.in_([literal(value, column.type) for value in constants])


def upsert(session: Any, table: Table, keys: Sequence[str]) -> Any:
    """``INSERT`` of rows that replace the row with the same ``keys`` if there is one (two
    transactions writing the same derived row at once: the later one's stays)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement: Any = dialect.insert(table)
    others = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=others)
