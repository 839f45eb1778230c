"""Referral fraud signals: is the referral real?

Each signal is the check a referral programme runs before it pays (ReferralCandy, GrowSurf
and dub document these; docs/rules.md names the sources), computed in SQL for a set of
referrals at verification and again by the daily job:

* ``same_phone``: referrer and referred share a phone (the last 9 digits as stored);
* ``same_email``: their email local parts are the same once lower-cased, with dots and a
  ``+tag`` removed (``ann.lee+2@x`` and ``annlee@y``);
* ``same_household``: the same city and the same last name;
* ``disposable_email``: the referred email's domain is a throwaway one
  (crmcli/data/disposable_domains.txt);
* ``burst``: more than ``referrals.max_per_hour`` referrals from the referrer within one hour;
* ``refunded_purchase``: with a hold set (``referrals.hold_days``), a qualifying purchase of
  the referred customer dated before the one that verified the referral was refunded within
  the hold: buy, refund, buy again;
* ``no_repeat_purchase`` (not blocking): the referred customer has not bought again in the
  30 days after the qualifying purchase.

A referral with a blocking signal is held as ``review`` instead of ``verified``; a person
decides it (``referral verify`` or ``reject``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, exists, func, literal, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlmodel import Session

from crmcli.choices import BLOCKING_SIGNALS as BLOCKING
from crmcli.choices import REFERRAL_SIGNALS as SIGNALS
from crmcli.config import Config
from crmcli.models import Customer, Purchase, Referral, UTCDateTime, table_of
from crmcli.sql import among, bound_ids, one_of
from crmcli.values import parse_money

REPEAT_DAYS = 30  # a referred customer who has not bought again this long after the first purchase
CHUNK = 900


@lru_cache(maxsize=1)
def disposable_domains() -> frozenset[str]:
    text = resources.files("crmcli").joinpath("data/disposable_domains.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


class position(FunctionElement[int]):  # noqa: N801 - reads like the SQL function it stands for
    """Where ``needle`` first occurs in ``text`` (1-based, 0 if absent), on SQLite and PostgreSQL."""

    type = Integer()
    inherit_cache = True


@compiles(position, "sqlite")
def _position_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    text, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"instr({text}, {needle})"


@compiles(position)
def _position_default(element: Any, compiler: Any, **kw: Any) -> str:
    text, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"strpos({text}, {needle})"


class tail(FunctionElement[str]):  # noqa: N801
    """The last ``n`` characters of a text, on SQLite and PostgreSQL."""

    type = String()
    inherit_cache = True


@compiles(tail, "sqlite")
def _tail_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    text, n = (compiler.process(c, **kw) for c in element.clauses)
    return f"substr({text}, -{n})"


@compiles(tail)
def _tail_default(element: Any, compiler: Any, **kw: Any) -> str:
    text, n = (compiler.process(c, **kw) for c in element.clauses)
    return f"right({text}, {n})"


def _local_part(email: Any) -> Any:
    """The email's local part, lower case, without dots and without a ``+tag``."""
    local = func.substr(func.lower(email), 1, position(email, literal("@")) - 1)
    plus = position(local, literal("+"))
    bare = func.substr(local, 1, func.coalesce(func.nullif(plus, 0), func.length(local) + 1) - 1)
    return func.replace(bare, ".", "")


def _domain(email: Any) -> Any:
    return func.lower(func.substr(email, position(email, literal("@")) + 1))


def _surname(name: str | None) -> str | None:
    words = (name or "").split()
    return words[-1].casefold() if len(words) > 1 else None


def find_signals(session: Session, config: Config, referral_ids: Iterable[int], now: datetime) -> dict[int, list[str]]:
    """The signals each referral raises now, in SIGNALS order (referrals with none are left out)."""
    hold = config.referrals.hold_days
    params: dict[str, Any] = {
        "threshold": parse_money(config.referrals.qualifying_purchase, config.currency.minor_digits),
        "max_per_hour": config.referrals.max_per_hour,
        "hold_seconds": hold * 86400,
        "repeat_before": now - timedelta(days=REPEAT_DAYS),
    }
    ids = sorted(set(referral_ids))
    found: dict[int, set[str]] = {}
    for start in range(0, len(ids), CHUNK):
        many, params["ids"] = bound_ids(ids[start : start + CHUNK])
        for name, query in _signal_queries(many, bool(hold)):
            for rid in session.execute(query, params).scalars():
                found.setdefault(rid, set()).add(name)
        # Same household: the same city in SQL, the same last name on the few pairs it leaves.
        for rid, name_a, name_b in session.execute(_same_city(many), params):
            if _surname(name_a) is not None and _surname(name_a) == _surname(name_b):
                found.setdefault(rid, set()).add("same_household")
    return {rid: [s for s in SIGNALS if s in names] for rid, names in found.items()}


def _pair() -> tuple[Any, Any, Any, Any]:
    """The referral with its referrer (``a``) and referred customer (``b``) joined."""
    r, c = table_of(Referral), table_of(Customer)
    a, b = c.alias("referrer"), c.alias("referred")
    return r, a, b, r.join(a, a.c.id == r.c.referrer_id).join(b, b.c.id == r.c.referred_id)


@cache
def _signal_queries(many: bool, holding: bool) -> tuple[tuple[str, Any], ...]:
    """Each signal found in SQL alone, as (name, the ids of the referrals ``ids`` that raise it),
    built once: a till's sale that verifies a referral runs them all, with its values bound
    (``threshold``, ``max_per_hour``, ``hold_seconds``, ``repeat_before``)."""
    from crmcli.reports.common import epoch_seconds

    r, a, b, pair = _pair()
    p = table_of(Purchase)
    conditions: list[tuple[str, Any]] = [
        ("same_phone", and_(a.c.phone.is_not(None), b.c.phone.is_not(None), tail(a.c.phone, 9) == tail(b.c.phone, 9))),
        (
            "same_email",
            and_(a.c.email.is_not(None), b.c.email.is_not(None), _local_part(a.c.email) == _local_part(b.c.email)),
        ),
        ("disposable_email", and_(b.c.email.is_not(None), one_of(_domain(b.c.email), sorted(disposable_domains())))),
    ]
    # A burst: some hour that holds this referral holds more than max_per_hour of the referrer's.
    r1, r2 = r.alias("r1"), r.alias("r2")
    in_window = (
        select(func.count())
        .where(
            r2.c.referrer_id == r1.c.referrer_id,
            epoch_seconds(r2.c.created_at) >= epoch_seconds(r1.c.created_at),
            epoch_seconds(r2.c.created_at) <= epoch_seconds(r1.c.created_at) + 3600,
        )
        .scalar_subquery()
    )
    burst = exists().where(
        r1.c.referrer_id == r.c.referrer_id,
        epoch_seconds(r1.c.created_at) >= epoch_seconds(r.c.created_at) - 3600,
        r1.c.created_at <= r.c.created_at,
        in_window > bindparam("max_per_hour"),
    )
    conditions.append(("burst", burst))
    # A qualifying purchase before the one that verified the referral was refunded (within the
    # hold, if one is set). Only purchases dated before it count, so the signal is the same
    # whichever order the sales and the refund were recorded in: one at the same moment is not
    # before it (the ids of a moment's sales follow the order they were written in, which a
    # file and a till do not share).
    # Without a hold (hold_days 0) a refund only reopens the referral, as it always has.
    if holding:
        verifying = p.alias("verifying")
        refunded = exists().where(
            verifying.c.id == r.c.purchase_id,
            p.c.customer_id == r.c.referred_id,
            p.c.refunded_at.is_not(None),
            p.c.net_minor >= bindparam("threshold"),
            p.c.at < verifying.c.at,
            epoch_seconds(p.c.refunded_at) - epoch_seconds(p.c.at) <= bindparam("hold_seconds"),
        )
        conditions.append(("refunded_purchase", refunded))
    first, later = p.alias("first"), p.alias("later")
    no_repeat = exists().where(
        first.c.id == r.c.purchase_id,
        first.c.at <= bindparam("repeat_before", type_=UTCDateTime()),
        ~exists().where(
            later.c.customer_id == first.c.customer_id,  # the referred customer (correlates one level up)
            later.c.refunded_at.is_(None),
            later.c.id != first.c.id,
            later.c.at >= first.c.at,
        ),
    )
    conditions.append(("no_repeat_purchase", no_repeat))
    chosen = among(r.c.id, "ids", many)
    return tuple((name, select(r.c.id).select_from(pair).where(chosen, condition)) for name, condition in conditions)


@cache
def _same_city(many: bool) -> Any:
    """The referrals of ``ids`` whose two sides live in the same city, with both names (built once)."""
    r, a, b, pair = _pair()
    return (
        select(r.c.id, a.c.name, b.c.name)
        .select_from(pair)
        .where(
            among(r.c.id, "ids", many),
            a.c.city.is_not(None),
            func.lower(func.trim(a.c.city)) == func.lower(func.trim(b.c.city)),
        )
    )


def blocking(signals: Iterable[str]) -> list[str]:
    return [s for s in signals if s in BLOCKING]


def record_signals(session: Session, found: dict[int, list[str]], referral_ids: Iterable[int]) -> None:
    """Write each referral's signals (none: NULL)."""
    rows = [{"rid": rid, "found": " ".join(found.get(rid, [])) or None} for rid in referral_ids]
    if rows:
        r = table_of(Referral)
        session.execute(update(r).where(r.c.id == bindparam("rid")).values(signals=bindparam("found")), rows)


def check_referrals(session: Session, config: Config, now: datetime) -> dict[str, int]:
    """The daily check: every referral's signals again; a verified referral whose rewards are
    still held and that now raises a blocking signal goes to review."""
    r = table_of(Referral)
    ids = list(session.execute(select(r.c.id).order_by(r.c.id)).scalars())
    found = find_signals(session, config, ids, now)
    before = dict(session.execute(select(r.c.id, r.c.signals)).all())
    changed = [rid for rid in ids if (" ".join(found.get(rid, [])) or None) != before.get(rid)]
    record_signals(session, found, changed)
    held = list(
        session.execute(
            select(r.c.id).where(r.c.status == "verified", r.c.rewarded_at.is_(None), r.c.id.in_(list(found)))
        ).scalars()
    )
    to_review = [rid for rid in held if blocking(found[rid])]
    for rid in to_review:
        session.execute(
            update(r)
            .where(r.c.id == rid)
            .values(status="review", reason="held for review: " + ", ".join(blocking(found[rid])))
        )
    return {"checked": len(ids), "flagged": len(found), "changed": len(changed), "to_review": len(to_review)}
