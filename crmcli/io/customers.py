"""Customer CSV import (validated, all-or-nothing, batched) and export (streamed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, cast, func, insert, literal, or_, select, update
from sqlmodel import Session

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.io.bulk import insert_rows
from crmcli.io.importing import ImportRun, check_options, run_import
from crmcli.io.reader import CsvOptions, CsvSource
from crmcli.io.writer import output_stream, write_csv, write_json
from crmcli.models import Customer, CustomerTag, Referral, StageChange, UTCDateTime, table_of
from crmcli.services.customers import CustomerInput, clean_fields, clean_tags, new_referral_code
from crmcli.services.referrals import same_person
from crmcli.values import utcnow

FIELDS = ("name", "email", "phone", "company", "city", "source", "stage", "tags", "ref", "referred_by", "note")
KEYS = ("email", "phone", "ref")
COLUMNS = (
    "name",
    "email",
    "phone",
    "ref",
    "company",
    "city",
    "source",
    "note",
    "stage",
    "referral_code",
    "created_at",
    "updated_at",
)
BATCH = 5000


@dataclass
class Pending:
    line: int
    raw: dict[str, str]
    values: dict[str, Any]
    tags: list[str]
    referred_by: str | None


@dataclass
class Someone:
    """The few fields the self-referral check compares, without building a model."""

    id: int | None
    email: str | None
    phone: str | None


@dataclass
class CustomerRun(ImportRun):
    referrals: int = 0


def validate_row(line: int, raw: dict[str, str], config: Config) -> Pending:
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    data = CustomerInput(
        name=raw.get("name"),
        email=raw.get("email"),
        phone=raw.get("phone"),
        company=raw.get("company"),
        city=raw.get("city"),
        source=raw.get("source"),
        stage=raw.get("stage") or None,
        ref=raw.get("ref"),
        note=raw.get("note"),
    )
    values = clean_fields(data, config, require_name=True)
    values.setdefault("stage", "lead")
    tags = clean_tags((raw.get("tags") or "").split(";"))
    referred_by = (raw.get("referred_by") or "").strip() or None
    return Pending(line, raw, values, tags, referred_by)


def import_customers(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | None = None,
    on_duplicate: str = "error",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import a customer CSV in one transaction; returns counts.

    A row whose email, phone or ref belongs to a customer (or, with none of the three,
    whose name is that of a customer who has none either) is a duplicate, handled by
    ``on_duplicate``. All or nothing unless ``reject_file`` is given.
    """
    check_options(on_duplicate, reject_file)
    source = CsvSource(path, options, fields=FIELDS, required=("name",))
    run = CustomerRun(config=config, on_duplicate=on_duplicate, now=utcnow())
    run_import(
        db=db,
        source=source,
        run=run,
        batch_size=BATCH,
        dry_run=dry_run,
        reject_file=reject_file,
        progress=progress,
        validate=lambda line, raw: validate_row(line, raw, config),
        write_batch=lambda session, batch: _write_batch(session, batch, run),
    )
    return {**run.counts(dry_run), "referrals": run.referrals}


def _existing(conn: Any, batch: list[Pending]) -> dict[tuple[str, str], int]:
    """(key, value) -> customer id for the batch's emails, phones, refs and keyless names."""
    t = table_of(Customer)
    conditions: list[Any] = []
    for key in KEYS:
        values = {p.values[key] for p in batch if p.values.get(key)}
        if values:
            conditions.append(t.c[key].in_(values))
    names = {p.values["name"] for p in batch if not any(p.values.get(k) for k in KEYS)}
    if names:
        keyless = [t.c[k].is_(None) for k in KEYS]
        conditions.append(and_(t.c.name.in_(names), t.c.erased_at.is_(None), *keyless))
    found: dict[tuple[str, str], int] = {}
    if not conditions:
        return found
    for row in conn.execute(select(t.c.id, t.c.name, t.c.email, t.c.phone, t.c.ref).where(or_(*conditions))):
        keys = [(k, getattr(row, k)) for k in KEYS if getattr(row, k) is not None]
        for match in keys or [("name", row.name)]:
            found[match] = row.id
    return found


def _match_keys(p: Pending) -> list[tuple[str, str]]:
    keys = [(k, p.values[k]) for k in KEYS if p.values.get(k)]
    return keys or [("name", p.values["name"])]


def _write_batch(session: Session, batch: list[Pending], run: CustomerRun) -> None:
    conn = session.connection()
    existing = _existing(conn, batch)
    seen: dict[tuple[str, str], int] = {}
    new: list[Pending] = []
    for p in batch:
        keys = _match_keys(p)
        earlier = next((seen[k] for k in keys if k in seen), None)
        if earlier is not None:
            run.reject(p.line, p.raw, f"same {keys[0][0]} as line {earlier} of this file")
            continue
        for k in keys:
            seen[k] = p.line
        clash = {k: existing[k] for k in keys if k in existing}
        if not clash:
            new.append(p)
            continue
        ids = set(clash.values())
        if len(ids) > 1:
            detail = ", ".join(f"{k[0]} {k[1]} is customer {cid}" for k, cid in clash.items())
            run.reject(p.line, p.raw, f"matches several customers: {detail}")
        elif run.on_duplicate == "skip":
            run.skipped += 1
        elif run.on_duplicate == "update":
            _update_existing(conn, ids.pop(), p, run)
        else:
            (key, value), cid = next(iter(clash.items()))
            run.reject(
                p.line, p.raw, f"{key} {value} already belongs to customer {cid} (use --on-duplicate skip or update)"
            )
    referrers = _referrers(conn, new, run)
    new = [p for p in new if p.referred_by is None or p.line in referrers]
    if new:
        _insert_new(session, new, referrers, run)


def _referrers(conn: Any, new: list[Pending], run: CustomerRun) -> dict[int, Someone | Pending]:
    """line -> referrer, for the new rows that name one: a customer in the database (id, email,
    ref or referral code) or an earlier new row of this batch (email or ref).

    Settled before anything is written, so a row refused for its referral (unknown referrer,
    self-referral) leaves no customer behind, even with --skip-invalid.
    """
    wanted = {p.referred_by for p in new if p.referred_by}
    if not wanted:
        return {}
    t = table_of(Customer)
    numbers = [int(w) for w in wanted if w.isdigit()]
    conditions = [
        t.c.email.in_({w.lower() for w in wanted}),
        t.c.ref.in_(wanted),
        t.c.referral_code.in_({w.upper() for w in wanted}),
    ]
    if numbers:
        conditions.append(t.c.id.in_(numbers))
    known: dict[str, Someone | Pending] = {}
    by_id: dict[str, Someone] = {}
    for row in conn.execute(select(t.c.id, t.c.email, t.c.phone, t.c.ref, t.c.referral_code).where(or_(*conditions))):
        by_id[str(row.id)] = Someone(row.id, row.email, row.phone)
        for key in (row.email, row.ref, row.referral_code):
            if key:
                known[key] = by_id[str(row.id)]
    # A value that is both some customer's ref and another's id is the ref: exports name referrers by ref.
    known = {**by_id, **known}
    found: dict[int, Someone | Pending] = {}
    earlier: dict[str, Pending] = {}
    for p in new:
        ident = p.referred_by
        if ident:
            referrer = (
                known.get(ident)
                or known.get(ident.lower())
                or known.get(ident.upper())
                or earlier.get(ident)
                or earlier.get(ident.lower())
            )
            me = Someone(None, p.values.get("email"), p.values.get("phone"))
            if ident in (p.values.get("ref"), p.values.get("email")) or ident.lower() == p.values.get("email"):
                run.reject(p.line, p.raw, "a customer cannot refer themselves (the same row)")
            elif referrer is None:
                run.reject(p.line, p.raw, f"referred_by {ident!r} is not a customer")
            elif reason := same_person(_someone(referrer), me):
                run.reject(p.line, p.raw, f"a customer cannot refer themselves ({reason})")
            else:
                found[p.line] = referrer
        for key in (p.values.get("email"), p.values.get("ref")):
            if key:
                earlier.setdefault(key, p)
    return found


def _someone(who: Someone | Pending) -> Someone:
    if isinstance(who, Someone):
        return who
    return Someone(None, who.values.get("email"), who.values.get("phone"))


def _insert_new(
    session: Session, new: list[Pending], referrers: dict[int, Someone | Pending], run: CustomerRun
) -> None:
    """One executemany for the customers; their ids are found again by referral code."""
    conn = session.connection()
    t = table_of(Customer)
    codes = _unused_codes(conn, len(new))
    rows = [
        {
            "email": None,
            "phone": None,
            "ref": None,
            "company": None,
            "city": None,
            "source": None,
            "note": None,
            **p.values,
            "referral_code": code,
            "created_at": run.now,
            "updated_at": run.now,
        }
        for p, code in zip(new, codes, strict=True)
    ]
    insert_rows(conn, t, COLUMNS, rows)
    id_of = dict(conn.execute(select(t.c.referral_code, t.c.id).where(t.c.referral_code.in_(codes))).all())
    ids = [id_of[code] for code in codes]
    conn.execute(
        insert(table_of(StageChange)).from_select(
            ["customer_id", "to_stage", "at"],
            select(t.c.id, t.c.stage, t.c.created_at).where(
                t.c.referral_code.in_(codes), t.c.created_at == literal(run.now, UTCDateTime())
            ),
        )
    )
    tag_rows = [{"customer_id": cid, "tag": tag} for cid, p in zip(ids, new, strict=True) for tag in p.tags]
    insert_rows(conn, table_of(CustomerTag), ("customer_id", "tag"), tag_rows)
    run.inserted += len(new)
    id_by_line = {p.line: cid for cid, p in zip(ids, new, strict=True)}
    links = [
        {
            "referrer_id": who.id if isinstance(who, Someone) else id_by_line[who.line],
            "referred_id": id_by_line[line],
            "status": "pending",
            "created_at": run.now,
        }
        for line, who in referrers.items()
        if line in id_by_line
    ]
    insert_rows(conn, table_of(Referral), ("referrer_id", "referred_id", "status", "created_at"), links)
    run.referrals += len(links)


def _unused_codes(conn: Any, count: int) -> list[str]:
    t = table_of(Customer)
    codes: set[str] = set()
    while len(codes) < count:
        fresh = {new_referral_code() for _ in range(count - len(codes))} - codes
        taken = set(conn.execute(select(t.c.referral_code).where(t.c.referral_code.in_(fresh))).scalars())
        codes |= fresh - taken
    return list(codes)


def _update_existing(conn: Any, cid: int, p: Pending, run: CustomerRun) -> None:
    """--on-duplicate update: the row's non-empty fields overwrite; tags are added."""
    t = table_of(Customer)
    values = {k: v for k, v in p.values.items() if v is not None and k != "stage"}
    conn.execute(update(t).where(t.c.id == cid).values(**values, updated_at=run.now))
    if (p.raw.get("stage") or "").strip():
        current = conn.execute(select(t.c.stage).where(t.c.id == cid)).scalar_one()
        if current != p.values["stage"]:
            conn.execute(update(t).where(t.c.id == cid).values(stage=p.values["stage"]))
            conn.execute(
                insert(table_of(StageChange)).values(
                    customer_id=cid, from_stage=current, to_stage=p.values["stage"], at=run.now
                )
            )
    tags = table_of(CustomerTag)
    have = set(conn.execute(select(tags.c.tag).where(tags.c.customer_id == cid)).scalars())
    insert_rows(conn, tags, ("customer_id", "tag"), [{"customer_id": cid, "tag": t} for t in p.tags if t not in have])
    run.updated += 1


# --- export -----------------------------------------------------------------------


def export_query() -> Any:
    """Customers in import-column order, in id order; the referrer named by ref, else email, else id."""
    c = table_of(Customer)
    tag = table_of(CustomerTag)
    r = table_of(Referral)
    referrer = c.alias("referrer")
    tags = select(func.aggregate_strings(tag.c.tag, ";")).where(tag.c.customer_id == c.c.id).scalar_subquery()
    referred_by = func.coalesce(referrer.c.ref, referrer.c.email, cast(referrer.c.id, String))
    return (
        select(
            c.c.name,
            c.c.email,
            c.c.phone,
            c.c.company,
            c.c.city,
            c.c.source,
            c.c.stage,
            tags,
            c.c.ref,
            referred_by,
            c.c.note,
        )
        .select_from(c)
        .outerjoin(r, r.c.referred_id == c.c.id)
        .outerjoin(referrer, and_(referrer.c.id == r.c.referrer_id, referrer.c.erased_at.is_(None)))
        .where(c.c.erased_at.is_(None))
        .order_by(c.c.id)
    )


def export_rows(conn: Any) -> Iterator[tuple[Any, ...]]:
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(export_query())
    for row in result:
        yield tuple(row)


def export_customers(*, db: Database, path: Path | None, fmt: str = "csv", bom: bool = True) -> int:
    if fmt not in ("csv", "json"):
        raise Invalid(f"export format must be csv or json, not {fmt!r}")
    encoding = "utf-8-sig" if fmt == "csv" and bom else "utf-8"
    writer = write_csv if fmt == "csv" else write_json
    with db.engine.connect() as conn, output_stream(path, encoding=encoding) as handle:
        return writer(handle, FIELDS, export_rows(conn))
