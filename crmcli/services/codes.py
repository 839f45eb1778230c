"""Codes people read aloud: referral codes and coupon codes, one generator for both."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlmodel import Session

from crmcli.bulk import rows_in

# No 0/O or 1/I. 256 is a multiple of the 32 letters, so a random byte modulo 32 is unbiased.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CHUNK = 5000
REFERRAL_CODE_LENGTH = 8
REFERRAL_CODE = re.compile(f"[{CODE_ALPHABET}]{{{REFERRAL_CODE_LENGTH}}}")  # what referral_code() makes


def random_code(length: int, *, group: int | None = None) -> str:
    """``length`` random letters (5 bits each), split by ``-`` every ``group`` letters."""
    raw = "".join(CODE_ALPHABET[b % 32] for b in secrets.token_bytes(length))
    if not group:
        return raw
    return "-".join(raw[i : i + group] for i in range(0, length, group))


def referral_code() -> str:
    """8 letters (40 bits): short enough to say on the phone."""
    return random_code(REFERRAL_CODE_LENGTH)


def coupon_code() -> str:
    """10 letters in two groups (50 bits): not guessable, easy to read out."""
    return random_code(10, group=5)


def unused_codes(session: Session | Any, column: Any, count: int, make: Callable[[], str]) -> list[str]:
    """``count`` distinct new codes that ``column`` does not hold yet: one query per few thousand
    (``session``: a Session or a Connection)."""
    if count <= 0:
        return []
    conn = session if isinstance(session, Connection) else session.connection()
    codes: set[str] = set()
    while len(codes) < count:
        fresh = {make() for _ in range(count - len(codes))} - codes
        fresh -= {code for (code,) in rows_in(conn, (column,), column, fresh, CHUNK)}
        codes |= fresh
    return list(codes)
