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

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from crmcli.errors import Invalid, NotFound
from crmcli.models import Customer, table_of
from crmcli.services.codes import CODE_ALPHABET
from crmcli.services.codes import REFERRAL_CODE_LENGTH as CODE_LENGTH
from crmcli.values import normalize_phone

KINDS = ("id", "ref", "email", "phone", "code")
_CODE = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
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
    """Resolve many texts in one query (``session`` may be a Session or a Connection)."""
    wanted = {t: identifier_keys(t, region) for t in set(texts)}
    values: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for keys in wanted.values():
        for kind, value in keys:
            values[kind].add(value)
    by_key: dict[tuple[str, str], Any] = {}
    t = table_of(Customer)
    columns = {"id": t.c.id, "ref": t.c.ref, "email": t.c.email, "phone": t.c.phone, "code": t.c.referral_code}
    position = {"id": 0, "email": 2, "phone": 3, "ref": 4, "code": 5}
    for kind in KINDS:  # one query per kind of key, each answered by its own unique index
        if not values[kind]:
            continue
        query = select(t.c.id, t.c.name, t.c.email, t.c.phone, t.c.ref, t.c.referral_code, t.c.erased_at)
        if kind == "id":
            query = query.where(t.c.id.in_([int(v) for v in values[kind]]))
        else:  # an erased customer keeps only its id
            query = query.where(columns[kind].in_(values[kind]), t.c.erased_at.is_(None))
        n = position[kind]
        for row in session.execute(query):
            by_key[(kind, str(row[0]) if n == 0 else row[n])] = row
    result: dict[str, Match] = {}
    for text, keys in wanted.items():
        if len(keys) == 1:  # a till's ref, an email, an explicit form: one key, one answer
            row = by_key.get(keys[0])
            result[text] = Match(text.strip(), [] if row is None else [(keys[0][0], row)])
            continue
        found: dict[int, tuple[str, Any]] = {}
        for key in keys:
            row = by_key.get(key)
            if row is not None and row[0] not in found:
                found[row[0]] = (key[0], row)
        result[text] = Match(text.strip(), list(found.values()))
    return result


def find_customer(session: Session, text: str | int, region: str | None = None) -> Customer:
    """The one customer ``text`` names, or a one-line error saying why not."""
    match = resolve(session, [str(text)], region)[str(text)]
    if match.customer is None:
        if match.found:
            raise Invalid(match.problem())
        raise NotFound(match.problem(), subject="customer", key=match.text)
    customer = session.get(Customer, match.customer.id)
    assert customer is not None
    return customer
