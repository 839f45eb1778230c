"""Points CSV export and import: the ledger entries that are neither a sale nor a rule.

The purchase file brings back the points each sale earned and spent, ``points accrue``
the tenure points, and the rules the resets, reversals and expiries. This file carries
the rest: points given (``adjust``) and redeemed (``redeem``) by hand, the points a
referral rewarded (``referral``), which stay given when a refund later reopens the
referral, so the sales as they ended cannot give them again, and the rewards the daily job
gave (``birthday``, ``apology``; the record that they were given comes back with the
customer and interaction files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, cast, delete, literal, or_, select
from sqlmodel import Session

from crmcli.bulk import insert_rows
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import ImportFailed, Invalid
from crmcli.io.importing import ImportRun, Written, check_options, run_import
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import Target, customer_cell, write_export
from crmcli.models import Customer, PointsEntry, Purchase, Referral, table_of
from crmcli.values import check_happened, parse_when, utcnow

if TYPE_CHECKING:
    from crmcli.services.points import ShortOfPoints

FIELDS = ("customer", "at", "kind", "points", "reason", "referral")
KINDS = ("adjust", "redeem", "referral", "birthday", "apology")
COLUMNS = ("customer_id", "delta", "kind", "reason", "purchase_id", "period", "at")
BATCH = 5000
MAX_POINTS = 10**9  # far above any entry, within every database's integer


@dataclass
class Row:
    line: int
    raw: dict[str, str]
    customer: str
    referred: str | None  # the referred customer of the referral these points reward
    values: dict[str, Any]


@dataclass
class PointsRun(ImportRun):
    customers: set[int] | None = None  # whose derived removals to bring in line at the end
    seen: dict[tuple[int, str], int] | None = None  # (customer, referral period) -> line
    redeemed: dict[int, list[Written]] = field(default_factory=dict)  # each customer's redemptions written
    awaiting: int = 0  # customers whose redemptions wait for their sales to be checked
    unsold: int = 0  # redemptions refused of customers with no sales yet (a move without --before-sales?)

    def counts(self, dry_run: bool) -> dict[str, Any]:
        return {**super().counts(dry_run), "awaiting_sales": self.awaiting}

    def failed(self, label: str) -> ImportFailed:
        failure = super().failed(label)
        if self.unsold and failure.subject is None:
            failure.subject = "before-sales"  # the CLI's hint names the flag
        return failure


def validate_row(line: int, raw: dict[str, str], run: ImportRun) -> Row:
    """One entry as ``points add``, ``points redeem`` or a referral's reward wrote it."""
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    config = run.config
    customer = (raw.get("customer") or "").strip()
    if not customer:
        raise Invalid("no customer given")
    kind = (raw.get("kind") or "").strip().lower()
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    text = (raw.get("points") or "").strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_POINTS:
        raise Invalid(f"points must be a positive whole number up to {MAX_POINTS}, not {text!r}")
    points = -int(text) if kind == "redeem" else int(text)  # a redeem takes them, the others give
    at_text = (raw.get("at") or "").strip()
    try:
        at = parse_when(at_text, config.tz, now=run.now, date_order=config.date_order) if at_text else run.now
    except Invalid as exc:
        raise Invalid(f"at: {exc}") from None
    check_happened(at, "at", now=run.now, tz=config.tz)
    referred = (raw.get("referral") or "").strip() or None
    if referred is not None and kind != "referral":
        raise Invalid(f"only a referral reward names a referral, not an entry of kind {kind}")
    # (A referral reward without its referral, one a merge or an erasure took away, is kept as given.)
    values = {"delta": points, "kind": kind, "reason": (raw.get("reason") or "").strip() or None, "at": at}
    return Row(line, raw, customer, referred, values)


def import_points(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | Target | None = None,
    progress: Any = None,
    now: datetime | None = None,
    before_sales: bool = False,
) -> dict[str, Any]:
    """Import points entries in one transaction: all or nothing unless ``reject_file`` is given.

    The entries are facts taken as recorded, dated as the file says. A redemption must be
    covered by the points the customer held at its moment, as ``points redeem`` requires; one
    that is not is refused with its line. ``before_sales``: the file comes before the sales
    of a moved shop, whose points may be what paid for a redemption; then a customer with no
    sales yet whose redemptions are not covered is left to the purchase import
    (``awaiting_sales`` counts those customers). A referral's points are linked to the
    referral of the referred customer (one reward per side), so the purchase import does not
    give them again.
    """
    check_options("error", reject_file)
    source = open_source(path, options, fields=FIELDS, required=("customer", "kind", "points"))
    run = PointsRun(config=config, on_duplicate="error", now=now or utcnow(), customers=set(), seen={})

    def finish(session: Session) -> None:
        from crmcli.services.points import settle_points

        _check_redemptions(session, run, sorted(run.redeemed), before_sales=before_sales)
        # The removals the rules derive (resets, reversals, expiries) follow the new facts.
        settle_points(session, config, sorted(run.customers or ()), now=run.now, strict=False)

    return run_import(
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


def _check_redemptions(session: Session, run: PointsRun, customer_ids: list[int], *, before_sales: bool) -> None:
    """Replay ``customer_ids`` (sorted) strictly. Each shortfall refuses the file's redemption
    behind it, and the customers that had one are replayed again, until none is short. With
    ``before_sales``, a customer with no sales yet who is short is left to the purchase import
    instead (counted in ``awaiting``): the sales that paid for it may come there."""
    from crmcli.services.points import settle_points

    selling = set(_with_sales(session, customer_ids))
    pending = customer_ids
    while pending:
        shorts: list[ShortOfPoints] = []
        settle_points(session, run.config, pending, now=run.now, spent=set(pending), on_short=shorts.append)
        again = []
        for short in shorts:
            if before_sales and short.customer_id not in selling:
                run.awaiting += 1
                continue
            refused = _refuse_redemptions(session, run, short)
            run.unsold += 0 if short.customer_id in selling else refused
            if run.redeemed.get(short.customer_id):
                again.append(short.customer_id)
        pending = sorted(again)


def _with_sales(session: Session, customer_ids: list[int]) -> list[int]:
    """Those of ``customer_ids`` (sorted) who have a sale recorded."""
    p = table_of(Purchase)
    found: set[int] = set()
    for start in range(0, len(customer_ids), 900):
        chunk = customer_ids[start : start + 900]
        found.update(session.execute(select(p.c.customer_id).where(p.c.customer_id.in_(chunk)).distinct()).scalars())
    return sorted(found)


def _refuse_redemptions(session: Session, run: PointsRun, short: ShortOfPoints) -> int:
    """Refuse, and take out again, the file's redemptions behind ``short``; how many.

    The spend itself when the file wrote it; else the file's latest redemption before it,
    which took its points. When the customer is short even without the file's redemptions
    before it (a ledger short already), none of the file's redemptions can be held against
    it: all of them are refused, as ``points redeem`` would refuse them."""
    mine = run.redeemed.get(short.customer_id, [])
    spend = short.spend
    own = [w for w in mine if (w[2]["at"], w[2]["delta"]) == (spend.at, spend.delta)]
    before = [w for w in mine if w[2]["at"] <= spend.at]
    if own:
        refused = [(own[0], short.message)]
    elif before and short.held - sum(w[2]["delta"] for w in before) >= -spend.delta:
        latest = max(before, key=lambda w: w[2]["at"])
        refused = [(latest, f"{short.message}, after this redemption of {-latest[2]['delta']}")]
    else:
        refused = [(w, f"{short.message}: the customer's points were short before this file") for w in mine]
    e = table_of(PointsEntry)
    for written, reason in refused:
        line, raw, values = written
        mine.remove(written)
        keys = ("customer_id", "at", "kind", "delta", "reason", "purchase_id")
        session.execute(delete(e).where(*(e.c[k] == values[k] for k in keys)))
        run.inserted -= 1
        run.reject(line, raw, reason)
    return len(refused)


def _write_batch(session: Session, batch: list[Row], run: PointsRun) -> None:
    from crmcli.services.identify import resolve

    conn = session.connection()
    e, r = table_of(PointsEntry), table_of(Referral)
    assert run.seen is not None and run.customers is not None
    names = {x for row in batch for x in (row.customer, row.referred) if x is not None}
    customers = resolve(session, names, run.config.default_phone_region)
    referred_texts = {row.referred for row in batch if row.referred is not None}
    referred_ids = {m.customer.id for t, m in customers.items() if t in referred_texts and m.customer is not None}
    links = {
        referred: (rid, referrer)
        for rid, referred, referrer in conn.execute(
            select(r.c.id, r.c.referred_id, r.c.referrer_id).where(r.c.referred_id.in_(referred_ids))
        )
    }
    periods = {f"r{rid}" for rid, _ in links.values()}
    given = set(
        conn.execute(
            select(e.c.customer_id, e.c.period).where(e.c.kind == "referral", e.c.period.in_(sorted(periods)))
        ).all()
    )
    rows: list[Written] = []
    for row in batch:
        match = customers[row.customer]
        if match.customer is None:
            run.reject(row.line, row.raw, match.problem())
            continue
        who = match.customer
        if who.erased_at is not None:
            run.reject(row.line, row.raw, f"customer {who.id} was erased")
            continue
        period = None
        if row.referred is not None:
            referred = customers[row.referred]
            if referred.customer is None:
                run.reject(row.line, row.raw, f"referral: {referred.problem()}")
                continue
            link = links.get(referred.customer.id)
            if link is None:
                run.reject(row.line, row.raw, f"referral: customer {referred.customer.id} was not referred by anyone")
                continue
            if who.id not in (referred.customer.id, link[1]):
                run.reject(row.line, row.raw, f"referral: customer {who.id} is neither side of referral {link[0]}")
                continue
            period = f"r{link[0]}"
            assert who.id is not None
            if (who.id, period) in run.seen:
                line = run.seen[(who.id, period)]
                run.reject(row.line, row.raw, f"referral {link[0]} rewards customer {who.id} once (line {line})")
                continue
            if (who.id, period) in given:
                run.reject(row.line, row.raw, f"referral {link[0]} has already rewarded customer {who.id}")
                continue
            run.seen[(who.id, period)] = row.line
        assert who.id is not None
        rows.append((row.line, row.raw, {**row.values, "customer_id": who.id, "purchase_id": None, "period": period}))
        run.customers.add(who.id)
    new = run.refuse_repeats(conn, e, ("customer_id", "at", "kind", "delta", "reason"), rows)
    insert_rows(conn, e, COLUMNS, [values for _, _, values in new])
    run.inserted += len(new)
    for written in new:
        if written[2]["kind"] == "redeem":
            run.redeemed.setdefault(written[2]["customer_id"], []).append(written)



# --- export -----------------------------------------------------------------------


def export_points(
    *, db: Database, config: Config, path: Path | Target | None, fmt: str = "csv", bom: bool = True
) -> int:
    """The ledger entries no sale and no rule gives back, of live customers, oldest first: points
    given or redeemed by hand, and referral rewards with the referred customer of their referral."""
    e, c, r = table_of(PointsEntry), table_of(Customer), table_of(Referral)
    referred = c.alias("referred")
    query = (
        select(
            c.c.ref,
            c.c.email,
            c.c.phone,
            c.c.id,
            e.c.at,
            e.c.kind,
            e.c.delta,
            e.c.reason,
            referred.c.ref,
            referred.c.email,
            referred.c.phone,
            referred.c.id,
        )
        .select_from(e)
        .join(c, c.c.id == e.c.customer_id)
        .outerjoin(r, and_(e.c.kind == "referral", e.c.period == literal("r") + cast(r.c.id, String)))
        .outerjoin(referred, referred.c.id == r.c.referred_id)
        .where(
            c.c.erased_at.is_(None),
            or_(
                e.c.kind.in_(("adjust", "referral", "birthday", "apology")),
                and_(e.c.kind == "redeem", e.c.purchase_id.is_(None)),
            ),
        )
        .order_by(e.c.at, e.c.id)
    )

    def rows(conn: Any) -> Any:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for ref, email, phone, cid, at, kind, delta, reason, rref, remail, rphone, rid in result:
            yield (
                customer_cell(ref, email, phone, cid),
                at.astimezone(config.tz).isoformat(),
                kind,
                abs(delta),
                reason,
                customer_cell(rref, remail, rphone, rid),
            )

    return write_export(db, path, fmt, bom, FIELDS, rows)
