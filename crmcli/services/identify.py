"""Which customer a piece of text names: one rule for every CUSTOMER argument and file cell.

A text is tried as each identifier it can be: the external ``ref``, an email, a phone
number (as typed, and normalised), a referral ``code`` and a numeric ``id``. When the
matches are one customer, that is the customer; when they are two different customers
by different keys (customer 1, and the customer whose ref is ``1``), the text is
refused, naming both, and the explicit forms ``id:``, ``ref:``, ``email:``, ``phone:``
and ``code:`` say which is meant. The same text resolves the same way on the command
line and in every import, and :func:`resolve` does a whole batch in one query.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from crmcli.errors import Invalid, NotFound
from crmcli.models import Customer, table_of
from crmcli.services.codes import REFERRAL_CODE as _CODE
from crmcli.services.codes import REFERRAL_CODE_LENGTH as CODE_LENGTH
from crmcli.sql import among, bound_ids
from crmcli.values import normalize_phone

KINDS = ("id", "ref", "email", "phone", "code")
_PHONE_START = frozenset("+(0123456789")
_PHONE_LIKE = re.compile(r"\+?[\d\s().-]{5,30}")  # digits as people type them; a till's "C0001" is not one
MAX_ID = 2**63 - 1


def identifier_keys(text: str, region: str | None = None) -> list[tuple[str, str]]:
    """The (kind, value) pairs ``text`` may stand for; one pair for an explicit form."""
    text = text.strip()
    kind, sep, value = text.partition(":")
    if sep and kind.strip().lower() in KINDS:
        return _keys_for(kind.strip().lower(), value.strip(), region)
    keys = [("ref", text)]
    if "@" in text:
        keys.append(("email", text.lower()))
        return keys
    if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
        keys.append(("id", str(int(text))))
    if len(text) == CODE_LENGTH and _CODE.fullmatch(text.upper()):
        keys.append(("code", text.upper()))
    # A phone starts with a digit, + or (: a till's "C0001" is not tried (regexes cost at a million rows).
    if text[:1] in _PHONE_START and _PHONE_LIKE.fullmatch(text):
        keys += _keys_for("phone", text, region)
    return keys


def _keys_for(kind: str, value: str, region: str | None) -> list[tuple[str, str]]:
    if kind == "email":
        return [("email", value.lower())]
    if kind == "code":
        return [("code", value.upper())]
    if kind == "id":
        return [("id", str(int(value)))] if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID else []
    if kind == "phone":
        keys = [("phone", value)]
        try:
            keys.append(("phone", normalize_phone(value, region)))
        except Invalid:
            pass
        return keys
    return [(kind, value)]


@dataclass(frozen=True, slots=True)
class Match:
    """What one text resolved to: a customer row, nothing, or several customers."""

    text: str
    found: list[tuple[str, Any]]  # (kind that matched, customer row), one per customer

    @property
    def customer(self) -> Any | None:
        return self.found[0][1] if len(self.found) == 1 else None

    def problem(self) -> str:
        if not self.found:
            return f"no customer {self.text!r}"
        named = " and ".join(f"customer {row.id} by its {kind}" for kind, row in self.found)
        return f"{self.text!r} matches {named}: write id:, ref:, email:, phone: or code: before it to say which"


def resolve(session: Session | Any, texts: Iterable[str], region: str | None = None) -> dict[str, Match]:
    """Resolve many texts in one query per kind of key (``session`` may be a Session or a Connection)."""
    wanted = {t: identifier_keys(t, region) for t in set(texts)}
    by_key = _lookup(session, wanted, full=True)
    result: dict[str, Match] = {}
    for text, keys in wanted.items():
        result[text] = Match(text.strip(), _found(keys, by_key))
    return result


def resolve_ids(
    session: Session | Any, texts: Iterable[str], region: str | None = None
) -> tuple[dict[str, int], dict[str, Match]]:
    """:func:`resolve` for a batch of file cells: the customer id of each text that names exactly
    one customer, and the others as :class:`Match` (for their messages). Reads only ids and keys."""
    wanted = {t: identifier_keys(t, region) for t in set(texts)}
    by_key = _lookup(session, wanted, full=False)
    ids: dict[str, int] = {}
    problems: dict[str, Match] = {}
    for text, keys in wanted.items():
        if len(keys) == 1 and (row := by_key.get(keys[0])) is not None:  # the usual cell: one key, found
            ids[text] = row[0]
            continue
        found = _found(keys, by_key)
        if len(found) == 1:
            ids[text] = found[0][1][0]
        else:
            problems[text] = Match(text.strip(), found)
    return ids, problems


def _found(keys: list[tuple[str, str]], by_key: dict[tuple[str, str], Any]) -> list[tuple[str, Any]]:
    """(kind that matched, row) per customer the keys find, in the order of the keys."""
    if len(keys) == 1:  # a till's ref, an email, an explicit form: one key, one answer
        row = by_key.get(keys[0])
        return [] if row is None else [(keys[0][0], row)]
    found: dict[int, tuple[str, Any]] = {}
    for key in keys:
        row = by_key.get(key)
        if row is not None and row.id not in found:
            found[row.id] = (key[0], row)
    return list(found.values())


SQLITE_COLUMNS = {"id": "id", "ref": "ref", "email": "email", "phone": "phone", "code": "referral_code"}


def _dialect(session: Session | Any) -> str:
    return str(session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name)


def _lookup_sqlite(session: Session | Any, kind: str, values: set[str], by_key: dict[Any, Any]) -> None:
    """:func:`_lookup` of ids and keys straight through the driver on SQLite: compiling an
    IN-list of thousands of values costs more than running it."""
    from crmcli.bulk import sqlite_rows_in

    conn = session.connection() if isinstance(session, Session) else session
    column = SQLITE_COLUMNS[kind]
    erased = "" if kind == "id" else "erased_at IS NULL"  # an erased customer keeps only its id
    wanted = [int(v) for v in values] if kind == "id" else values
    for row in sqlite_rows_in(conn, f"SELECT id, {column} FROM customer", column, wanted, erased):
        by_key[(kind, str(row[0]) if kind == "id" else row[1])] = row


FULL_POSITION = {"email": 2, "phone": 3, "ref": 4, "code": 5}  # of each key in the full row


def _lookup(session: Session | Any, wanted: dict[str, list[tuple[str, str]]], *, full: bool) -> dict[Any, Any]:
    """The customer row of each (kind, value) key that names one: one query per kind of key, each
    answered by its own unique index. ``full`` reads the columns a :class:`Match` shows, else
    only the id and the key."""
    values: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for keys in wanted.values():
        for kind, value in keys:
            values[kind].add(value)
    by_key: dict[tuple[str, str], Any] = {}
    t = table_of(Customer)
    columns = {"id": t.c.id, "ref": t.c.ref, "email": t.c.email, "phone": t.c.phone, "code": t.c.referral_code}
    for kind in KINDS:
        if not values[kind]:
            continue
        if not full and _dialect(session) == "sqlite":
            _lookup_sqlite(session, kind, values[kind], by_key)
            continue
        shown: tuple[Any, ...]
        if full:
            shown = (t.c.id, t.c.name, t.c.email, t.c.phone, t.c.ref, t.c.referral_code, t.c.erased_at)
        else:
            shown = (t.c.id, columns[kind].label("key"))
        n = 0 if kind == "id" else FULL_POSITION[kind] if full else 1
        query = select(*shown)
        if kind == "id":
            query = query.where(t.c.id.in_([int(v) for v in values[kind]]))
        else:  # an erased customer keeps only its id
            query = query.where(columns[kind].in_(values[kind]), t.c.erased_at.is_(None))
        for row in session.execute(query):
            by_key[(kind, str(row[0]) if n == 0 else row[n])] = row
    return by_key


def find_customer(session: Session, text: str | int, region: str | None = None) -> Customer:
    """The one customer ``text`` names, or a one-line error saying why not.

    One query loads the customers every key of the text names (what :func:`resolve` would
    find, as ORM objects), built once per combination of kinds of key."""
    keys = identifier_keys(str(text), region)
    kinds = tuple(sorted({kind for kind, _ in keys}))
    by_key: dict[tuple[str, str], Any] = {}
    if kinds:
        bound = {kind: bound_ids([value for k, value in keys if k == kind]) for kind in kinds}
        many = tuple(bound[kind][0] for kind in kinds)
        params = {kind: value for kind, (_, value) in bound.items()}
        for row in session.execute(_customers_by(kinds, many), params).scalars():
            for kind in kinds:
                value = getattr(row, ENTITY_FIELD[kind])
                if value is not None and (kind == "id" or row.erased_at is None):
                    by_key[(kind, str(value))] = row
    match = Match(str(text).strip(), _found(keys, by_key))
    if match.customer is None:
        if match.found:
            raise Invalid(match.problem())
        raise NotFound(match.problem(), subject="customer", key=match.text)
    customer: Customer = match.customer
    return customer


def customer_name(session: Session, customer_id: int) -> str | None:
    """The name of a customer a record names by id (for the row a command shows)."""
    t = table_of(Customer)
    name: str | None = session.execute(select(t.c.name).where(t.c.id == customer_id)).scalar_one_or_none()
    return name


ENTITY_FIELD = {"id": "id", "ref": "ref", "email": "email", "phone": "phone", "code": "referral_code"}


@functools.cache
def _customers_by(kinds: tuple[str, ...], many: tuple[bool, ...]) -> Any:
    """Customers whose key of each kind is among the values bound to that kind's name (see
    :func:`crmcli.sql.bound_ids`: usually one value)."""
    t = table_of(Customer)
    conditions = []
    for kind, several in zip(kinds, many, strict=True):
        column = t.c[ENTITY_FIELD[kind]]
        found = among(column, kind, several)
        # an erased customer keeps only its id
        conditions.append(found if kind == "id" else and_(found, t.c.erased_at.is_(None)))
    return select(Customer).where(or_(*conditions))


def customer_completions(session: Session, prefix: str, limit: int = 20) -> list[str]:
    """Emails and refs of live customers that start with ``prefix``, for shell completion:
    a range over each unique index, so it stays fast on a large database."""
    t = table_of(Customer)
    found: list[str] = []
    for column, text in ((t.c.email, prefix.lower()), (t.c.ref, prefix)):
        query = select(column).where(column.is_not(None), t.c.erased_at.is_(None))
        if text:
            query = query.where(column >= text, column < text + "\U0010ffff")
        found += session.execute(query.order_by(column).limit(limit)).scalars()
    return sorted(dict.fromkeys(found))[:limit]
