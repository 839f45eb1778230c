"""Purchase CSV import (a till's history: batched, all-or-nothing) and export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, literal, select, update
from sqlmodel import Session

from crmcli.bulk import insert_rows
from crmcli.choices import EXPORT_FORMATS
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Conflict, CrmError, Invalid
from crmcli.io.importing import ImportRun, check_options, run_import
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import Target, output_stream, write_csv, write_json
from crmcli.models import Customer, Purchase, UTCDateTime, table_of
from crmcli.values import check_happened, money, parse_money, parse_when, utcnow

FIELDS = (
    "customer",
    "amount",
    "at",
    "due",
    "paid_at",
    "refunded_at",
    "coupon",
    "coupon_discount",
    "points",
    "points_discount",
    "net",
    "ref",
)
# The sale's own figures, as an export writes them: a row with any of them is imported as recorded.
RECORDED = ("coupon_discount", "points", "points_discount", "net")
# Unambiguous ways to name the customer, read as the explicit forms id:, ref:, email:, phone:.
CUSTOMER_COLUMNS = {"customer_id": "id", "customer_ref": "ref", "customer_email": "email", "customer_phone": "phone"}
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
    refunded_at: datetime | None
    coupon: str | None
    ref: str | None
    # The recorded figures (None: work them out as a command would).
    coupon_discount_minor: int | None = None
    points_used: int = 0
    points_discount_minor: int = 0

    @property
    def recorded(self) -> bool:
        return self.coupon_discount_minor is not None

    @property
    def net_minor(self) -> int:
        return self.amount_minor - (self.coupon_discount_minor or 0) - self.points_discount_minor


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
    customers: IdSet = field(default_factory=IdSet)  # whose points, stages and referrals to settle at the end
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


def _customer_cell(raw: dict[str, str]) -> str:
    """The customer as one identifier: the ``customer`` cell, or an unambiguous column as its
    explicit form (``customer_ref`` 12 is ``ref:12``)."""
    text = raw.get("customer")
    if text is not None and CUSTOMER_COLUMNS.keys().isdisjoint(raw):  # the usual file: one customer column
        if text := text.strip():
            return text
        raise Invalid("no customer given")
    given = [(c, text) for c in ("customer", *CUSTOMER_COLUMNS) if (text := (raw.get(c) or "").strip())]
    if not given:
        raise Invalid("no customer given")
    if len(given) > 1:
        raise Invalid(f"give the customer in one column, not {' and '.join(c for c, _ in given)}")
    column, customer = given[0]
    return f"{CUSTOMER_COLUMNS[column]}:{customer}" if column in CUSTOMER_COLUMNS else customer


def validate_row(line: int, raw: dict[str, str], run: PurchaseRun) -> Row:
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    config = run.config
    customer = _customer_cell(raw)
    amount = parse_money(
        raw.get("amount") or "",
        config.currency.minor_digits,
        decimal_comma=config.decimal_comma,
        currency=config.currency.code,
    )
    if amount < 0:
        raise Invalid("the amount cannot be negative: a refund is recorded on the sale it refunds")
    at = _when(raw.get("at"), config, run.now, happened="at") or run.now
    due = _when(raw.get("due"), config, run.now, end_of_day=True)
    paid = _when(raw.get("paid_at"), config, run.now, happened="paid_at")
    refunded = _when(raw.get("refunded_at"), config, run.now, happened="refunded_at")
    if due is not None and due < at:
        raise Invalid("the due date is before the purchase")
    if refunded is not None and refunded < at:
        raise Invalid("the refund is before the purchase")
    if paid is None and due is None:
        paid = at  # a sale with no terms was paid at the till
    row = Row(
        line,
        raw,
        customer,
        amount,
        at,
        due,
        paid,
        refunded,
        (raw.get("coupon") or "").strip() or None,
        (raw.get("ref") or "").strip() or None,
    )
    if any((raw.get(column) or "").strip() for column in RECORDED):
        _read_recorded(row, raw, config)
    return row


def _read_recorded(row: Row, raw: dict[str, str], config: Config) -> None:
    """The discounts and net amount a sale was recorded with (another database's export): kept as
    they are, checked to add up, rather than worked out again from today's coupons and points."""
    from crmcli.services.points import points_value_minor
    digits = config.currency.minor_digits

    def amount(column: str) -> int | None:
        text = (raw.get(column) or "").strip()
        if not text:
            return None
        value = parse_money(text, digits, decimal_comma=config.decimal_comma, currency=config.currency.code)
        if value < 0:
            raise Invalid(f"{column} cannot be negative")
        return value

    coupon_discount = amount("coupon_discount") or 0
    if coupon_discount and row.coupon is None:
        raise Invalid("a coupon discount needs the coupon it came from")
    points_text = (raw.get("points") or "").strip()
    if points_text and not (points_text.isascii() and points_text.isdigit()):
        raise Invalid(f"points must be a whole number, not {points_text!r}")
    points = int(points_text) if points_text else 0
    points_discount = amount("points_discount")
    if points_discount is None:
        points_discount = points_value_minor(points, config)
    if points_discount and not points:
        raise Invalid("a points discount needs the points spent")
    row.coupon_discount_minor, row.points_used, row.points_discount_minor = coupon_discount, points, points_discount
    if row.net_minor < 0:
        raise Invalid("the discounts are more than the amount")
    net = amount("net")
    if net is not None and net != row.net_minor:
        raise Invalid(
            f"net {money(net, digits)} is not the amount less the discounts ({money(row.net_minor, digits)})"
        )


def import_purchases(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | Target | None = None,
    on_duplicate: str = "error",
    progress: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Import purchases in one transaction: all or nothing unless ``reject_file`` is given.

    Rows are written in batches with set-based SQL; points are earned on each row's
    amount; late payments reset points, stages advance and pending referrals are
    verified once, at the end.
    """
    check_options(on_duplicate, reject_file)
    required = (("customer", *CUSTOMER_COLUMNS), "amount")
    source = open_source(path, options, fields=FIELDS + tuple(CUSTOMER_COLUMNS), required=required)
    run = PurchaseRun(config=config, on_duplicate=on_duplicate, now=now or utcnow())

    def finish(session: Session) -> None:
        from crmcli.services.points import settle_points
        from crmcli.services.referrals import verify_referrals
        from crmcli.services.stages import settle_stages

        customers = run.customers.sorted()
        settle_points(session, config, customers, now=run.now)
        run.stage_changes = settle_stages(session, customers)
        run.referrals_verified = len(verify_referrals(session, config, customers, now=run.now))

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


def _write_batch(session: Session, batch: list[Row], run: PurchaseRun) -> None:
    p = table_of(Purchase)
    from crmcli.services.identify import resolve

    customers = resolve(session, {r.customer for r in batch}, run.config.default_phone_region)
    refs = {r.ref for r in batch if r.ref}
    existing: dict[str, int] = {}
    if refs:
        existing = dict(session.execute(select(p.c.ref, p.c.id).where(p.c.ref.in_(refs))).all())
    seen: dict[str, int] = {}
    plain: list[tuple[Row, int]] = []
    special: list[tuple[Row, int]] = []
    for row in batch:
        match = customers[row.customer]
        if match.customer is None:
            run.reject(row.line, row.raw, match.problem())
            continue
        cid = match.customer.id
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
        # A coupon changes another record: take the command's path, row by row (unless the row
        # brings the discount it was given: then it is written as recorded).
        (special if row.coupon and not row.recorded else plain).append((row, cid))
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
    "refunded_at",
    "created_at",
    "coupon_id",
)


def _insert_plain(session: Session, rows: list[tuple[Row, int]], run: PurchaseRun) -> None:
    """One executemany for the purchases, then the points rules on the whole batch.

    The new rows are found again as those above the previous largest id that carry this
    import's ``created_at``, so no per-row RETURNING is needed.
    """
    from crmcli.services.points import record_purchase_points, record_refund_points

    p = table_of(Purchase)
    conn = session.connection()
    coupon_ids = _recorded_coupons(session, [(r, cid) for r, cid in rows if r.coupon], run)
    rows = [(r, cid) for r, cid in rows if not r.coupon or r.line in coupon_ids]
    if not rows:
        return
    last_id = conn.execute(select(func.coalesce(func.max(p.c.id), 0))).scalar_one()
    values = [
        {
            "customer_id": cid,
            "ref": r.ref,
            "gross_minor": r.amount_minor,
            "coupon_discount_minor": r.coupon_discount_minor or 0,
            "points_used": r.points_used,
            "points_discount_minor": r.points_discount_minor,
            "net_minor": r.net_minor,
            "coupon_id": coupon_ids.get(r.line),
            "at": r.at,
            "due_at": r.due_at,
            "paid_at": r.paid_at,
            "refunded_at": r.refunded_at,
            "created_at": run.now,
        }
        for r, cid in rows
    ]
    insert_rows(conn, p, PURCHASE_COLUMNS, values)
    new = and_(p.c.id > last_id, p.c.created_at == literal(run.now, UTCDateTime()))
    record_purchase_points(session, run.config, new)
    if any(r.refunded_at for r, _ in rows):
        refunded = list(session.execute(select(p.c.id).where(new, p.c.refunded_at.is_not(None))).scalars())
        record_refund_points(session, refunded)
    run.inserted += len(rows)


def _recorded_coupons(session: Session, rows: list[tuple[Row, int]], run: PurchaseRun) -> dict[int, int]:
    """Line -> coupon id for sales recorded with a coupon. A code the database has is used (its
    uses counted, within its limit); a code it lacks is recreated from the recorded discount: a
    fixed-amount coupon of the first sale's customer, issued at its first use, with as many uses
    as the file's sales of it."""
    from crmcli.models import Coupon
    from crmcli.services.campaigns import charge_campaign
    from crmcli.services.coupons import normalise_code

    if not rows:
        return {}
    c = table_of(Coupon)
    by_code: dict[str, list[tuple[Row, int]]] = {}
    for row, cid in rows:
        assert row.coupon is not None
        by_code.setdefault(normalise_code(row.coupon), []).append((row, cid))
    known = {
        code: (cid, uses, max_uses, campaign)
        for code, cid, uses, max_uses, campaign in session.execute(
            select(c.c.code, c.c.id, c.c.uses, c.c.max_uses, c.c.campaign).where(c.c.code.in_(list(by_code)))
        )
    }
    new = [
        {
            "code": code,
            "customer_id": used[0][1],
            "percent_bp": None,
            "amount_minor": min(r.coupon_discount_minor or 0 for r, _ in used),
            "min_spend_minor": 0,
            "expires_at": None,
            "max_uses": len(used),
            "uses": 0,
            "campaign": None,
            "voided_at": None,
            "created_at": min(r.at for r, _ in used),
        }
        for code, used in by_code.items()
        if code not in known
    ]
    if new:
        insert_rows(session.connection(), c, list(new[0]), new)
        for code, cid in session.execute(select(c.c.code, c.c.id).where(c.c.code.in_([n["code"] for n in new]))):
            known[code] = (cid, 0, len(by_code[code]), None)
    found: dict[int, int] = {}
    for code, used in by_code.items():
        coupon_id, uses, max_uses, campaign = known[code]
        taken = 0
        for row, _ in used:
            if uses + taken >= max_uses:
                run.reject(row.line, row.raw, f"coupon {code} has no uses left ({max_uses} of {max_uses} used)")
                continue
            if campaign is not None:
                try:  # the campaign's budget holds for a recorded use as for one typed at the till
                    charge_campaign(session, campaign, row.coupon_discount_minor or 0, run.config)
                except Conflict as exc:
                    run.reject(row.line, row.raw, str(exc))
                    continue
            taken += 1
            found[row.line] = coupon_id
        if taken:
            session.execute(update(c).where(c.c.id == coupon_id).values(uses=c.c.uses + taken))
    return found


def _insert_special(session: Session, row: Row, cid: int, run: PurchaseRun) -> None:
    from crmcli.services.purchases import PurchaseInput, add_purchase, refund_purchase

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
            purchase, _ = add_purchase(session=session, customer=customer, data=data, config=run.config, now=run.now)
            if row.refunded_at is not None:
                assert purchase.id is not None
                refund_purchase(session=session, purchase_id=purchase.id, config=run.config, at=row.refunded_at)
    except CrmError as exc:
        run.reject(row.line, row.raw, str(exc))
        return
    run.inserted += 1


def _update_payment(session: Session, purchase_id: int, row: Row, run: PurchaseRun) -> None:
    """--on-duplicate update: a later export of the same sale brings its due date and payment."""
    from crmcli.services.purchases import pay_purchase, refund_purchase

    p = table_of(Purchase)
    current = session.execute(select(p.c.paid_at, p.c.due_at, p.c.refunded_at).where(p.c.id == purchase_id)).one()
    if row.due_at is not None and current.due_at != row.due_at:
        session.execute(update(p).where(p.c.id == purchase_id).values(due_at=row.due_at))
    if current.paid_at is None and row.paid_at is not None and row.raw.get("paid_at", "").strip():
        pay_purchase(session=session, purchase_id=purchase_id, config=run.config, at=row.paid_at)
    if current.refunded_at is None and row.refunded_at is not None:
        refund_purchase(session=session, purchase_id=purchase_id, config=run.config, at=row.refunded_at, now=run.now)
    run.updated += 1


def export_purchases(
    *, db: Database, config: Config, path: Path | Target | None, fmt: str = "csv", bom: bool = True
) -> int:
    """Purchases in import-column order with everything needed to rebuild them: the gross amount,
    the coupon with its discount, the points spent with their discount, the net amount, the due,
    payment and refund times. The customer is named by ref, else email, else phone, else id, in
    the explicit form (``ref:12``) so that no import reads a numeric ref as another customer's id."""
    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"export format must be csv or json, not {fmt!r}")
    p, c, k = table_of(Purchase), table_of(Customer), table_of(Purchase).c
    from crmcli.models import Coupon

    coupon = table_of(Coupon)
    digits = config.currency.minor_digits
    query = (
        select(
            c.c.ref,
            c.c.email,
            c.c.phone,
            c.c.id,
            k.gross_minor,
            k.at,
            k.due_at,
            k.paid_at,
            k.refunded_at,
            coupon.c.code,
            k.coupon_discount_minor,
            k.points_used,
            k.points_discount_minor,
            k.net_minor,
            k.ref,
        )
        .select_from(p.join(c, c.c.id == k.customer_id).outerjoin(coupon, coupon.c.id == k.coupon_id))
        .order_by(k.id)
    )

    def rows(conn: Any) -> Any:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for ref, email, phone, cid, gross, at, due, paid, refunded, code, off, points, points_off, net, pref in result:
            yield (
                f"ref:{ref}" if ref else f"email:{email}" if email else f"phone:{phone}" if phone else f"id:{cid}",
                str(money(gross, digits)),
                _iso(at, config),
                _iso(due, config),
                _iso(paid, config),
                _iso(refunded, config),
                code,
                str(money(off, digits)),
                points,
                str(money(points_off, digits)),
                str(money(net, digits)),
                pref,
            )

    encoding = "utf-8-sig" if fmt == "csv" and bom else "utf-8"
    writer = write_csv if fmt == "csv" else write_json
    with db.engine.connect() as conn, output_stream(path, encoding=encoding) as handle:
        return writer(handle, FIELDS, rows(conn))


def _iso(moment: datetime | None, config: Config) -> str | None:
    # Whole seconds print as such; a time with microseconds keeps them, so an import reads it back exactly.
    return moment.astimezone(config.tz).isoformat() if moment else None
