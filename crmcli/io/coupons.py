"""Coupon CSV export and import: the coupons themselves, used or not, void or not.

The purchase export names the coupon each sale used, with its discount; this file carries
the rest of the story: the coupons not used yet, their terms, when each was issued and
voided, the uses made without a sale, and which referral a reward coupon rewards. Imported
before the purchases, the sales then take their uses of these very coupons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from crmcli.bulk import insert_rows
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.io.importing import ImportRun, check_options, run_import
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import Target, customer_cell, write_export
from crmcli.models import Coupon, Customer, Purchase, Referral, table_of
from crmcli.values import check_happened, money, parse_money, parse_percent, parse_when, utcnow

FIELDS = (
    "code",
    "customer",
    "percent",
    "amount",
    "min_spend",
    "expires_at",
    "max_uses",
    "uses_without_sale",
    "campaign",
    "issued_at",
    "voided_at",
    "referral",
)
COLUMNS = (
    "code",
    "customer_id",
    "percent_bp",
    "amount_minor",
    "min_spend_minor",
    "expires_at",
    "max_uses",
    "uses",
    "campaign",
    "created_at",
    "voided_at",
    "referral_id",
)
BATCH = 5000


@dataclass
class Row:
    line: int
    raw: dict[str, str]
    customer: str | None
    referred: str | None  # the referred customer of the referral this coupon rewards
    values: dict[str, Any]


@dataclass
class CouponRun(ImportRun):
    seen: dict[str, int] | None = None  # code -> line, for codes repeated in the file
    rewarded: dict[tuple[int, int], str] | None = None  # (referral, customer) -> a live reward's code


def _when(raw: dict[str, str], column: str, run: ImportRun, *, happened: bool = True) -> datetime | None:
    text = (raw.get(column) or "").strip()
    if not text:
        return None
    config = run.config
    try:
        moment = parse_when(text, config.tz, now=run.now, end_of_day=not happened, date_order=config.date_order)
    except Invalid as exc:
        raise Invalid(f"{column}: {exc}") from None
    return check_happened(moment, column, now=run.now, tz=config.tz) if happened else moment


def _whole(raw: dict[str, str], column: str, default: int) -> int:
    text = (raw.get(column) or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > 10**9:
        raise Invalid(f"{column} must be a whole number up to {10**9}, not {text!r}")
    return int(text)


def validate_row(line: int, raw: dict[str, str], run: ImportRun) -> Row:
    """One coupon as ``coupon issue`` (and ``coupon void``) recorded it."""
    from crmcli.services.coupons import CouponTerms, check_code

    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    config = run.config
    digits = config.currency.minor_digits
    code = check_code(raw.get("code") or "")

    def amount(column: str) -> int | None:
        text = (raw.get(column) or "").strip()
        if not text:
            return None
        return parse_money(text, digits, what=column, decimal_comma=config.decimal_comma, currency=config.currency.code)

    percent_text = (raw.get("percent") or "").strip()
    percent = parse_percent(percent_text, decimal_comma=config.decimal_comma) if percent_text else None
    terms = CouponTerms(
        percent_bp=percent,
        amount_minor=amount("amount"),
        min_spend_minor=amount("min_spend") or 0,
        expires_at=_when(raw, "expires_at", run, happened=False),
        max_uses=_whole(raw, "max_uses", 1),
        campaign=(raw.get("campaign") or "").strip() or None,
    ).check()
    uses = _whole(raw, "uses_without_sale", 0)
    if uses > terms.max_uses:
        raise Invalid(f"uses_without_sale {uses} is more than the coupon's max_uses {terms.max_uses}")
    issued = _when(raw, "issued_at", run) or run.now
    voided = _when(raw, "voided_at", run)
    if voided is not None and voided < issued:
        raise Invalid("the coupon is voided before it was issued")
    customer = (raw.get("customer") or "").strip() or None
    referred = (raw.get("referral") or "").strip() or None
    if referred is not None and customer is None:
        raise Invalid("a referral reward belongs to a customer: give the customer")
    return Row(
        line,
        raw,
        customer,
        referred,
        {
            "code": code,
            "percent_bp": terms.percent_bp,
            "amount_minor": terms.amount_minor,
            "min_spend_minor": terms.min_spend_minor,
            "expires_at": terms.expires_at,
            "max_uses": terms.max_uses,
            "uses": uses,
            "campaign": terms.campaign,
            "created_at": issued,
            "voided_at": voided,
        },
    )


def import_coupons(
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
    """Import coupons in one transaction: all or nothing unless ``reject_file`` is given.

    A code the database has is a duplicate (``on_duplicate`` skip or error: a coupon's terms
    are not rewritten). A ``referral`` cell links a reward coupon to the referral of that
    referred customer, so the purchase import that follows does not reward that side again.
    """
    if on_duplicate == "update":
        raise Invalid("a coupon the database has is skipped or refused, not updated")
    check_options(on_duplicate, reject_file)
    source = open_source(path, options, fields=FIELDS, required=("code",))
    run = CouponRun(config=config, on_duplicate=on_duplicate, now=now or utcnow(), seen={}, rewarded={})
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
    )


def _write_batch(session: Session, batch: list[Row], run: CouponRun) -> None:
    from crmcli.services.campaigns import ensure_campaign
    from crmcli.services.identify import resolve

    conn = session.connection()
    c, r = table_of(Coupon), table_of(Referral)
    assert run.seen is not None
    region = run.config.default_phone_region
    names = {x for row in batch for x in (row.customer, row.referred) if x is not None}
    customers = resolve(session, names, region)
    codes = [row.values["code"] for row in batch]
    taken = set(conn.execute(select(c.c.code).where(c.c.code.in_(codes))).scalars())
    referred_ids = {
        m.customer.id for text, m in customers.items() if m.customer is not None and text in {b.referred for b in batch}
    }
    referrals = {
        referred: (rid, referrer)
        for rid, referred, referrer in conn.execute(
            select(r.c.id, r.c.referred_id, r.c.referrer_id).where(r.c.referred_id.in_(referred_ids))
        )
    }
    live = conn.execute(
        select(c.c.referral_id, c.c.customer_id, c.c.code).where(
            c.c.referral_id.in_([rid for rid, _ in referrals.values()]), c.c.voided_at.is_(None)
        )
    ).all()
    assert run.rewarded is not None
    for rid, cid, held in live:
        run.rewarded.setdefault((rid, cid), held)
    rows = []
    for row in batch:
        code = row.values["code"]
        if code in run.seen:
            run.reject(row.line, row.raw, f"same code as line {run.seen[code]} of this file")
            continue
        run.seen[code] = row.line
        if code in taken:
            if run.on_duplicate == "skip":
                run.skipped += 1
            else:
                run.reject(row.line, row.raw, f"coupon code {code} is already taken")
            continue
        customer_id = None
        if row.customer is not None:
            match = customers[row.customer]
            if match.customer is None:
                run.reject(row.line, row.raw, match.problem())
                continue
            if match.customer.erased_at is not None:
                run.reject(row.line, row.raw, f"customer {match.customer.id} was erased")
                continue
            customer_id = match.customer.id
        referral_id = None
        if row.referred is not None:
            match = customers[row.referred]
            if match.customer is None:
                run.reject(row.line, row.raw, f"referral: {match.problem()}")
                continue
            link = referrals.get(match.customer.id)
            if link is None:
                run.reject(row.line, row.raw, f"referral: customer {match.customer.id} was not referred by anyone")
                continue
            if customer_id not in (match.customer.id, link[1]):
                run.reject(row.line, row.raw, f"referral: the coupon's customer is neither side of referral {link[0]}")
                continue
            referral_id = link[0]
            assert customer_id is not None
            if row.values["voided_at"] is None:  # each side holds one live reward (a voided one was replaced)
                if held := run.rewarded.get((referral_id, customer_id)):
                    why = f"referral {referral_id} has already rewarded customer {customer_id} (coupon {held})"
                    run.reject(row.line, row.raw, why)
                    continue
                run.rewarded[(referral_id, customer_id)] = code
        rows.append({**row.values, "customer_id": customer_id, "referral_id": referral_id})
    for campaign in sorted({row["campaign"] for row in rows if row["campaign"] is not None}):
        ensure_campaign(session, campaign)
    insert_rows(conn, c, COLUMNS, rows)
    run.inserted += len(rows)


# --- export -----------------------------------------------------------------------


def export_coupons(
    *, db: Database, config: Config, path: Path | Target | None, fmt: str = "csv", bom: bool = True
) -> int:
    """Every coupon of a live customer (or of none), oldest first, in the import's columns: its
    terms, when it was issued and voided, the uses made without a sale (the sales' uses come
    back with the purchase export) and, for a referral reward, the referred customer."""
    c, cu, p, r = table_of(Coupon), table_of(Customer), table_of(Purchase), table_of(Referral)
    referred = cu.alias("referred")
    sales = select(func.count()).where(p.c.coupon_id == c.c.id).scalar_subquery()
    query = (
        select(
            c.c.code,
            cu.c.ref,
            cu.c.email,
            cu.c.phone,
            cu.c.id,
            c.c.percent_bp,
            c.c.amount_minor,
            c.c.min_spend_minor,
            c.c.expires_at,
            c.c.max_uses,
            c.c.uses - sales,
            c.c.campaign,
            c.c.created_at,
            c.c.voided_at,
            referred.c.ref,
            referred.c.email,
            referred.c.phone,
            referred.c.id,
        )
        .select_from(c)
        .outerjoin(cu, cu.c.id == c.c.customer_id)
        .outerjoin(r, r.c.id == c.c.referral_id)
        .outerjoin(referred, referred.c.id == r.c.referred_id)
        .where(cu.c.erased_at.is_(None))
        .order_by(c.c.id)
    )
    digits = config.currency.minor_digits

    def iso(moment: datetime | None) -> str | None:
        return moment.astimezone(config.tz).isoformat() if moment else None

    def rows(conn: Any) -> Any:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for (code, ref, email, phone, cid, bp, off, spend, expires, max_uses, uses, campaign, issued, voided,
             rref, remail, rphone, rid) in result:  # fmt: skip
            yield (
                code,
                customer_cell(ref, email, phone, cid),
                str(Decimal(bp) / 100) if bp is not None else None,
                str(money(off, digits)) if off is not None else None,
                str(money(spend, digits)),
                iso(expires),
                max_uses,
                max(int(uses), 0),
                campaign,
                iso(issued),
                iso(voided),
                customer_cell(rref, remail, rphone, rid),
            )

    return write_export(db, path, fmt, bom, FIELDS, rows)
