"""Interaction CSV import (a contact history: batched, all-or-nothing) and export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, cast, select
from sqlmodel import Session

from crmcli.bulk import insert_rows
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.io.importing import ImportRun, Written, check_options, run_import
from crmcli.io.reader import CsvOptions, open_source
from crmcli.io.writer import Target, customer_cell, write_export
from crmcli.models import AutoReward, Coupon, Customer, Interaction, table_of
from crmcli.services.interactions import check_kind, check_rating, close_followups
from crmcli.values import check_happened, parse_when, utcnow

FIELDS = (
    "customer",
    "kind",
    "at",
    "summary",
    "rating",
    "follow_up_at",
    "follow_up_done_at",
    "responded_at",
    "resolved_at",
    "resolution",
    "apology_at",
    "apology_coupon",
    "apology_points",
)
BATCH = 5000
COLUMNS = (
    "customer_id",
    "kind",
    "summary",
    "rating",
    "at",
    "follow_up_at",
    "follow_up_done_at",
    "responded_at",
    "resolved_at",
    "resolution",
    "created_at",
)


Apology = tuple[datetime, str | None, int | None]  # what the daily job gave for a late complaint: when, coupon, points


@dataclass
class Row:
    line: int
    raw: dict[str, str]
    customer: str
    values: dict[str, Any]
    apology: Apology | None = None  # what the daily job gave for a late complaint


@dataclass
class InteractionRun(ImportRun):
    customers: set[int] | None = None  # whose follow-ups to close at the end


def _when(raw: dict[str, str], column: str, run: ImportRun, *, happened: bool = True) -> datetime | None:
    text = (raw.get(column) or "").strip()
    if not text:
        return None
    config = run.config
    try:
        moment = parse_when(text, config.tz, now=run.now, date_order=config.date_order)
    except Invalid as exc:
        raise Invalid(f"{column}: {exc}") from None
    return check_happened(moment, column, now=run.now, tz=config.tz) if happened else moment


def validate_row(line: int, raw: dict[str, str], run: ImportRun) -> Row:
    """One contact as ``interaction log``, ``respond`` and ``resolve`` would have recorded it."""
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    customer = (raw.get("customer") or "").strip()
    if not customer:
        raise Invalid("no customer given")
    kind = check_kind(raw.get("kind") or "")
    rating_text = (raw.get("rating") or "").strip()
    if rating_text and not (rating_text.isascii() and rating_text.isdigit()):
        raise Invalid(f"rating must be 1 to 5 (5 = completely satisfied), not {rating_text!r}")
    rating = check_rating(int(rating_text) if rating_text else None)
    at = _when(raw, "at", run) or run.now
    follow_up = _when(raw, "follow_up_at", run, happened=False)
    done = _when(raw, "follow_up_done_at", run)
    responded = _when(raw, "responded_at", run)
    resolved = _when(raw, "resolved_at", run)
    if follow_up is not None and follow_up < at:
        raise Invalid("the follow-up date is before the interaction")
    if done is not None and (follow_up is None or done < at):
        raise Invalid("follow_up_done_at needs a follow-up, and comes after the interaction")
    if (responded or resolved) and kind != "complaint":
        raise Invalid(f"only a complaint is responded to or resolved, not a {kind}")
    if responded is not None and responded < at:
        raise Invalid("the response is before the complaint")
    if resolved is not None and resolved < at:
        raise Invalid("the resolution is before the complaint")
    if resolved is not None and responded is not None and responded > resolved:
        raise Invalid("the first response is after the resolution")
    resolution = (raw.get("resolution") or "").strip() or None
    if resolution and resolved is None:
        raise Invalid("a resolution needs the time it was resolved")
    apology = _apology(raw, run, kind, at)
    return Row(
        line,
        raw,
        customer,
        {
            "kind": kind,
            "summary": (raw.get("summary") or "").strip() or None,
            "rating": rating,
            "at": at,
            "follow_up_at": follow_up,
            "follow_up_done_at": done,
            "responded_at": responded if responded is not None else resolved,  # a resolution is also a response
            "resolved_at": resolved,
            "resolution": resolution,
            "created_at": run.now,
        },
        apology,
    )


def _apology(raw: dict[str, str], run: ImportRun, kind: str, at: datetime) -> Apology | None:
    """The apology the daily job gave for a complaint past its deadline: when, and the coupon
    (by code: the coupon file comes first) or the points it was."""
    given = _when(raw, "apology_at", run)
    code = (raw.get("apology_coupon") or "").strip().upper() or None
    text = (raw.get("apology_points") or "").strip()
    if given is None:
        if code or text:
            raise Invalid("apology_coupon and apology_points need the time of the apology (apology_at)")
        return None
    if kind != "complaint":
        raise Invalid(f"only a complaint gets an apology, not a {kind}")
    if given < at:
        raise Invalid("the apology is before the complaint")
    if text and not (text.isascii() and text.isdigit() and 0 < int(text) <= 10**9):
        raise Invalid(f"apology_points must be a positive whole number, not {text!r}")
    if (code is None) == (not text):
        raise Invalid("an apology is a coupon or points: give one of apology_coupon and apology_points")
    return given, code, int(text) if text else None


def import_interactions(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | Target | None = None,
    progress: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Import contacts in one transaction: all or nothing unless ``reject_file`` is given.

    Each row is a contact with its follow-up and, for a complaint, its first response and
    resolution. A contact closes its customer's earlier open follow-ups, as logging it would.
    """
    check_options("error", reject_file)
    source = open_source(path, options, fields=FIELDS, required=("customer", "kind"))
    run = InteractionRun(config=config, on_duplicate="error", now=now or utcnow(), customers=set())

    def finish(session: Session) -> None:
        close_followups(session, sorted(run.customers or ()))

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


def _write_batch(session: Session, batch: list[Row], run: InteractionRun) -> None:
    from crmcli.services.identify import resolve

    customers = resolve(session, {r.customer for r in batch}, run.config.default_phone_region)
    codes = sorted({r.apology[1] for r in batch if r.apology is not None and r.apology[1] is not None})
    k = table_of(Coupon)
    coupon_of = dict(session.connection().execute(select(k.c.code, k.c.id).where(k.c.code.in_(codes))).all())
    found: list[Written] = []
    apology_of: dict[int, Apology | None] = {}
    for row in batch:
        match = customers[row.customer]
        if match.customer is None:
            run.reject(row.line, row.raw, match.problem())
            continue
        if match.customer.erased_at is not None:
            run.reject(row.line, row.raw, f"customer {match.customer.id} was erased")
            continue
        if row.apology is not None and row.apology[1] is not None and row.apology[1] not in coupon_of:
            run.reject(row.line, row.raw, f"apology_coupon {row.apology[1]} is not a coupon of this database")
            continue
        found.append((row.line, row.raw, {**row.values, "customer_id": match.customer.id}))
        apology_of[row.line] = row.apology
        assert run.customers is not None
        run.customers.add(match.customer.id)
    new = run.refuse_repeats(
        session.connection(), table_of(Interaction), ("customer_id", "at", "kind", "summary"), found
    )
    _insert(session, [(values, apology_of[line]) for line, _, values in new], coupon_of)
    run.inserted += len(new)


def _insert(session: Session, rows: list[tuple[dict[str, Any], Apology | None]], coupon_of: dict[str, int]) -> None:
    """The contacts in file order; a complaint with its apology one at a time, to record the
    apology under the complaint's new id (as the daily job did, so it does not apologise again)."""
    from sqlalchemy import insert

    conn = session.connection()
    i = table_of(Interaction)
    plain: list[dict[str, Any]] = []
    for values, apology in rows:
        if apology is None:
            plain.append(values)
            continue
        insert_rows(conn, i, COLUMNS, plain)
        plain = []
        key = conn.execute(insert(i).values(**{c: values[c] for c in COLUMNS})).inserted_primary_key
        assert key is not None
        iid = key[0]
        at, code, points = apology
        conn.execute(
            insert(table_of(AutoReward)).values(
                rule="apology",
                customer_id=values["customer_id"],
                key=str(iid),
                coupon_id=coupon_of[code] if code is not None else None,
                points=points,
                at=at,
            )
        )
    insert_rows(conn, i, COLUMNS, plain)


def export_interactions(
    *, db: Database, config: Config, path: Path | Target | None, fmt: str = "csv", bom: bool = True
) -> int:
    """Interactions in import-column order, oldest first; the customer named as in the purchase export."""
    i, c, a, k = table_of(Interaction), table_of(Customer), table_of(AutoReward), table_of(Coupon)
    apology = and_(a.c.rule == "apology", a.c.key == cast(i.c.id, String), a.c.customer_id == i.c.customer_id)
    query = (
        select(
            c.c.ref,
            c.c.email,
            c.c.phone,
            c.c.id,
            i.c.kind,
            i.c.at,
            i.c.summary,
            i.c.rating,
            i.c.follow_up_at,
            i.c.follow_up_done_at,
            i.c.responded_at,
            i.c.resolved_at,
            i.c.resolution,
            a.c.at,
            k.c.code,
            a.c.points,
        )
        .join(c, c.c.id == i.c.customer_id)
        .outerjoin(a, apology)
        .outerjoin(k, k.c.id == a.c.coupon_id)
        .where(c.c.erased_at.is_(None))
        .order_by(i.c.at, i.c.id)
    )

    def iso(moment: datetime | None) -> str | None:
        return moment.astimezone(config.tz).isoformat() if moment else None

    def rows(conn: Any) -> Any:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for (ref, email, phone, cid, kind, at, summary, rating, follow, done, responded, resolved, resolution,
             apologised, code, points) in result:  # fmt: skip
            yield (
                customer_cell(ref, email, phone, cid),
                kind,
                iso(at),
                summary,
                rating,
                iso(follow),
                iso(done),
                iso(responded),
                iso(resolved),
                resolution,
                iso(apologised),
                code,
                points,
            )

    return write_export(db, path, fmt, bom, FIELDS, rows)
