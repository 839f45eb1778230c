"""Purchase CSV import (a till's history: batched, all-or-nothing) and export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, bindparam, cast, func, insert, literal, or_, select, update
from sqlmodel import Session

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError, Invalid
from crmcli.io.bulk import insert_rows
from crmcli.io.importing import ImportRun, check_options, run_import
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import output_stream, write_csv, write_json
from crmcli.models import Customer, PointsEntry, Purchase, Referral, StageChange, UTCDateTime, table_of
from crmcli.values import check_happened, money, parse_money, parse_when, utcnow

FIELDS = ("customer", "amount", "at", "due", "paid_at", "coupon", "ref")
BATCH = 5000


@dataclass
class Row:
    line: int
    raw: dict[str, str]
    customer: str
    amount_minor: int
    at: datetime
    due_at: datetime | None
    paid_at: datetime | None
    coupon: str | None
    ref: str | None


class IdSet:
    """A set of small positive ids in one byte each: a million customers cost 1 MB, not 60."""

    def __init__(self) -> None:
        self._flags = bytearray()

    def add(self, value: int) -> None:
        if value >= len(self._flags):
            self._flags.extend(bytes(max(value + 1 - len(self._flags), len(self._flags))))
        self._flags[value] = 1

    def __bool__(self) -> bool:
        return 1 in self._flags

    def sorted(self) -> list[int]:
        return [i for i, flag in enumerate(self._flags) if flag]


@dataclass
class PurchaseRun(ImportRun):
    customers: IdSet = field(default_factory=IdSet)  # whose stages and referrals to settle at the end
    late: dict[int, tuple[datetime, int]] = field(default_factory=dict)  # customer -> last late payment
    stage_changes: int = 0
    referrals_verified: int = 0


def _when(
    text: str | None, config: Config, now: datetime, *, end_of_day: bool = False, happened: str | None = None
) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = parse_when(text, config.tz, now=now, end_of_day=end_of_day, date_order=config.date_order)
    except Invalid as exc:
        raise Invalid(f"{happened or 'due'}: {exc}") from None
    return check_happened(moment, happened, now=now, tz=config.tz) if happened else moment


def validate_row(line: int, raw: dict[str, str], run: PurchaseRun) -> Row:
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    config = run.config
    customer = (raw.get("customer") or "").strip()
    if not customer:
        raise Invalid("no customer given")
    amount = parse_money(
        raw.get("amount") or "",
        config.currency.minor_digits,
        decimal_comma=config.decimal_comma,
        currency=config.currency.code,
    )
    if amount < 0:
        raise Invalid("the amount cannot be negative (record a refund with 'crmcli purchase refund')")
    at = _when(raw.get("at"), config, run.now, happened="at") or run.now
    due = _when(raw.get("due"), config, run.now, end_of_day=True)
    paid = _when(raw.get("paid_at"), config, run.now, happened="paid_at")
    if due is not None and due < at:
        raise Invalid("the due date is before the purchase")
    if paid is None and due is None:
        paid = at  # a sale with no terms was paid at the till
    return Row(
        line,
        raw,
        customer,
        amount,
        at,
        due,
        paid,
        (raw.get("coupon") or "").strip() or None,
        (raw.get("ref") or "").strip() or None,
    )


def import_purchases(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | None = None,
    on_duplicate: str = "error",
    progress: Any = None,
) -> dict[str, Any]:
    """Import purchases in one transaction: all or nothing unless ``reject_file`` is given.

    Rows are written in batches with set-based SQL; points are earned on each row's
    amount; late payments reset points, stages advance and pending referrals are
    verified once, at the end.
    """
    check_options(on_duplicate, reject_file)
    source = open_source(path, options, fields=FIELDS, required=("customer", "amount"))
    run = PurchaseRun(config=config, on_duplicate=on_duplicate, now=utcnow())

    def finish(session: Session) -> None:
        _reset_after_late_payments(session, run)
        run.stage_changes = _advance_stages(session, run)
        run.referrals_verified = _verify_referrals(session, run)

    try:
        run_import(
            db=db,
            source=source,
            run=run,
            batch_size=BATCH,
            dry_run=dry_run,
            reject_file=reject_file,
            progress=progress,
            validate=lambda line, raw: validate_row(line, raw, run),
            write_batch=lambda session, batch: _write_batch(session, batch, run),
            finish=finish,
        )
    finally:
        source.close()
    return {**run.counts(dry_run), "stage_changes": run.stage_changes, "referrals_verified": run.referrals_verified}


def _resolve_customers(session: Session, names: set[str]) -> dict[str, int]:
    """Customer id for each identifier (id, email or ref) used in a batch."""
    c = table_of(Customer)
    emails: dict[str, list[str]] = {}
    for name in names:
        if "@" in name:
            emails.setdefault(name.lower(), []).append(name)
    ids = [int(n) for n in names if n.isdigit()]
    conditions = [c.c.ref.in_(names)]
    if emails:
        conditions.append(c.c.email.in_(emails))
    if ids:
        conditions.append(c.c.id.in_(ids))
    found: dict[str, int] = {}
    for cid, email, ref in session.execute(
        select(c.c.id, c.c.email, c.c.ref).where(or_(*conditions), c.c.erased_at.is_(None))
    ):
        for name in emails.get(email or "", ()):
            found[name] = cid
        if ref in names:
            found[ref] = cid  # a ref wins over an id of the same digits: exports name customers by ref
        if str(cid) in names:
            found.setdefault(str(cid), cid)
    return found


def _write_batch(session: Session, batch: list[Row], run: PurchaseRun) -> None:
    p = table_of(Purchase)
    customers = _resolve_customers(session, {r.customer for r in batch})
    refs = {r.ref for r in batch if r.ref}
    existing: dict[str, int] = {}
    if refs:
        existing = dict(session.execute(select(p.c.ref, p.c.id).where(p.c.ref.in_(refs))).all())
    seen: dict[str, int] = {}
    plain: list[tuple[Row, int]] = []
    special: list[tuple[Row, int]] = []
    for row in batch:
        cid = customers.get(row.customer)
        if cid is None:
            run.reject(row.line, row.raw, f"no customer {row.customer!r}")
            continue
        if row.ref is not None:
            if row.ref in seen:
                run.reject(row.line, row.raw, f"same ref as line {seen[row.ref]} of this file")
                continue
            seen[row.ref] = row.line
            if row.ref in existing:
                if run.on_duplicate == "skip":
                    run.skipped += 1
                elif run.on_duplicate == "update":
                    _update_payment(session, existing[row.ref], row, run)
                else:
                    run.reject(
                        row.line,
                        row.raw,
                        f"ref {row.ref} is already purchase {existing[row.ref]} (use --on-duplicate skip or update)",
                    )
                continue
        # A coupon changes another record: take the careful path, row by row.
        (special if row.coupon else plain).append((row, cid))
        run.customers.add(cid)
    if plain:
        _insert_plain(session, plain, run)
    for row, cid in special:
        _insert_special(session, row, cid, run)


PURCHASE_COLUMNS = (
    "customer_id",
    "ref",
    "gross_minor",
    "coupon_discount_minor",
    "points_used",
    "points_discount_minor",
    "net_minor",
    "at",
    "due_at",
    "paid_at",
    "created_at",
)


def _insert_plain(session: Session, rows: list[tuple[Row, int]], run: PurchaseRun) -> None:
    """One executemany for the purchases, then their points and late payments in set-based SQL.

    The new rows are found again as those above the previous largest id that carry this
    import's ``created_at``, so no per-row RETURNING is needed.
    """
    p, e = table_of(Purchase), table_of(PointsEntry)
    conn = session.connection()
    last_id = conn.execute(select(func.coalesce(func.max(p.c.id), 0))).scalar_one()
    values = [
        {
            "customer_id": cid,
            "ref": r.ref,
            "gross_minor": r.amount_minor,
            "coupon_discount_minor": 0,
            "points_used": 0,
            "points_discount_minor": 0,
            "net_minor": r.amount_minor,
            "at": r.at,
            "due_at": r.due_at,
            "paid_at": r.paid_at,
            "created_at": run.now,
        }
        for r, cid in rows
    ]
    insert_rows(conn, p, PURCHASE_COLUMNS, values)
    new = and_(p.c.id > last_id, p.c.created_at == literal(run.now, UTCDateTime()))
    num, den = run.config.points.per_currency_unit.as_integer_ratio()
    earned = (p.c.net_minor * num) // (den * 10**run.config.currency.minor_digits)
    conn.execute(
        insert(e).from_select(
            ["customer_id", "delta", "kind", "reason", "purchase_id", "at"],
            select(
                p.c.customer_id, earned, literal("earn"), literal("purchase ") + cast(p.c.id, String), p.c.id, p.c.at
            )
            .where(new, earned > 0)
            .order_by(p.c.id),
        )
    )
    for cid, paid_at, pid in conn.execute(
        select(p.c.customer_id, p.c.paid_at, p.c.id).where(new, p.c.paid_at > p.c.due_at)
    ):
        if cid not in run.late or run.late[cid][0] < paid_at:
            run.late[cid] = (paid_at, pid)
    run.inserted += len(rows)


def _insert_special(session: Session, row: Row, cid: int, run: PurchaseRun) -> None:
    from crmcli.services.purchases import PurchaseInput, add_purchase

    customer = session.get(Customer, cid)
    assert customer is not None
    data = PurchaseInput(
        amount_minor=row.amount_minor,
        at=row.at,
        coupon=row.coupon,
        due_at=row.due_at,
        paid_at=row.paid_at,
        unpaid=row.paid_at is None,
        ref=row.ref,
    )
    try:
        with session.begin_nested():
            add_purchase(session=session, customer=customer, data=data, config=run.config, now=run.now)
    except CrmError as exc:
        run.reject(row.line, row.raw, str(exc))
        return
    run.inserted += 1


def _update_payment(session: Session, purchase_id: int, row: Row, run: PurchaseRun) -> None:
    """--on-duplicate update: a later export of the same sale brings its due date and payment."""
    from crmcli.services.purchases import pay_purchase

    p = table_of(Purchase)
    current = session.execute(select(p.c.paid_at, p.c.due_at).where(p.c.id == purchase_id)).one()
    if row.due_at is not None and current.due_at != row.due_at:
        session.execute(update(p).where(p.c.id == purchase_id).values(due_at=row.due_at))
    if current.paid_at is None and row.paid_at is not None and row.raw.get("paid_at", "").strip():
        pay_purchase(session=session, purchase_id=purchase_id, config=run.config, at=row.paid_at)
    run.updated += 1


def _reset_after_late_payments(session: Session, run: PurchaseRun) -> None:
    """Points reset for customers who paid late: the balance earned up to their last late
    payment in the file goes, as one ledger entry (what came after it stays)."""
    if not run.late or not run.config.points.reset_on_late_payment:
        return
    e = table_of(PointsEntry)
    ids = sorted(run.late)
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        before: dict[int, int] = dict.fromkeys(chunk, 0)
        total: dict[int, int] = dict.fromkeys(chunk, 0)
        for cid, at, delta in session.execute(
            select(e.c.customer_id, e.c.at, e.c.delta).where(e.c.customer_id.in_(chunk))
        ):
            total[cid] += delta
            if at <= run.late[cid][0]:
                before[cid] += delta
        resets = [
            {
                "customer_id": cid,
                "delta": -min(before[cid], total[cid]),
                "kind": "reset",
                "period": None,
                "reason": f"late payment of purchase {run.late[cid][1]}",
                "purchase_id": None,
                "at": run.late[cid][0],
            }
            for cid in chunk
            if min(before[cid], total[cid]) > 0
        ]
        if resets:
            session.execute(insert(e), resets)


def _advance_stages(session: Session, run: PurchaseRun) -> int:
    """Customers with one live purchase become 'customer', with two or more 'repeat'."""
    if not run.customers:
        return 0
    c, p, sc = table_of(Customer), table_of(Purchase), table_of(StageChange)
    changed = 0
    ids = run.customers.sorted()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        counts = (
            select(p.c.customer_id, func.count().label("n"))
            .where(p.c.customer_id.in_(chunk), p.c.refunded_at.is_(None))
            .group_by(p.c.customer_id)
            .subquery()
        )
        for target, behind, condition in (
            ("repeat", ("lost", "lead", "verified", "prospect", "customer"), counts.c.n >= 2),
            ("customer", ("lost", "lead", "verified", "prospect"), counts.c.n == 1),
        ):
            moving = (
                select(c.c.id, c.c.stage)
                .join(counts, counts.c.customer_id == c.c.id)
                .where(c.c.stage.in_(behind), condition)
            )
            rows = session.execute(moving).all()
            if not rows:
                continue
            session.execute(
                insert(sc),
                [{"customer_id": cid, "from_stage": stage, "to_stage": target, "at": run.now} for cid, stage in rows],
            )
            session.execute(
                update(c).where(c.c.id.in_([cid for cid, _ in rows])).values(stage=target, updated_at=run.now)
            )
            changed += len(rows)
    return changed


def _verify_referrals(session: Session, run: PurchaseRun) -> int:
    """Verify the pending referrals of imported customers who now have a qualifying purchase,
    as of that purchase, and reward both sides: a few statements per 900 customers."""
    from crmcli.services.referrals import reward_all

    if not run.customers:
        return 0
    r, p = table_of(Referral), table_of(Purchase)
    threshold = parse_money(run.config.referrals.qualifying_purchase, run.config.currency.minor_digits)
    first_qualifying = (
        select(func.min(p.c.at))
        .where(p.c.customer_id == r.c.referred_id, p.c.refunded_at.is_(None), p.c.net_minor >= threshold)
        .scalar_subquery()
    )
    verified = 0
    ids = run.customers.sorted()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        found = session.execute(
            select(Referral, first_qualifying)
            .where(r.c.status == "pending", r.c.referred_id.in_(chunk), first_qualifying.is_not(None))
            .order_by(r.c.id)
            .with_for_update()
        ).all()
        if not found:
            continue
        session.execute(
            update(r).where(r.c.id == bindparam("rid")).values(status="verified", decided_at=bindparam("when")),
            [{"rid": ref.id, "when": max(at, ref.created_at)} for ref, at in found],
        )
        reward_all(session, [ref for ref, _ in found], run.config, run.now)
        verified += len(found)
    return verified


def export_purchases(*, db: Database, config: Config, path: Path | None, fmt: str = "csv", bom: bool = True) -> int:
    """Purchases in import-column order; the customer is named by ref, else email, else id."""
    if fmt not in ("csv", "json"):
        raise Invalid(f"export format must be csv or json, not {fmt!r}")
    p, c, k = table_of(Purchase), table_of(Customer), table_of(Purchase).c
    from crmcli.models import Coupon

    coupon = table_of(Coupon)
    digits = config.currency.minor_digits
    query = (
        select(c.c.ref, c.c.email, c.c.id, k.gross_minor, k.at, k.due_at, k.paid_at, coupon.c.code, k.ref)
        .select_from(p.join(c, c.c.id == k.customer_id).outerjoin(coupon, coupon.c.id == k.coupon_id))
        .where(k.refunded_at.is_(None))
        .order_by(k.id)
    )

    def rows(conn: Any) -> Any:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for ref, email, cid, gross, at, due, paid, code, pref in result:
            yield (
                ref or email or str(cid),
                str(money(gross, digits)),
                _iso(at, config),
                _iso(due, config),
                _iso(paid, config),
                code,
                pref,
            )

    encoding = "utf-8-sig" if fmt == "csv" and bom else "utf-8"
    writer = write_csv if fmt == "csv" else write_json
    with db.engine.connect() as conn, output_stream(path, encoding=encoding) as handle:
        return writer(handle, FIELDS, rows(conn))


def _iso(moment: datetime | None, config: Config) -> str | None:
    return moment.astimezone(config.tz).isoformat(timespec="seconds") if moment else None
