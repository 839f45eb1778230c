"""Lifecycle stages: set by hand, advanced by purchases, kept as a dated history.

A stage history has two kinds of rows: changes made by hand (``cause`` ``manual``,
including the first row, the stage a customer joined with) and changes that purchases
cause (``cause`` ``purchase``): a first live purchase makes a customer, a second a
repeat customer, never a step back. The purchase-caused rows are derived: one rule,
:func:`settle_stages`, replays a set of customers' hand-made changes and purchases in
time order and rewrites them, so a backdated sale, a refund or an import gives the
history that recording everything in time order would have given.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, insert, literal, or_, select, update
from sqlmodel import Session

from crmcli.bulk import insert_rows
from crmcli.config import STAGES
from crmcli.errors import Invalid
from crmcli.models import Customer, Purchase, StageChange, UTCDateTime, table_of
from crmcli.sql import among, bound_ids
from crmcli.values import utcnow

# A purchase moves a customer up this order; "lost" is lowest, so buying again revives.
STAGE_RANK = {s: i for i, s in enumerate(("lost", "lead", "verified", "prospect", "customer", "repeat"))}
CHUNK = 900
STEP_COLUMNS = ("customer_id", "from_stage", "to_stage", "at", "cause")


def check_stage(stage: str) -> str:
    value = stage.strip().lower()
    if value not in STAGES:
        raise Invalid(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    return value


def stage_for_purchases(live: int) -> str | None:
    """The stage a number of live (not refunded) purchases calls for."""
    return "repeat" if live >= 2 else "customer" if live == 1 else None


def moved_by_sale(stage: str, live: int) -> str | None:
    """The stage a sale moves a customer at ``stage`` to, the sale making ``live`` live
    purchases; None when it does not move them (never a step back)."""
    target = stage_for_purchases(live)
    return target if target is not None and STAGE_RANK[target] > STAGE_RANK[stage] else None


def change_stage(*, session: Session, customer: Customer, stage: str, now: datetime | None = None) -> bool:
    """Move a customer to ``stage`` by hand, recording the change; False if already there."""
    now = now or utcnow()
    stage = check_stage(stage)
    if customer.stage == stage:
        return False
    assert customer.id is not None
    session.add(StageChange(customer_id=customer.id, from_stage=customer.stage, to_stage=stage, at=now, cause="manual"))
    customer.stage = stage
    customer.updated_at = now
    session.add(customer)
    session.flush()
    settle_stages(session, [customer.id])
    session.refresh(customer)
    return True


@dataclass(frozen=True)
class Step:
    at: datetime
    from_stage: str | None
    to_stage: str


def replay_stages(
    manual: list[tuple[datetime, str]], purchases: list[tuple[datetime, datetime | None]]
) -> tuple[list[Step], list[str | None], str]:
    """Replay hand-made changes (the first is where the customer started, whenever it is dated)
    and purchases (when bought, when refunded).

    Returns the purchase-caused steps, the stage each hand-made change moved from, and
    the stage at the end.
    """
    events: list[tuple[datetime, int, int, Any]] = []
    for n, (at, to) in enumerate(manual[1:], start=1):
        events.append((at, 0, n, to))
    for n, (at, refunded) in enumerate(purchases):
        events.append((at, 1, n, None))
        if refunded is not None:
            events.append((refunded, 2, n, None))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    stage = manual[0][1] if manual else "lead"
    froms: list[str | None] = [None]
    steps: list[Step] = []
    live = 0
    for at, kind, _, to in events:
        if kind == 0:
            froms.append(stage)
            stage = to
        elif kind == 1:
            live += 1
            target = moved_by_sale(stage, live)
            if target is not None:
                steps.append(Step(at, stage, target))
                stage = target
        else:
            live -= 1
    return steps, froms, stage


def settle_stages(
    session: Session,
    customer_ids: Iterable[int],
    *,
    replay_all: bool = False,
    sold_since: datetime | None = None,
    settled: dict[int, str] | None = None,
    asked: Sequence[Any] | None = None,
) -> int:
    """Rewrite the purchase-caused stage changes of these customers and their current stage.

    Set-based: a few statements per 900 customers. The common case of an import, a customer
    whose only stage row is the one they joined with and who has no refunded sale, reads
    just the first two purchases (only they can move such a customer); the rest read
    their whole history. Both replay it with :func:`replay_stages`; ``replay_all`` reads every
    history in full (the tests compare the two).

    ``sold_since`` says the only change to each of these customers since their stages were
    last settled is one new sale, dated then or later (a sale at the till). For a customer
    with nothing in their history dated after that moment, the sale is the last event of the
    replay: everything before it is what was written, so the replay ends with the one step
    :func:`moved_by_sale` gives from the stage they are at, with the purchases live at the
    sale. One query finds those customers with their stage and live purchases, and only
    the others are replayed; ``settled``, when given, receives the stage each of them is at
    now. ``asked`` are that query's rows when the caller has read them already (a till's
    sale asks the rules' first questions in one statement), for at most :data:`CHUNK`
    customers. Returns how many changes were written.
    """
    ids = sorted(set(customer_ids))
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        if sold_since is not None and not replay_all:
            if asked is None:
                many, value = bound_ids(chunk)
                asked = session.execute(last_sale(many), {"ids": value, "since": sold_since}).all()
            last = _settle_last_sale(session, asked, sold_since)
            asked = None  # the caller's rows were for this chunk
            written += sum(1 for stage, moved in last.values() if moved)
            if settled is not None:
                settled.update((cid, stage) for cid, (stage, _) in last.items())
            chunk = [cid for cid in chunk if cid not in last]
            if not chunk:
                continue
        simple = [] if replay_all else _simple(session, chunk)
        if simple:
            written += _settle_simple(session, simple)
            taken = set(simple)
            chunk = [cid for cid in chunk if cid not in taken]
        if chunk:
            written += _settle_replay(session, chunk)
    return written


def _settle_last_sale(session: Session, rows: Sequence[Any], sale_at: datetime) -> dict[int, tuple[str, bool]]:
    """Settle the customers whose sale at ``sale_at`` is the last event of their history (the
    rows of :func:`last_sale` that say so): customer id -> (their stage now, whether it moved)."""
    last: dict[int, tuple[str, bool]] = {}
    steps: list[dict[str, Any]] = []
    for cid, stage, live, is_last, *_ in rows:
        if not is_last:
            continue
        target = moved_by_sale(stage, live)
        last[cid] = (target or stage, target is not None)
        if target is not None:
            steps.append(
                {"customer_id": cid, "from_stage": stage, "to_stage": target, "at": sale_at, "cause": "purchase"}
            )
    _write_steps(session, steps, [{"cid": step["customer_id"], "stage": step["to_stage"]} for step in steps])
    return last


@functools.cache
def last_sale(many: bool) -> Any:
    """The customers of ``ids``, each with its stage, the purchases live at ``since`` (those
    not refunded before it: a refund at that moment comes after the sale in the replay), and
    whether a sale then is the last event of its history: no purchase, refund or stage change
    dated after ``since``. Built once; its bound values change.

    Only customers whose history is known to be as the replay writes it qualify: those who
    bought before (every settle since then replayed them) and those with no change by hand
    but the one they joined with. A customer changed by hand, backdated, before ever buying
    was never replayed (nothing to replay), so their first sale replays them in full."""
    c, p, sc = table_of(Customer), table_of(Purchase), table_of(StageChange)
    since = bindparam("since", type_=UTCDateTime())
    later_sale = exists().where(p.c.customer_id == c.c.id, or_(p.c.at > since, p.c.refunded_at > since))
    later_change = exists().where(sc.c.customer_id == c.c.id, sc.c.at > since)
    bought = select(func.count()).where(p.c.customer_id == c.c.id).scalar_subquery()
    by_hand = select(func.count()).where(sc.c.customer_id == c.c.id, sc.c.cause != "purchase").scalar_subquery()
    live = (
        select(func.count())
        .where(p.c.customer_id == c.c.id, or_(p.c.refunded_at.is_(None), p.c.refunded_at >= since))
        .scalar_subquery()
    )
    is_last = and_(~later_sale, ~later_change, or_(bought > 1, by_hand == 1))
    return select(c.c.id, c.c.stage, live, is_last).where(among(c.c.id, "ids", many))


BEFORE_CUSTOMER = tuple(s for s, rank in STAGE_RANK.items() if rank < STAGE_RANK["customer"])


def _simple(session: Session, chunk: list[int]) -> list[int]:
    """The customers of ``chunk`` whose only stage row is the one they joined with and who
    have no refunded sale."""
    p, sc = table_of(Purchase), table_of(StageChange)
    one = set(
        session.execute(
            select(sc.c.customer_id)
            .where(sc.c.customer_id.in_(chunk))
            .group_by(sc.c.customer_id)
            .having(func.count() == 1, func.max(sc.c.cause) != "purchase")
        ).scalars()
    )
    if not one:
        return []
    refunded = set(
        session.execute(
            select(p.c.customer_id).where(p.c.customer_id.in_(chunk), p.c.refunded_at.is_not(None)).distinct()
        ).scalars()
    )
    return [cid for cid in chunk if cid in one and cid not in refunded]


def _settle_simple(session: Session, simple: list[int]) -> int:
    """:func:`replay_stages` in SQL for customers with no stage row but the one they joined with
    and no refund: nothing derived is there yet, and only their first and second purchase
    can move them (a window function over the covering index finds those): the first makes
    a customer below 'customer' one, the second makes anyone below 'repeat' a repeat."""
    c, p, sc = table_of(Customer), table_of(Purchase), table_of(StageChange)
    order = func.row_number().over(partition_by=p.c.customer_id, order_by=(p.c.at, p.c.id)).label("n")
    ranked = select(p.c.customer_id, p.c.at, order).where(p.c.customer_id.in_(simple)).subquery()
    joined = sc.alias("joined")
    first = ranked.c.n == 1
    steps = (
        select(
            ranked.c.customer_id,
            ranked.c.at,
            case((first, joined.c.to_stage), else_=literal("customer")),
            case((first, literal("customer")), else_=literal("repeat")),
            literal("purchase"),
        )
        .join(joined, and_(joined.c.customer_id == ranked.c.customer_id, joined.c.cause != "purchase"))
        .where(
            or_(
                and_(first, joined.c.to_stage.in_(BEFORE_CUSTOMER)),
                and_(ranked.c.n == 2, joined.c.to_stage != "repeat"),
            )
        )
    )
    result = session.execute(insert(sc).from_select(["customer_id", "at", "from_stage", "to_stage", "cause"], steps))
    written = getattr(result, "rowcount", -1)
    if written is None or written < 0:  # (not every driver counts the rows of INSERT ... SELECT)
        rows = steps.subquery()
        written = session.execute(select(func.count()).select_from(rows)).scalar_one()

    # The stage now: the highest step written (none written: the stage joined with, unchanged).
    def reaching(stage: str) -> Any:
        return select(sc.c.customer_id).where(
            sc.c.customer_id.in_(simple), sc.c.cause == "purchase", sc.c.to_stage == stage
        )

    repeat = reaching("repeat")
    session.execute(
        update(c)
        .where(c.c.id.in_(reaching("customer")), c.c.id.not_in(repeat), c.c.stage != "customer")
        .values(stage="customer")
    )
    session.execute(update(c).where(c.c.id.in_(repeat), c.c.stage != "repeat").values(stage="repeat"))
    return int(written)


def _settle_replay(session: Session, chunk: list[int]) -> int:
    """:func:`replay_stages` for each customer of ``chunk``, the differences written back."""
    c, sc = table_of(Customer), table_of(StageChange)
    manual: dict[int, list[tuple[int, datetime, str | None, str]]] = {}
    derived: dict[int, list[Step]] = {}
    for sid, cid, at, frm, to, cause in session.execute(
        select(sc.c.id, sc.c.customer_id, sc.c.at, sc.c.from_stage, sc.c.to_stage, sc.c.cause)
        .where(sc.c.customer_id.in_(chunk))
        .order_by(sc.c.customer_id, sc.c.at, sc.c.id)
    ):
        if cause == "purchase":
            derived.setdefault(cid, []).append(Step(at, frm, to))
        else:
            manual.setdefault(cid, []).append((sid, at, frm, to))
    bought = _purchases(session, chunk, busy={cid for cid, rows in manual.items() if len(rows) > 1})
    current = dict(session.execute(select(c.c.id, c.c.stage).where(c.c.id.in_(chunk))).all())
    new_steps: list[dict[str, Any]] = []
    stale: list[int] = []
    froms: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    for cid in chunk:
        if cid not in bought and cid not in derived:
            continue
        rows = manual.get(cid, [])
        steps, from_stages, final = replay_stages([(at, to) for _, at, _, to in rows], bought.get(cid, []))
        if steps != derived.get(cid, []):
            stale.append(cid)
            new_steps += [
                {
                    "customer_id": cid,
                    "from_stage": s.from_stage,
                    "to_stage": s.to_stage,
                    "at": s.at,
                    "cause": "purchase",
                }
                for s in steps
            ]
        froms += [
            {"sid": sid, "frm": frm}
            for (sid, _, old, _), frm in zip(rows, from_stages, strict=True)
            if old != frm and frm is not None
        ]
        if current.get(cid) != final:
            stages.append({"cid": cid, "stage": final})
    if stale:
        session.execute(delete(sc).where(sc.c.customer_id.in_(stale), sc.c.cause == "purchase"))
    if froms:
        session.execute(update(sc).where(sc.c.id == bindparam("sid")).values(from_stage=bindparam("frm")), froms)
    _write_steps(session, new_steps, stages)
    return len(new_steps)


def _write_steps(session: Session, steps: list[dict[str, Any]], stages: list[dict[str, Any]]) -> None:
    """New purchase-caused stage changes (``STEP_COLUMNS``), and the stage each customer of
    ``stages`` (``cid``, ``stage``) is at now."""
    c, sc = table_of(Customer), table_of(StageChange)
    if steps:
        insert_rows(session.connection(), sc, STEP_COLUMNS, steps)
    if stages:
        session.execute(update(c).where(c.c.id == bindparam("cid")).values(stage=bindparam("stage")), stages)


def _purchases(session: Session, chunk: list[int], busy: set[int]) -> dict[int, list[tuple[datetime, datetime | None]]]:
    """Each customer's purchases (when bought, when refunded) as the replay needs them.

    With no refund and no change by hand after joining, only the first two purchases can
    move a stage, so only those are read (a window function): an import of five million
    sales reads two per customer, not five.
    """
    p = table_of(Purchase)
    refunded = set(
        session.execute(
            select(p.c.customer_id).where(p.c.customer_id.in_(chunk), p.c.refunded_at.is_not(None)).distinct()
        ).scalars()
    )
    full = sorted(refunded | (busy & set(chunk)))
    bought: dict[int, list[tuple[datetime, datetime | None]]] = {}
    if full:
        for cid, at, gone in session.execute(
            select(p.c.customer_id, p.c.at, p.c.refunded_at).where(p.c.customer_id.in_(full))
        ):
            bought.setdefault(cid, []).append((at, gone))
    simple = [cid for cid in chunk if cid not in refunded and cid not in busy]
    if simple:
        order = func.row_number().over(partition_by=p.c.customer_id, order_by=(p.c.at, p.c.id)).label("n")
        ranked = select(p.c.customer_id, p.c.at, order).where(p.c.customer_id.in_(simple)).subquery()
        for cid, at in session.execute(select(ranked.c.customer_id, ranked.c.at).where(ranked.c.n <= 2)):
            bought.setdefault(cid, []).append((at, None))
    return bought
