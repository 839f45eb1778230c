"""The points ledger: a timeline of entries whose sum up to any moment is the balance then.

Every rule that moves points lives here, in one set-based form that takes a set of
purchase or customer ids; a command passes one id, an import a batch.

Two kinds of entries are kept:

* facts, written once: points earned on a sale (``earn``), points spent on a sale or
  redeemed by hand (``redeem``), given by hand (``adjust``), for tenure (``tenure``),
  as a referral reward (``referral``), and points given back when a sale that used
  them is refunded (``refund``);
* removals the rules derive from the facts: the late-payment ``reset``, the
  ``reversal`` of points a refunded sale had earned, and the ``expire`` of points
  older than ``points.expire_after_days``. They depend on the whole
  timeline, so :func:`settle_points` recomputes them by replaying it whenever a
  customer's history changes. Whatever order facts arrive in (a backdated sale, a
  payment in a later file), the ledger is the one the facts in time order give.

The replay keeps lots (what each positive entry still holds) and spends the oldest
first (FIFO). A spend the timeline cannot cover is refused: no balance is ever
negative at any moment.
"""

from __future__ import annotations

import calendar
import functools
import itertools
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlmodel import Session, col

from crmcli.audit import touch
from crmcli.config import Config
from crmcli.errors import Invalid
from crmcli.models import Customer, PointsEntry, PointsSettled, Purchase, UTCDateTime, table_of
from crmcli.sql import among, bound_ids, is_in, one_of, upsert
from crmcli.values import utcnow

FACTS = ("earn", "redeem", "adjust", "tenure", "referral", "refund", "birthday", "apology")
REMOVALS = ("reset", "reversal", "expire")
KINDS = FACTS + REMOVALS
CHUNK = 900  # ids per IN-list: under SQLite's old 999-variable limit
ACCRUE_BATCH = 5000


# --- conversions -------------------------------------------------------------------


def points_for_spend(net_minor: int, config: Config) -> int:
    """Points earned on a net amount: whole points only, rounded down (a free order earns none)."""
    units = Decimal(net_minor).scaleb(-config.currency.minor_digits)
    return int((units * config.points.per_currency_unit).to_integral_value(rounding=ROUND_FLOOR))


def _earn_ratio(config: Config) -> tuple[int, int]:
    """:func:`points_for_spend` as a fraction of the net amount in minor units (floored)."""
    num, den = config.points.per_currency_unit.as_integer_ratio()
    return num, den * 10**config.currency.minor_digits


def _earn_sql(net: Any, ratio: tuple[int, int]) -> Any:
    """:func:`points_for_spend` as SQL, for set-based inserts (integer arithmetic, floored)."""
    return (net * ratio[0]) // ratio[1]


def points_value_minor(points: int, config: Config) -> int:
    """What ``points`` are worth in minor units, rounded down."""
    value = Decimal(points) * config.points.value_per_point
    return int(value.scaleb(config.currency.minor_digits).to_integral_value(rounding=ROUND_FLOOR))


# --- the timeline --------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    at: datetime
    delta: int
    kind: str
    purchase_id: int | None = None


@dataclass(frozen=True)
class Removal:
    """A derived removal: ``cap`` None takes every point held (a reset), else at most ``cap``."""

    at: datetime
    kind: str
    cap: int | None
    reason: str
    purchase_id: int | None = None


@dataclass(frozen=True)
class Expiry:
    """Points expire at the end of the day (business calendar) they are ``days`` days old."""

    days: int
    tz: ZoneInfo

    def at(self, earned: datetime) -> datetime:
        day = earned.astimezone(self.tz).date() + timedelta(days=self.days)
        return datetime.combine(day, time.max, tzinfo=self.tz).astimezone(UTC)

    @classmethod
    def of(cls, config: Config) -> Expiry | None:
        days = config.points.expire_after_days
        return cls(days, config.tz) if days else None


@dataclass
class Lot:
    at: datetime
    left: int
    purchase_id: int | None
    expires: datetime | None = None


@dataclass
class Replay:
    """The outcome of replaying one customer's timeline."""

    removals: list[tuple[Removal, int]] = field(default_factory=list)
    short: tuple[Fact, int] | None = None  # the first spend that found too few points, and what was there


class ShortOfPoints(Invalid):
    """A spend the customer's timeline cannot cover: no balance is negative at any moment."""

    def __init__(self, customer_id: int, spend: Fact, held: int, tz: ZoneInfo) -> None:
        how = "redeemed by hand" if spend.purchase_id is None else "spent"
        super().__init__(
            f"customer {customer_id} would have {held} points on {spend.at.astimezone(tz):%Y-%m-%d %H:%M}, "
            f"fewer than the {-spend.delta} {how} then"
        )
        self.customer_id = customer_id
        self.spend = spend
        self.held = held


EXPIRE_RANK = (2, "expire")  # where an expiry sorts among the events of its moment: with the removals


def replay(
    facts: Iterable[Fact],
    removals: Iterable[Removal],
    *,
    expiry: Expiry | None = None,
    until: datetime | None = None,
) -> Replay:
    """Replay a customer's facts and removals in time order.

    At one moment, points arrive before they are spent (except a sale's own points, which
    arrive after that sale's spend) and removals come last. Spends
    take the oldest lots first; a reset takes every lot held (all were earned by then);
    a reversal takes from its own sale's lot first, then the oldest. With ``expiry``,
    what a lot still holds when it reaches its age is removed (``expire``), for the
    expiries up to ``until`` (default: up to the last event).
    """
    # Recording order must not matter, so ties at one moment are broken by what the entries are.
    # A sale that spends points earns its own after the spend: they cannot pay for it.
    facts = list(facts)
    spending = {f.purchase_id for f in facts if f.delta < 0 and f.purchase_id is not None}
    # (rank: arrivals 0, spends 1, a spending sale's own earn 1.5, removals 2)
    events: list[tuple[Any, ...]] = [
        (
            f.at,
            1 if f.delta < 0 else 1.5 if spending and f.kind == "earn" and f.purchase_id in spending else 0,
            f.kind,
            f.purchase_id or 0,
            f.delta,
            f,
        )
        for f in facts
    ]
    events += [(r.at, 2, r.kind, r.purchase_id or 0, r.cap or 0, r) for r in removals]
    events.sort(key=lambda e: e[:5])
    lots: list[Lot] = []
    result = Replay()
    for *key, event in events:
        if expiry is not None:
            _expire(lots, result, expiry, lambda at, key=tuple(key[:3]): (at, *EXPIRE_RANK) < key)
        if isinstance(event, Fact):
            if event.delta > 0:
                lots.append(Lot(event.at, event.delta, event.purchase_id, expiry.at(event.at) if expiry else None))
                continue
            held = sum(lot.left for lot in lots)
            if held < -event.delta:
                result.short = result.short or (event, held)
                _take(lots, held)
            else:
                _take(lots, -event.delta)
            continue
        held = sum(lot.left for lot in lots)
        amount = held if event.cap is None else min(event.cap, held)
        if amount > 0:
            _take(lots, amount, first=event.purchase_id)
            result.removals.append((event, amount))
    if expiry is not None:
        _expire(lots, result, expiry, lambda at: until is None or at <= until)
    return result


def _expire(lots: list[Lot], result: Replay, expiry: Expiry, due: Any) -> None:
    """Remove what the lots whose expiry is ``due`` still hold: one entry per moment, oldest first."""
    while lots:
        first = min((lot.expires for lot in lots if lot.expires is not None), default=None)
        if first is None or not due(first):
            return
        amount = sum(lot.left for lot in lots if lot.expires == first)
        earned = min(lot.at for lot in lots if lot.expires == first).astimezone(expiry.tz)
        lots[:] = [lot for lot in lots if lot.expires != first]
        reason = f"points earned on {earned:%Y-%m-%d} expired after {expiry.days} days"
        result.removals.append((Removal(first, "expire", amount, reason), amount))


def _take(lots: list[Lot], amount: int, *, first: int | None = None) -> None:
    """Take ``amount`` points: from the lot of purchase ``first`` if given, then oldest first."""
    order = sorted(range(len(lots)), key=lambda i: (lots[i].purchase_id != first or first is None, i))
    for i in order:
        if amount == 0:
            break
        used = min(lots[i].left, amount)
        lots[i].left -= used
        amount -= used
    lots[:] = [lot for lot in lots if lot.left > 0]


# --- reading -------------------------------------------------------------------------


def lock_customer(session: Session, customer_id: int) -> None:
    """Serialise writers of one customer's ledger (row lock on PostgreSQL; SQLite's
    BEGIN IMMEDIATE already serialises every writer, so there it is no statement at all)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    session.execute(select(col(Customer.id)).where(col(Customer.id) == customer_id).with_for_update())


def balance(session: Session, customer_id: int, at: datetime | None = None) -> int:
    """The balance at ``at`` (default: everything recorded): the sum of entries dated no later."""
    query = select(func.coalesce(func.sum(col(PointsEntry.delta)), 0)).where(
        col(PointsEntry.customer_id) == customer_id
    )
    if at is not None:
        query = query.where(col(PointsEntry.at) <= at)
    return int(session.execute(query).scalar_one())


def ledger(
    session: Session, customer_id: int, *, limit: int | None = None, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """The entries, newest first."""
    query = select(PointsEntry).where(col(PointsEntry.customer_id) == customer_id)
    if as_of is not None:
        query = query.where(col(PointsEntry.at) <= as_of)
    query = query.order_by(col(PointsEntry.at).desc(), col(PointsEntry.id).desc())
    if limit:
        query = query.limit(limit)
    return [
        {"id": e.id, "at": e.at, "delta": e.delta, "kind": e.kind, "reason": e.reason, "purchase_id": e.purchase_id}
        for e in session.execute(query).scalars()
    ]


def ledger_as_of(session: Session, config: Config, customer_id: int, as_of: datetime) -> list[dict[str, Any]]:
    """The ledger as it stood at ``as_of``, newest first, written nothing: the facts dated by
    then and the removals the rules derive from them as of then (a reset due later, or the
    reversal of a later refund, is not there yet). A history an older version wrote that
    cannot be replayed is shown as recorded."""
    e = table_of(PointsEntry)
    moment = literal(as_of, UTCDateTime())
    rows = session.execute(
        select(e.c.id, e.c.at, e.c.delta, e.c.kind, e.c.reason, e.c.purchase_id)
        .where(e.c.customer_id == customer_id, e.c.at <= moment)
        .order_by(e.c.at, e.c.id)
    ).all()
    facts = [row for row in rows if row.kind in FACTS]
    outcome = replay(
        [Fact(r.at, r.delta, r.kind, r.purchase_id) for r in facts],
        [r for r in _removals_due(session, config, [customer_id], as_of).get(customer_id, []) if r.at <= as_of],
        expiry=Expiry.of(config),
        until=as_of,
    )
    entries: list[dict[str, Any]]
    if outcome.short is not None:
        entries = [dict(r._mapping) for r in rows]
    else:
        entries = [dict(r._mapping) for r in facts] + [
            {
                "id": None,
                "at": removal.at,
                "delta": -amount,
                "kind": removal.kind,
                "reason": removal.reason,
                "purchase_id": removal.purchase_id,
            }
            for removal, amount in outcome.removals
        ]
    entries.sort(key=lambda entry: (entry["at"], entry["kind"] in REMOVALS), reverse=True)
    return entries


def balance_as_of(session: Session, config: Config, customer_id: int, as_of: datetime) -> int:
    """The balance at ``as_of`` from the ledger as it stood then (see :func:`ledger_as_of`)."""
    return sum(entry["delta"] for entry in ledger_as_of(session, config, customer_id, as_of))


# --- facts ---------------------------------------------------------------------------


def _append(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        defaults = {"reason": None, "purchase_id": None, "period": None}
        session.execute(insert(table_of(PointsEntry)), [{**defaults, **row} for row in rows])


def record_purchase_points(
    session: Session, config: Config, purchases: Sequence[int] | ColumnElement[bool], *, spent: bool = True
) -> None:
    """The facts of new sales: points earned on the net amount, points spent as a discount.

    ``purchases`` is a list of purchase ids or a condition on the purchase table (an
    import's batch), so a thousand sales cost two statements. ``spent`` False says the
    caller knows none of these sales used points: the statement that records spends,
    which would find nothing, is not run.
    """
    if isinstance(purchases, Sequence):
        many, value = bound_ids(purchases)
        spend, earn = _id_points_statements(_earn_ratio(config), many)
        params: dict[str, Any] = {"purchase_ids": value}
    else:
        spend, earn = _points_statements(_earn_ratio(config), purchases)
        params = {}
    if spent:
        session.execute(spend, params)
    session.execute(earn, params)


def _points_statements(ratio: tuple[int, int], chosen: ColumnElement[bool]) -> tuple[Any, Any]:
    """The two INSERT ... SELECTs of :func:`record_purchase_points`: spends, then points earned."""
    p, e = table_of(Purchase), table_of(PointsEntry)
    label = literal("purchase ") + cast(p.c.id, String)
    earned = _earn_sql(p.c.net_minor, ratio)
    columns = ["customer_id", "delta", "kind", "reason", "purchase_id", "at"]
    spend = insert(e).from_select(
        columns,
        select(p.c.customer_id, -p.c.points_used, literal("redeem"), label, p.c.id, p.c.at)
        .where(chosen, p.c.points_used > 0)
        .order_by(p.c.id),
    )
    earn = insert(e).from_select(
        columns,
        select(p.c.customer_id, earned, literal("earn"), label, p.c.id, p.c.at)
        .where(chosen, earned > 0)
        .order_by(p.c.id),
    )
    return spend, earn


@functools.cache
def _id_points_statements(ratio: tuple[int, int], many: bool) -> tuple[Any, Any]:
    """:func:`_points_statements` for the purchase ids bound as ``purchase_ids`` (see
    :func:`crmcli.sql.bound_ids`), built once per earning rate."""
    return _points_statements(ratio, among(table_of(Purchase).c.id, "purchase_ids", many))


def record_refund_points(session: Session, purchase_ids: Sequence[int]) -> None:
    """The fact of a refund: points spent on the sale come back, dated at the refund.

    (What the sale earned is taken back by the ``reversal`` that :func:`settle_points` derives.)
    """
    p, e = table_of(Purchase), table_of(PointsEntry)
    for start in range(0, len(purchase_ids), CHUNK):
        chunk = list(purchase_ids[start : start + CHUNK])
        session.execute(
            insert(e).from_select(
                ["customer_id", "delta", "kind", "reason", "purchase_id", "at"],
                select(
                    p.c.customer_id,
                    p.c.points_used,
                    literal("refund"),
                    literal("points spent on refunded purchase ") + cast(p.c.id, String),
                    p.c.id,
                    p.c.refunded_at,
                ).where(p.c.id.in_(chunk), p.c.points_used > 0, p.c.refunded_at.is_not(None)),
            )
        )


def _positive(points: int) -> int:
    if points <= 0:
        raise Invalid(f"points must be a positive whole number, not {points}")
    return points


def add_points(
    *, session: Session, customer: Customer, points: int, reason: str, config: Config, now: datetime | None = None
) -> int:
    """Give points by hand; returns the new balance."""
    assert customer.id is not None
    if customer.erased_at is not None:
        raise Invalid(f"customer {customer.id} was erased")
    now = now or utcnow()
    lock_customer(session, customer.id)
    entry = {"customer_id": customer.id, "delta": _positive(points), "kind": "adjust", "reason": reason, "at": now}
    _append(session, [entry])
    touch(session, [customer.id])
    settle_points(session, config, [customer.id], now=now)
    return balance(session, customer.id)


def redeem_points(
    *, session: Session, customer: Customer, points: int, reason: str, config: Config, now: datetime | None = None
) -> int:
    """Spend points (never below zero at any moment); returns the new balance."""
    assert customer.id is not None
    now = now or utcnow()
    lock_customer(session, customer.id)
    settle_points(session, config, [customer.id], now=now)  # a reset that is due comes first
    have = balance(session, customer.id, now)
    if have < _positive(points):
        raise Invalid(f"customer {customer.id} has {have} points, fewer than the {points} asked for")
    _append(session, [{"customer_id": customer.id, "delta": -points, "kind": "redeem", "reason": reason, "at": now}])
    touch(session, [customer.id])
    settle_points(session, config, [customer.id], now=now)
    return balance(session, customer.id)


# --- derived removals --------------------------------------------------------------------


def _removal_rows(e: Any) -> ColumnElement[bool]:
    return one_of(e.c.kind, REMOVALS)


def late_purchases(config: Config | None, now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """Sales whose due date has passed unpaid by ``now`` (paid after it, or never), and not
    refunded by then: each resets its customer's points at the end of the due date.
    (``now`` may be a bound parameter, for a statement built once.)"""
    p = table_of(Purchase)
    return and_(
        p.c.due_at.is_not(None),
        p.c.due_at <= now,
        or_(p.c.paid_at.is_(None), p.c.paid_at > p.c.due_at),
        or_(p.c.refunded_at.is_(None), p.c.refunded_at > p.c.due_at),
    )


def settle_points(
    session: Session,
    config: Config,
    customer_ids: Iterable[int],
    *,
    now: datetime | None = None,
    strict: bool = True,
    spent: Collection[int] = (),
    on_short: Callable[[ShortOfPoints], None] | None = None,
    sold_since: datetime | None = None,
    may: bool | None = None,
) -> int:
    """Bring the derived removals of these customers in line with their timeline as of ``now``.

    For each customer with a late sale, a refund, or a removal already recorded, the
    facts are replayed and the removals rewritten; so is each customer of ``spent``,
    whose new spends (a file's recorded points) are checked against the timeline. A write
    (``strict``) that leaves a spend uncovered raises :class:`Invalid`. Reads and the daily accrual pass
    ``strict=False``: a customer whose recorded history cannot be replayed without a
    shortfall (a ledger written by an older version, whose resets were dated at the
    payment) keeps its entries as they are, so one such customer never stops a
    ``customer show`` or the cron job. ``on_short``, when given, is told of each shortfall
    instead, and that customer is left as it was. Returns how many customers were replayed.

    Each replay is recorded (:class:`~crmcli.models.PointsSettled`: when, under which rules,
    and the facts dated by then). ``sold_since`` says that this transaction's only change to
    these ledgers is new sales dated then or later (a till's sale): a customer whose record
    still holds (see :func:`_vouched`) is not replayed, since the replay would write the
    removals it already has. ``may`` is the answer to
    :func:`may_settle` when the caller has asked it already (a till's sale asks the rules'
    first questions in one statement); it stands for at most :data:`CHUNK` customers.
    """
    now = now or utcnow()
    e = table_of(PointsEntry)
    ids = sorted(set(customer_ids))
    expiry = Expiry.of(config)
    replayed = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        checked = {cid for cid in chunk if cid in spent}
        many, value = bound_ids(chunk)
        answer, may = may, None  # the caller's answer stands for its one chunk
        if not checked and answer is None:
            asks = _may_settle(expiry is not None, config.points.reset_on_late_payment, many)
            answer = bool(session.execute(asks, may_settle_params(value, config, now)).scalar())
        if not checked and not answer:
            continue  # nothing to derive or rewrite: no sale on credit or refunded, no removal, nothing old
        if sold_since is not None and not checked and expiry is None:
            params = {"ids": value, "now": now, "since": sold_since, "rules": _rules(config)}
            vouched = set(session.execute(_vouched(many), params).scalars())
            chunk = [cid for cid in chunk if cid not in vouched]
            if not chunk:
                continue
            many, value = bound_ids(chunk)
        removals = _removals_due(session, config, chunk, now)
        had = set(session.execute(_with_removals(many), {"ids": value}).scalars())
        involved = sorted(had | set(removals) | checked | _with_points_to_expire(session, expiry, chunk, now))
        if not involved:
            continue
        rows: list[dict[str, Any]] = []
        settled: list[int] = []
        seen: list[dict[str, Any]] = []
        for cid, facts in _facts_by_customer(session, involved):
            outcome = replay(facts, removals.get(cid, []), expiry=expiry, until=now)
            if outcome.short is not None and not strict:
                continue
            if outcome.short is not None:
                short = ShortOfPoints(cid, *outcome.short, config.tz)
                if on_short is None:
                    raise short
                on_short(short)  # told, and the customer's entries left as they are
                continue
            rows += [
                {
                    "customer_id": cid,
                    "delta": -amount,
                    "kind": removal.kind,
                    "reason": removal.reason,
                    "purchase_id": removal.purchase_id,
                    "at": removal.at,
                }
                for removal, amount in outcome.removals
            ]
            settled.append(cid)
            dated = [f.delta for f in facts if f.at <= now]
            seen.append(
                {"customer_id": cid, "at": now, "rules": _rules(config), "facts": len(dated), "total": sum(dated)}
            )
        session.execute(delete(e).where(is_in(e.c.customer_id, settled), _removal_rows(e)))
        _append(session, rows)
        _record_settled(session, involved, seen)
        replayed += len(settled)
    return replayed


def _facts_by_customer(session: Session, customer_ids: list[int]) -> Iterator[tuple[int, list[Fact]]]:
    """Each of ``customer_ids`` (sorted) with its facts, read in one query but held one customer
    at a time: a chunk of a large shop's best customers holds hundreds of thousands of entries."""
    many, value = bound_ids(customer_ids)
    found = session.execute(_facts_of(many), {"ids": value})
    groups = itertools.groupby(found, key=operator.itemgetter(0))
    current = next(groups, None)
    for cid in customer_ids:
        facts: list[Fact] = []
        if current is not None and current[0] == cid:
            facts = [Fact(at, delta, kind, pid) for _, at, delta, kind, pid in current[1]]
            current = next(groups, None)
        yield cid, facts


@functools.cache
def _facts_of(many: bool) -> Any:
    """The facts of the customers ``ids``, by customer (built once; see :func:`_facts_by_customer`)."""
    e = table_of(PointsEntry)
    return (
        select(e.c.customer_id, e.c.at, e.c.delta, e.c.kind, e.c.purchase_id)
        .where(among(e.c.customer_id, "ids", many), one_of(e.c.kind, FACTS))
        .order_by(e.c.customer_id)
    )


def _rules(config: Config) -> str:
    """The settings a replay's removals depend on, as recorded with it: a record made under
    other settings vouches for nothing."""
    num, den = _earn_ratio(config)
    expiry = Expiry.of(config)
    return f"reset {config.points.reset_on_late_payment}; earn {num}/{den}; expire {expiry.days if expiry else None}"


def _record_settled(session: Session, involved: list[int], seen: list[dict[str, Any]]) -> None:
    """What each replay saw; a customer left as it was (short of points) loses its record, so
    that its next sale replays it again. Two settles of one customer at once (a read's and a
    sale's, on PostgreSQL) leave the later one's record, not an error."""
    s = table_of(PointsSettled)
    session.execute(delete(s).where(is_in(s.c.customer_id, involved)))
    if seen:
        session.execute(upsert(session, s, ["customer_id"]), seen)


@functools.cache
def _vouched(many: bool) -> Any:
    """Those of the customers ``ids`` whose last replay still gives their removals as of ``now``
    after a sale dated ``since``: the replay ran under the same ``rules``, before the sale and
    not after now; none of their sales (the new one included) fell due or was refunded since
    (the moments removals are dated at); and the facts dated by then are those the replay saw
    (same count, same sum: a fact backdated since, by any path, shows). Every path that changes
    a sale's due date, payment or refund replays the customer itself. Built once."""
    s, p, e = table_of(PointsSettled), table_of(Purchase), table_of(PointsEntry)
    now = bindparam("now", type_=UTCDateTime())
    fell_due = exists().where(
        p.c.customer_id == s.c.customer_id,
        or_(p.c.due_at.is_not(None), p.c.refunded_at.is_not(None)),
        or_(and_(p.c.due_at > s.c.at, p.c.due_at <= now), and_(p.c.refunded_at > s.c.at, p.c.refunded_at <= now)),
    )
    seen = and_(e.c.customer_id == s.c.customer_id, one_of(e.c.kind, FACTS), e.c.at <= s.c.at)
    facts = select(func.count()).where(seen).scalar_subquery()
    total = select(func.coalesce(func.sum(e.c.delta), 0)).where(seen).scalar_subquery()
    return select(s.c.customer_id).where(
        among(s.c.customer_id, "ids", many),
        s.c.rules == bindparam("rules"),
        # made before the sale (whose own due date, if any, is then after it) and not after now
        s.c.at < bindparam("since", type_=UTCDateTime()),
        s.c.at <= now,
        ~fell_due,
        facts == s.c.facts,
        total == s.c.total,
    )


@functools.cache
def _with_removals(many: bool) -> Any:
    """Those of the customers ``ids`` with a removal recorded (built once)."""
    e = table_of(PointsEntry)
    return select(e.c.customer_id).where(among(e.c.customer_id, "ids", many), _removal_rows(e)).distinct()


@functools.cache
def may_settle(expiring: bool, resetting: bool, many: bool) -> ColumnElement[bool]:
    """One cheap question before a settle's reads: might any of the customers ``ids`` have a
    removal to derive or rewrite as of ``now``? Only a refunded sale or (with resets) a sale
    late by then (the sales :func:`_removals_due` reads), a removal already recorded, or (with
    expiry) points earned by ``oldest`` can give one, so False means their ledgers are
    already what the replay would write. Built once per setting; its bound values change."""
    p, e = table_of(Purchase), table_of(PointsEntry)
    late = late_purchases(None, bindparam("now", type_=UTCDateTime()))
    calls = or_(p.c.refunded_at.is_not(None), late) if resetting else p.c.refunded_at.is_not(None)
    asks = [
        exists().where(
            among(p.c.customer_id, "ids", many), or_(p.c.due_at.is_not(None), p.c.refunded_at.is_not(None)), calls
        ),
        exists().where(among(e.c.customer_id, "ids", many), _removal_rows(e)),
    ]
    if expiring:
        asks.append(
            exists().where(
                among(e.c.customer_id, "ids", many),
                e.c.delta > 0,
                one_of(e.c.kind, FACTS),
                e.c.at <= bindparam("oldest"),
            )
        )
    return or_(*asks)


@functools.cache
def _may_settle(expiring: bool, resetting: bool, many: bool) -> Any:
    return select(may_settle(expiring, resetting, many))


def may_settle_params(ids: Any, config: Config, now: datetime) -> dict[str, Any]:
    """The values :func:`may_settle` binds, for the ids bound as :func:`crmcli.sql.bound_ids` gives them."""
    params: dict[str, Any] = {"ids": ids, "now": now}
    expiry = Expiry.of(config)
    if expiry is not None:
        params["oldest"] = now - timedelta(days=expiry.days)
    return params


def _with_points_to_expire(session: Session, expiry: Expiry | None, customer_ids: list[int], now: datetime) -> set[int]:
    """The customers holding points old enough to have expired by ``now`` (a superset: what
    they still hold is the replay's to say)."""
    if expiry is None:
        return set()
    e = table_of(PointsEntry)
    oldest = now - timedelta(days=expiry.days)
    return set(
        session.execute(
            select(e.c.customer_id)
            .where(is_in(e.c.customer_id, customer_ids), e.c.delta > 0, one_of(e.c.kind, FACTS), e.c.at <= oldest)
            .distinct()
        ).scalars()
    )


@functools.cache
def _removal_sales(resetting: bool, many: bool) -> Any:
    """The sales of the customers ``ids`` that call for a removal as of ``now``, each with
    whether it is late by then; built once per setting, its bound values change."""
    p = table_of(Purchase)
    late = late_purchases(None, bindparam("now", type_=UTCDateTime()))
    return select(
        p.c.customer_id, p.c.id, p.c.due_at, p.c.refunded_at, p.c.net_minor, case((late, 1), else_=0).label("late")
    ).where(
        # only the sales that call for a removal, found in the index of sales on credit or
        # refunded (its condition, as the index states it, lets the database use it)
        among(p.c.customer_id, "ids", many),
        or_(p.c.due_at.is_not(None), p.c.refunded_at.is_not(None)),
        or_(p.c.refunded_at.is_not(None), late) if resetting else p.c.refunded_at.is_not(None),
    )


def _removals_due(session: Session, config: Config, customer_ids: list[int], now: datetime) -> dict[int, list[Removal]]:
    """The removals the rules call for: one reset per late due moment, one reversal per refund."""
    found: dict[int, list[Removal]] = {}
    resets: dict[tuple[int, datetime], int] = {}  # (customer, due) -> first late purchase
    many, value = bound_ids(customer_ids)
    query = _removal_sales(config.points.reset_on_late_payment, many)
    for cid, pid, due, refunded, net, late in session.execute(query, {"ids": value, "now": now}):
        if refunded is not None and refunded <= now and (earned := points_for_spend(net, config)):
            found.setdefault(cid, []).append(Removal(refunded, "reversal", earned, f"refund of purchase {pid}", pid))
        if late and config.points.reset_on_late_payment and ((cid, due) not in resets or pid < resets[(cid, due)]):
            resets[(cid, due)] = pid
    for (cid, due), first in sorted(resets.items()):
        reason = f"late payment: purchase {first} was unpaid when due"
        found.setdefault(cid, []).append(Removal(due, "reset", None, reason, first))
    return found


def customers_with_late_purchases(session: Session, config: Config, now: datetime) -> list[int]:
    p = table_of(Purchase)
    return list(session.execute(select(p.c.customer_id).where(late_purchases(config, now)).distinct()).scalars())


# --- tenure --------------------------------------------------------------------------


def tenure_period(month: int) -> str:
    """The period key of a customer's ``month``-th full month of membership."""
    return f"m{month:05d}"


def full_months(start: datetime, end: datetime, config: Config) -> int:
    """Whole months of membership from ``start`` to ``end``, counted on the business calendar."""
    months = max((end.year - start.year) * 12 + (end.month - start.month) + 1, 0)
    while months > 0 and month_end(start, months, config) > end:
        months -= 1
    return months


def month_end(start: datetime, month: int, config: Config) -> datetime:
    """The moment a customer who joined at ``start`` completes ``month`` months, on the business
    calendar; a day the month lacks is its last day (joined Jan 31: Feb 28 or 29)."""
    local = start.astimezone(config.tz)
    index = local.year * 12 + local.month - 1 + month
    year, month_no = divmod(index, 12)
    last_day = calendar.monthrange(year, month_no + 1)[1]
    return local.replace(year=year, month=month_no + 1, day=min(local.day, last_day))


def accrue_tenure(*, session: Session, config: Config, as_of: datetime | None = None) -> dict[str, int]:
    """Tenure points for each full month of membership completed by ``as_of``, one entry per
    month dated when that month completed.

    The unique (customer, kind, period) index makes a second run add nothing, even when
    two runs overlap; a monthly and a daily cron give the same ledger. Late-payment
    resets due by then are applied first.
    """
    as_of = as_of or utcnow()
    late = customers_with_late_purchases(session, config, as_of)
    settle_points(session, config, late, now=as_of, strict=False)
    per_month = config.points.per_month_of_tenure
    if per_month == 0:
        return {"customers": 0, "points": 0}
    entries = table_of(PointsEntry)
    # Only a customer's own months count: entries moved in by a merge carry no period.
    accrued = (
        select(entries.c.customer_id, func.max(entries.c.period).label("period"))
        .where(entries.c.kind == "tenure", entries.c.period.is_not(None))
        .group_by(entries.c.customer_id)
        .subquery()
    )
    query = (
        select(col(Customer.id), col(Customer.created_at), accrued.c.period)
        .outerjoin(accrued, accrued.c.customer_id == col(Customer.id))
        .where(col(Customer.erased_at).is_(None), col(Customer.created_at) <= as_of)
        .order_by(col(Customer.id))
        .limit(ACCRUE_BATCH)
    )
    customers = points = 0
    last_id = 0
    # Keyset pages: each page is read completely before its entries are written.
    while batch := session.execute(query.where(col(Customer.id) > last_id)).all():
        last_id = batch[-1][0]
        rows = []
        for customer_id, created_at, period in batch:
            done = int(period[1:]) if period else 0
            months = full_months(created_at, as_of, config)
            for month in range(done + 1, months + 1):
                rows.append(
                    {
                        "customer_id": customer_id,
                        "delta": per_month,
                        "kind": "tenure",
                        "period": tenure_period(month),
                        "reason": f"membership month {month}",
                        "at": month_end(created_at, month, config),
                    }
                )
            if months > done:
                customers += 1
                points += (months - done) * per_month
        if rows:
            session.execute(insert(entries), rows)
            # A month completed before a reset already recorded belongs to what it reset.
            settle_points(session, config, {row["customer_id"] for row in rows}, now=as_of, strict=False)
    return {"customers": customers, "points": points}
