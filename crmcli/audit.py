"""The audit log: every write transaction records, in the same transaction, when, who (the OS
user), which command, which records and which fields changed (old -> new), personal values
masked.

The CLI names the command on the :class:`~crmcli.db.Database`; each write session then
watches its own ORM changes (SQLAlchemy session events) and writes one ``audit_entry`` row,
with an ``audit_customer`` row per customer it touched, just before it commits. Set-based
work (imports, the rules' replays) adds a note instead of one line per row: an import is one
entry with its counts. Statements the ORM does not see (a set-based INSERT, UPDATE or DELETE)
are noticed on their connection (:func:`instrument`) and listed by table, so no transaction
that wrote goes without its entry. Personal values (names, emails, phones, free text) are never stored,
so an erased customer's data does not live on here.
"""

from __future__ import annotations

import functools
import getpass
import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, inspect, select
from sqlmodel import Session, col

from crmcli.models import AuditCustomer, AuditEntry, table_of

PERSONAL = frozenset(
    {"name", "email", "phone", "company", "city", "note", "summary", "resolution", "reason", "ref", "birthday"}
)
MASK = "***"
MAX_RECORDS = 200  # records listed in one entry; the count says how many there were
CUSTOMER_ROWS = 5000  # audit_customer rows written per statement
KEY = "crmcli_audit"


@functools.cache
def os_user() -> str:
    """Who runs this process (asked once per process: it does not change)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container, a service account)
        return "unknown"


WRITTEN = "crmcli_audit_written"  # on a connection: table -> kinds of statement, this transaction
_DML = re.compile(r'\s*(INSERT|UPDATE|DELETE)\b(?:\s+OR\s+\w+)?(?:\s+INTO|\s+FROM)?\s+"?(\w+)', re.IGNORECASE)
UNAUDITED = frozenset({"audit_entry", "audit_customer", "alembic_version"})


def instrument(engine: Any) -> None:
    """Notice every INSERT, UPDATE and DELETE sent on the engine's connections, by table, for
    the entry of the transaction (the ORM's own changes are also recorded field by field)."""
    event.listen(engine, "begin", _fresh)
    event.listen(engine, "after_cursor_execute", _noticed)


def _fresh(conn: Any) -> None:
    conn.info.pop(WRITTEN, None)  # a transaction rolled back on this connection left its notes


def _noticed(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
    found = _DML.match(statement)
    if found is None:
        return
    kind, table = found.group(1).lower(), found.group(2).lower()
    if table in UNAUDITED or table not in _schema_tables():  # (an import's TEMP staging tables)
        return
    conn.info.setdefault(WRITTEN, {}).setdefault(table, set()).add(kind)


@functools.cache
def _schema_tables() -> frozenset[str]:
    from sqlmodel import SQLModel

    return frozenset(SQLModel.metadata.tables)


def _written(session: Session) -> dict[str, set[str]]:
    """What the transaction wrote in SQL since the last entry, taken off its connection."""
    written: dict[str, set[str]] = session.connection().info.pop(WRITTEN, {})
    return written


def watch(session: Session, command: str) -> None:
    """Record this write session's changes as one audit entry when it commits."""
    _listen()
    session.info[KEY] = _trail(command)


@functools.cache
def _listen() -> None:
    """The session events, listened to once per process on the session class (a batch opens a
    session per command): they do nothing for a session that is not watched."""
    event.listen(Session, "after_flush", _collect)
    event.listen(Session, "before_commit", _write)
    event.listen(Session, "after_rollback", _forget)


def _trail(command: str) -> dict[str, Any]:
    return {"command": command, "records": [], "index": {}, "customers": set(), "notes": {}, "count": 0}


def begin_entry(session: Session, command: str) -> None:
    """Start the entry of the next command in a transaction several commands share (a batch
    run all-or-nothing): each command gets its own entry, written by :func:`end_entry`."""
    watch(session, command)
    _written(session)  # what an earlier command undid in its savepoint is not this one's


def end_entry(session: Session) -> None:
    """Write the current command's entry now, in the shared transaction, rather than at its commit."""
    _write(session)


def _forget(session: Session) -> None:
    """A rolled-back change (a dry run, a refusal) did not happen: nothing of it is recorded."""
    trail = session.info.get(KEY)
    if trail is not None:
        trail.update(records=[], index={}, customers=set(), notes={}, count=0)


def note(session: Session, **facts: Any) -> None:
    """Add what set-based work did (counts, a summary) to the entry; no-op when not audited."""
    trail = session.info.get(KEY)
    if trail is not None:
        trail["notes"].update({k: _plain(k, v) for k, v in facts.items()})


def touch(session: Session, customer_ids: Any) -> None:
    """Customers the transaction changed in SQL the ORM did not see."""
    trail = session.info.get(KEY)
    if trail is not None:
        trail["customers"].update(int(c) for c in customer_ids)


def _plain(field: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(k, v) for k, v in value.items()}
    if value is None:
        return None
    if field in PERSONAL:
        return MASK
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _collect(session: Session, _context: Any) -> None:
    trail = session.info.get(KEY)
    if trail is None:
        return
    for op, objects in (("insert", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objects:
            if isinstance(obj, AuditEntry | AuditCustomer) or not hasattr(obj, "__tablename__"):
                continue
            state = inspect(obj)
            fields: dict[str, Any] = {}
            for attr in state.mapper.column_attrs:
                history = state.attrs[attr.key].history
                if op == "update" and history.has_changes():
                    old = history.deleted[0] if history.deleted else None
                    new = history.added[0] if history.added else None
                    fields[attr.key] = [_plain(attr.key, old), _plain(attr.key, new)]
                elif op == "insert" and attr.key != "id":
                    value = getattr(obj, attr.key)
                    if value is not None:
                        fields[attr.key] = _plain(attr.key, value)
            if op == "update" and not fields:
                continue
            _add_record(trail, obj.__tablename__, getattr(obj, "id", None), op, fields, functools.partial(getattr, obj))


def record_insert(session: Session, table: str, row_id: int, values: dict[str, Any]) -> None:
    """A row inserted in SQL rather than through the ORM, recorded as the ORM's flush would
    record it: a hot path (a sale) writes one INSERT and still leaves the same entry."""
    trail = session.info.get(KEY)
    if trail is not None:
        fields = {k: _plain(k, v) for k, v in values.items() if k != "id" and v is not None}
        _add_record(trail, table, row_id, "insert", fields, values.get)


def _add_record(
    trail: dict[str, Any], table: str, row_id: Any, op: str, fields: dict[str, Any], column: Callable[..., Any]
) -> None:
    """One changed record into the trail, with the customers it names (``column(name, None)``
    gives the record's value of a column)."""
    key = (table, row_id, op)
    earlier = trail["index"].get(key)
    if earlier is not None:  # the same record changed again in a later flush: one record
        for name, change in fields.items():
            before = earlier.setdefault("fields", {}).get(name)
            earlier["fields"][name] = [before[0], change[1]] if op == "update" and before else change
        return
    trail["count"] += 1
    if len(trail["records"]) < MAX_RECORDS:
        record = {"table": table, "id": row_id, "op": op, **({"fields": fields} if fields else {})}
        trail["records"].append(record)
        trail["index"][key] = record
    for attr in ("customer_id", "referrer_id", "referred_id"):
        named = column(attr, None)
        if named is not None:
            trail["customers"].add(named)
    if table == "customer" and row_id is not None:
        trail["customers"].add(row_id)


def _write(session: Session) -> None:
    if KEY not in session.info or session.in_nested_transaction():  # a savepoint is not the commit
        return
    session.flush()  # the last changes reach _collect first
    trail = session.info.pop(KEY)
    written = _written(session)
    if not trail["count"] and not trail["notes"] and not written:
        return  # a read that happened to hold a write transaction
    details = {"records": trail["records"], "changed": trail["count"], **trail["notes"]}
    if written:
        details["written"] = {table: sorted(kinds) for table, kinds in sorted(written.items())}
    connection = session.connection()
    entry = connection.execute(
        _inserts()[0],
        {
            "at": datetime.now().astimezone(),
            "os_user": os_user(),
            "command": trail["command"],
            "details": json.dumps(details, ensure_ascii=False, sort_keys=True),
        },
    ).inserted_primary_key
    customers = sorted(trail["customers"])
    if entry is None:
        return
    for start in range(0, len(customers), CUSTOMER_ROWS):  # an import names up to millions: memory stays flat
        rows = [{"audit_id": entry[0], "customer_id": c} for c in customers[start : start + CUSTOMER_ROWS]]
        connection.execute(_inserts()[1], rows)


@functools.cache
def _inserts() -> tuple[Any, Any]:
    """The two INSERTs of an entry, built once (a batch writes one entry per command)."""
    return insert(table_of(AuditEntry)), insert(table_of(AuditCustomer))


def list_entries(
    *,
    session: Session,
    customer_id: int | None = None,
    since: datetime | None = None,
    command: str | None = None,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """Audit entries, newest first."""
    query = select(AuditEntry)
    if customer_id is not None:
        query = query.where(
            col(AuditEntry.id).in_(
                select(col(AuditCustomer.audit_id)).where(col(AuditCustomer.customer_id) == customer_id)
            )
        )
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if command:
        query = query.where(col(AuditEntry.command).contains(command))
    query = query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
    if limit:
        query = query.limit(limit)
    return [
        {"id": e.id, "at": e.at, "user": e.os_user, "command": e.command, "details": json.loads(e.details)}
        for e in session.execute(query).scalars()
    ]
