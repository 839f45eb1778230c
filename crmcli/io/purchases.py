"""Purchase CSV import (a till's history: batched, all-or-nothing) and export."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from crmcli.bulk import insert_rows, insert_tuples, rows_in, sqlite_time
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Conflict, CrmError, Invalid
from crmcli.io.importing import (
    BULK_CACHE_KB,
    ImportRun,
    bulk_cache,
    check_options,
    indexes_built_after,
    write_rejects,
)
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import Target, customer_cell, write_export
from crmcli.models import Customer, PointsEntry, Purchase, UTCDateTime, table_of
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
RECORDED_COLUMNS = frozenset(RECORDED)
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


@dataclass
class PurchaseRun(ImportRun):
    stage_changes: int = 0
    referrals_verified: int = 0
    plain: int = 0  # rows staged for the set-based insert
    fingerprint: tuple[Any, ...] = ()  # customers and purchases when staging began
    partial: set[int] = field(default_factory=set)  # refused rows known by customer and ref only
    sold_before: int = 0  # the last purchase id before this import's rows

    def refuse(
        self, line: int, raw: str | None, customer: str, ref: str | None, reason: str, *, duplicate: bool = False
    ) -> None:
        """Refuse a staged row (its cells are read again from the file for the rejected-rows file);
        ``duplicate``: ``reason`` says which record the database already has."""
        if raw is None:
            self.partial.add(line)
        cells = json.loads(raw) if raw else {"customer": customer, "ref": ref or ""}
        (self.duplicate if duplicate else self.reject)(line, cells, reason)


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
    # (empty cells, most of them, skip the call)
    due = _when(text, config, run.now, end_of_day=True) if (text := raw.get("due")) else None
    paid = _when(text, config, run.now, happened="paid_at") if (text := raw.get("paid_at")) else None
    refunded = _when(text, config, run.now, happened="refunded_at") if (text := raw.get("refunded_at")) else None
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
    # (a file without those columns, most of them, skips the check with one set operation)
    if not RECORDED_COLUMNS.isdisjoint(raw) and any((raw.get(column) or "").strip() for column in RECORDED):
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
        raise Invalid(f"net {money(net, digits)} is not the amount less the discounts ({money(row.net_minor, digits)})")


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

    Two phases on one connection. First, without the write lock, every row is read,
    validated and its customer resolved, and the rows are staged in a TEMP table (other
    writers, a till's sale, go on meanwhile). Then one write transaction re-checks what
    another writer changed since (only if the database changed), inserts the staged rows
    with one INSERT ... SELECT and runs the rules: points earned on each row's amount,
    then late-payment resets, stages and referrals settled once, at the end.
    """
    check_options(on_duplicate, reject_file)
    required = (("customer", *CUSTOMER_COLUMNS), "amount")
    source = open_source(path, options, fields=FIELDS + tuple(CUSTOMER_COLUMNS), required=required)
    run = PurchaseRun(config=config, on_duplicate=on_duplicate, now=now or utcnow())
    staged = _staging_table()
    try:
        with db.staging_connection() as (conn, own):
            try:
                version = _stage(conn, staged, source, run, progress, own=own)
                if run.problems and reject_file is None:
                    _fail(run, source.label)  # refused before the write lock was ever taken
                with db.session(write=True, connection=conn) as session:
                    bulk_cache(session)
                    # (in a batch's one transaction, nothing else can have written meanwhile)
                    if own and (version is None or _version(conn) != version):
                        _recheck(session, staged, run, version)
                        if run.problems and reject_file is None:
                            session.rollback()
                            _fail(run, source.label)
                    _write_staged(session, staged, run)
                    if run.problems and reject_file is None:  # a coupon refused on its row
                        session.rollback()
                        _fail(run, source.label)
                    _settle(session, staged, run)
                    from crmcli.audit import note

                    note(session, file=source.label, **run.counts(dry_run))  # one audit entry per import
                    if dry_run:
                        session.rollback()
            finally:
                _drop(conn, staged, own=own)
        if reject_file is not None and run.rejected and not dry_run:
            if run.partial:
                _read_again(source, run)
            write_rejects(reject_file, source.fields, run.rejected)
    finally:
        source.close()
    return {**run.counts(dry_run), "stage_changes": run.stage_changes, "referrals_verified": run.referrals_verified}


def _read_again(source: Any, run: PurchaseRun) -> None:
    """The cells of the rows refused after staging, read again from the file (or from the copy
    of standard input, which lives until the source is closed)."""
    cells = {line: raw for line, raw in source.rows() if line in run.partial}
    run.rejected = [(line, cells.get(line, raw), reason) for line, raw, reason in run.rejected]


def _fail(run: PurchaseRun, label: str) -> None:
    raise run.failed(label)


# --- the staging area: a TEMP table on the import's own connection ---------------------------

STAGED = "import_purchase_rows"


def _staging_table() -> Table:
    """The validated rows, with their customer resolved; ``action`` says what the write does:
    ``insert`` (set-based), ``special`` (a coupon: the command's path) or ``update``."""
    return Table(
        STAGED,
        MetaData(),
        Column("line", Integer, primary_key=True),
        Column("action", String, nullable=False),
        Column("customer_id", Integer, nullable=False),
        Column("customer", String, nullable=False),  # the cell, resolved again if customers changed meanwhile
        Column("target_id", Integer),  # update: the purchase with this ref
        Column("ref", String),  # duplicates within the file are found once, at the end of staging
        Column("amount_minor", BigInteger, nullable=False),
        Column("at", UTCDateTime, nullable=False),
        Column("due_at", UTCDateTime),
        Column("paid_at", UTCDateTime),
        Column("refunded_at", UTCDateTime),
        Column("coupon", String),
        # the figures the sale was recorded with (an export read back); NULL: a command works them out
        Column("coupon_discount_minor", BigInteger),
        Column("points_used", BigInteger, nullable=False),
        Column("points_discount_minor", BigInteger, nullable=False),
        Column("coupon_id", Integer),  # a recorded coupon, found or recreated at the write
        Column("raw", String),  # the cells as JSON, for the rows taken one by one (few)
        prefixes=["TEMPORARY"],
    )


STAGED_COLUMNS = (
    "line",
    "action",
    "customer_id",
    "customer",
    "target_id",
    "ref",
    "amount_minor",
    "at",
    "due_at",
    "paid_at",
    "refunded_at",
    "coupon",
    "coupon_discount_minor",
    "points_used",
    "points_discount_minor",
    "raw",
)


STAGE_SQL = f"INSERT INTO {STAGED} ({', '.join(STAGED_COLUMNS)}) VALUES ({', '.join('?' * len(STAGED_COLUMNS))})"


def _sqlite_time(moment: datetime | None) -> str | None:
    return None if moment is None else sqlite_time(moment)


def _same(moment: datetime | None) -> datetime | None:
    return moment


def _drop(conn: Any, staged: Table, *, own: bool) -> None:
    """Drop the staging table; on a connection of its own, outside any transaction."""
    if not own:  # (the shared transaction rolls it back with the rest if it failed)
        with suppress(DBAPIError):
            staged.drop(conn, checkfirst=True)
        return
    if conn.in_transaction():
        conn.rollback()
    staged.drop(conn, checkfirst=True)
    conn.commit()


def _version(conn: Any) -> int | None:
    """SQLite's count of commits by other connections (None elsewhere: always re-check)."""
    if conn.dialect.name != "sqlite":
        return None
    return int(conn.exec_driver_sql("PRAGMA data_version").scalar_one())


def _fingerprint(conn: Any) -> tuple[Any, ...]:
    """Customers and purchases summed up: adding, merging, erasing or editing a customer changes
    the first four figures; the last is the newest purchase."""
    c, p = table_of(Customer), table_of(Purchase)
    row = conn.execute(
        select(func.count(), func.max(c.c.id), func.max(c.c.updated_at), func.count(c.c.erased_at))
    ).one()
    return (*row, conn.execute(select(func.max(p.c.id))).scalar())


def _stage(conn: Any, staged: Table, source: Any, run: PurchaseRun, progress: Any, *, own: bool) -> int | None:
    """Phase one, under no write lock: read, validate, resolve and stage every row.

    Returns SQLite's data version from before the snapshot began, for the write phase to
    see whether another connection committed since.
    """
    _drop(conn, staged, own=own)
    staged.create(conn)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA temp.cache_size = -{BULK_CACHE_KB // 4}")
    version = _version(conn)  # read before the snapshot starts: a commit in between only costs a re-check
    run.fingerprint = _fingerprint(conn)
    from crmcli.io.parallel import validated_batches

    when = _sqlite_time if conn.dialect.name == "sqlite" else _same
    # (a large file is read and validated by a second process while this one stages)
    for batch in validated_batches(
        source,
        lambda line, raw: _ready(validate_row(line, raw, run), when),
        size=BATCH,
        reject=run.reject,
        progress=progress,
    ):
        _stage_batch(conn, staged, batch, run)
    _refuse_repeated_refs(conn, staged, run)
    if own:
        conn.commit()
    return version


_COLUMNS: dict[tuple[str, ...], tuple[str, ...]] = {}  # a file's few column lists, each one object


def _ready(row: Row, when: Callable[[datetime | None], Any]) -> tuple[Any, ...]:
    """A validated row as the plain values staging needs: (line, customer, ref, special,
    figures, columns, cells). ``figures`` are its staged columns from the amount on, times in
    the database's form; the cells travel as a column list shared by the rows and their values
    (cheap to send between processes), made a dict again only for the few rows that need it."""
    at = when(row.at)
    figures = (
        row.amount_minor,
        at,
        when(row.due_at),
        at if row.paid_at is row.at else when(row.paid_at),  # a sale paid at the till
        when(row.refunded_at),
        row.coupon,
        row.coupon_discount_minor,
        row.points_used,
        row.points_discount_minor,
    )
    columns = tuple(row.raw)
    special = row.coupon is not None and not row.recorded  # a coupon to apply: the command's path
    return (
        row.line,
        row.customer,
        row.ref,
        special,
        figures,
        _COLUMNS.setdefault(columns, columns),
        tuple(row.raw.values()),
    )


def _refuse_repeated_refs(conn: Any, staged: Table, run: PurchaseRun) -> None:
    """A ref that comes back in a later batch of the file: the later rows are refused (one sort of
    the staged refs at the end, instead of an index kept up to date on every row)."""
    s = staged.c
    first = select(s.ref, func.min(s.line).label("first")).where(s.ref.is_not(None)).group_by(s.ref)
    repeated = first.having(func.count() > 1).subquery()
    rows = conn.execute(
        select(s.line, s.ref, s.raw, s.customer, repeated.c.first)
        .join(repeated, repeated.c.ref == s.ref)
        .where(s.line > repeated.c.first)
        .order_by(s.line)
    ).all()
    for line, ref, raw, customer, first_line in rows:
        run.refuse(line, raw, customer, ref, f"same ref as line {first_line} of this file")
        run.plain -= conn.execute(select(s.action).where(s.line == line)).scalar_one() == "insert"
        conn.execute(delete(staged).where(s.line == line))


def _stage_batch(conn: Any, staged: Table, batch: list[tuple[Any, ...]], run: PurchaseRun) -> None:
    """Resolve a batch of rows made ready by :func:`_ready` and write them to the staging table."""
    from crmcli.services.identify import resolve_ids

    p = table_of(Purchase)
    customers, problems = resolve_ids(conn, {item[1] for item in batch}, run.config.default_phone_region)
    refs = {item[2] for item in batch if item[2]}
    existing = _by_ref(conn, p, p.c.id, refs) if refs else {}
    seen: dict[str, int] = {}
    values: list[tuple[Any, ...]] = []
    for line, customer, ref, special, figures, columns, cells in batch:
        cid = customers.get(customer)
        if cid is None:
            run.reject(line, dict(zip(columns, cells, strict=True)), problems[customer].problem())
            continue
        action, target = "insert", None
        if ref is not None:
            if ref in seen:
                run.reject(line, dict(zip(columns, cells, strict=True)), f"same ref as line {seen[ref]} of this file")
                continue
            seen[ref] = line
            if ref in existing:
                if run.on_duplicate == "skip":
                    run.skipped += 1
                    continue
                if run.on_duplicate != "update":
                    what = f"ref {ref} is already purchase {existing[ref]}"
                    run.duplicate(line, dict(zip(columns, cells, strict=True)), what)
                    continue
                action, target = "update", existing[ref]
        if action == "insert" and special:
            action = "special"  # a coupon changes another record: the command's path, row by row
        run.plain += action == "insert"
        coupon = figures[5]
        raw = None if action == "insert" and not coupon else json.dumps(dict(zip(columns, cells, strict=True)))
        values.append((line, action, cid, customer, target, ref, *figures, raw))
    if conn.dialect.name == "sqlite" and values:
        conn.exec_driver_sql(STAGE_SQL, values)  # times already in SQLite's form
    elif values:
        insert_tuples(conn, staged, STAGED_COLUMNS, values)


def _by_ref(conn: Any, table: Table, value: Any, refs: set[str]) -> dict[str, int]:
    """ref -> ``value`` for the rows of ``table`` with these refs."""
    return dict(rows_in(conn, (table.c.ref, value), table.c.ref, refs))


def _recheck(session: Session, staged: Table, run: PurchaseRun, version: int | None) -> None:
    """The database changed between the phases: what another writer did meanwhile decides again.

    Customers are resolved again only when one was added, merged, erased or edited (always
    on PostgreSQL); refs are checked against the purchases recorded since.
    """
    conn = session.connection()
    p = table_of(Purchase)
    before = run.fingerprint
    if version is None or _fingerprint(conn)[:4] != before[:4]:
        _resolve_again(session, staged, run)
    since = p.c.id > before[4] if version is not None and before[4] is not None else p.c.id > 0
    clashes = session.execute(
        select(staged.c.line, staged.c.ref, staged.c.raw, staged.c.customer, p.c.id)
        .join(p, p.c.ref == staged.c.ref)
        .where(since, staged.c.action != "update")
        .order_by(staged.c.line)
    ).all()
    for line, ref, raw, customer, pid in clashes:
        if run.on_duplicate == "update":
            session.execute(update(staged).where(staged.c.line == line).values(action="update", target_id=pid))
            continue
        session.execute(delete(staged).where(staged.c.line == line))
        if run.on_duplicate == "skip":
            run.skipped += 1
        else:
            run.refuse(line, raw, customer, ref, f"ref {ref} is already purchase {pid}", duplicate=True)
    run.plain = session.execute(select(func.count()).where(staged.c.action == "insert")).scalar_one()


def _resolve_again(session: Session, staged: Table, run: PurchaseRun) -> None:
    from crmcli.services.identify import resolve_ids

    conn = session.connection()
    last = ""
    while True:
        texts = dict(
            session.execute(
                select(staged.c.customer, func.min(staged.c.customer_id))
                .where(staged.c.customer > last)
                .group_by(staged.c.customer)
                .order_by(staged.c.customer)
                .limit(BATCH)
            ).all()
        )
        if not texts:
            return
        last = max(texts)
        ids, problems = resolve_ids(conn, texts, run.config.default_phone_region)
        for text, cid in texts.items():
            if ids.get(text) == cid:
                continue
            if text in ids:
                session.execute(update(staged).where(staged.c.customer == text).values(customer_id=ids[text]))
                continue
            for line, raw, ref in session.execute(
                select(staged.c.line, staged.c.raw, staged.c.ref).where(staged.c.customer == text)
            ).all():
                run.refuse(line, raw, text, ref, problems[text].problem())
            session.execute(delete(staged).where(staged.c.customer == text))


def _write_staged(session: Session, staged: Table, run: PurchaseRun) -> None:
    """Phase two, in the write transaction: the plain rows in one INSERT ... SELECT and their
    points in set-based SQL, then the rows that take the command's path, in file order."""
    from crmcli.services.points import record_purchase_points, record_refund_points

    p = table_of(Purchase)
    _use_recorded_coupons(session, staged, run)
    last_id = run.sold_before = session.execute(select(func.coalesce(func.max(p.c.id), 0))).scalar_one()
    s = staged.c
    coupon_discount = func.coalesce(s.coupon_discount_minor, 0)
    rows = (
        select(
            s.customer_id,
            s.ref,
            s.amount_minor,
            coupon_discount,
            s.points_used,
            s.points_discount_minor,
            s.amount_minor - coupon_discount - s.points_discount_minor,
            s.at,
            s.due_at,
            s.paid_at,
            s.refunded_at,
            literal(run.now, UTCDateTime()),
            s.coupon_id,
        )
        .where(s.action == "insert")
        .order_by(s.line)
    )
    new = and_(p.c.id > last_id, p.c.created_at == literal(run.now, UTCDateTime()))
    with indexes_built_after(session, (p.name, table_of(PointsEntry).name), rows=run.plain, held=last_id):
        session.execute(insert(p).from_select(list(PURCHASE_COLUMNS), rows))
        record_purchase_points(session, run.config, new)
        refunded = list(session.execute(select(p.c.id).where(new, p.c.refunded_at.is_not(None))).scalars())
        record_refund_points(session, refunded)
    run.inserted += run.plain
    after = 0
    while True:  # the few rows taken one by one, a page at a time
        page = session.execute(
            select(staged).where(s.action != "insert", s.line > after).order_by(s.line).limit(1000)
        ).all()
        if not page:
            return
        for item in page:
            after = item.line
            row = Row(
                item.line,
                json.loads(item.raw),
                item.customer,
                item.amount_minor,
                item.at,
                item.due_at,
                item.paid_at,
                item.refunded_at,
                item.coupon,
                item.ref,
            )
            if item.action == "update":
                _update_payment(session, item.target_id, row, run)
            else:
                _insert_special(session, row, item.customer_id, run)


def _use_recorded_coupons(session: Session, staged: Table, run: PurchaseRun) -> None:
    """The sales recorded with a coupon and its discount take a use of it (the coupon recreated
    if the database lacks it); a row whose coupon has no use or budget left is refused."""
    s = staged.c
    found = session.execute(
        select(s.line, s.raw, s.customer, s.customer_id, s.amount_minor, s.at, s.coupon, s.coupon_discount_minor)
        .where(s.action == "insert", s.coupon.is_not(None))
        .order_by(s.line)
    ).all()
    if not found:
        return
    rows = [
        (Row(line, json.loads(raw), customer, amount, at, None, None, None, code, None, coupon_discount_minor=off), cid)
        for line, raw, customer, cid, amount, at, code, off in found
    ]
    coupons = _recorded_coupons(session, rows, run)
    if coupons:
        session.execute(
            update(staged).where(s.line == bindparam("row")).values(coupon_id=bindparam("found")),
            [{"row": line, "found": coupon} for line, coupon in coupons.items()],
        )
    refused = [{"row": row.line} for row, _ in rows if row.line not in coupons]
    if refused:
        session.execute(delete(staged).where(s.line == bindparam("row")), refused)
        run.plain -= len(refused)


def _settle(session: Session, staged: Table, run: PurchaseRun) -> None:
    """The rules, once, for every customer who bought: late payments, then stages, then
    referrals, each over the customers a page at a time (memory stays flat at any size)."""
    from crmcli.services.points import ShortOfPoints, settle_points
    from crmcli.services.referrals import verify_referrals
    from crmcli.services.stages import settle_stages

    buyers = Table(f"{STAGED}_customers", MetaData(), Column("id", Integer, primary_key=True), prefixes=["TEMPORARY"])
    conn = session.connection()
    buyers.drop(conn, checkfirst=True)
    buyers.create(conn)  # (inside the transaction: a failure rolls it back with the rest)
    # the customers of the staged rows, not of updates (their own path settled them)
    rows = select(staged.c.customer_id).where(staged.c.action != "update").distinct()
    session.execute(insert(buyers).from_select(["id"], rows))
    # the customers whose rows spent points (recorded figures), and those with no sale before
    # this file who redeemed points by hand (a points file imported with --before-sales, whose
    # sales are these): their spends are checked
    spenders = select(staged.c.customer_id).where(staged.c.action != "update", staged.c.points_used > 0)
    e, p = table_of(PointsEntry), table_of(Purchase)
    by_hand = select(e.c.customer_id).where(
        e.c.purchase_id.is_(None),
        e.c.kind == "redeem",
        e.c.customer_id.in_(select(buyers.c.id)),
        ~exists().where(p.c.customer_id == e.c.customer_id, p.c.id <= run.sold_before),
    )
    waiting = set(session.execute(by_hand).scalars())
    spent = waiting | set(session.execute(spenders.distinct()).scalars())
    for page in _pages(session, buyers):
        try:
            settle_points(session, run.config, page, now=run.now, spent=spent)
        except ShortOfPoints as short:
            if short.customer_id in waiting and short.spend.purchase_id is None:  # a --before-sales redemption
                short.subject = "hand-redemption"
            raise
    for page in _pages(session, buyers):
        run.stage_changes += settle_stages(session, page)
    for page in _pages(session, buyers):
        run.referrals_verified += len(verify_referrals(session, run.config, page, now=run.now))
    buyers.drop(conn)


def _pages(session: Session, buyers: Table, size: int = 45_000) -> Iterator[list[int]]:
    """The ids in ``buyers`` in order, ``size`` at a time."""
    after = 0
    while True:
        query = select(buyers.c.id).where(buyers.c.id > after).order_by(buyers.c.id).limit(size)
        page = list(session.execute(query).scalars())
        if not page:
            return
        yield page
        after = page[-1]


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
    from crmcli.services.points import settle_points
    from crmcli.services.purchases import pay_purchase, refund_purchase

    p = table_of(Purchase)
    current = session.execute(
        select(p.c.customer_id, p.c.paid_at, p.c.due_at, p.c.refunded_at).where(p.c.id == purchase_id)
    ).one()
    if row.due_at is not None and current.due_at != row.due_at:
        session.execute(update(p).where(p.c.id == purchase_id).values(due_at=row.due_at))
        # a due date moved changes the reset it may call for: the ledger is replayed, as a payment's is
        settle_points(session, run.config, [current.customer_id], now=run.now)
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
                customer_cell(ref, email, phone, cid),
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

    return write_export(db, path, fmt, bom, FIELDS, rows)


def _iso(moment: datetime | None, config: Config) -> str | None:
    # Whole seconds print as such; a time with microseconds keeps them, so an import reads it back exactly.
    return moment.astimezone(config.tz).isoformat() if moment else None
