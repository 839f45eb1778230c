"""Customer CSV import (validated, all-or-nothing, batched) and export (streamed)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, cast, func, insert, or_, select, update

from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import CrmError, ImportFailed, Invalid
from crmcli.io.reader import CsvOptions, CsvSource
from crmcli.io.writer import output_stream, write_csv, write_json
from crmcli.models import Customer, CustomerTag, Referral, StageChange
from crmcli.services.customers import (
    CustomerInput,
    clean_fields,
    clean_tags,
    new_referral_code,
)
from crmcli.values import utcnow

FIELDS = ("name", "email", "phone", "company", "city", "source", "stage", "tags", "ref",
          "referred_by", "note")
KEYS = ("email", "phone", "ref")
BATCH = 2000
DUPLICATE_MODES = ("skip", "update", "error")

Progress = Callable[[int], None]


@dataclass
class Pending:
    line: int
    raw: dict[str, str]
    values: dict[str, Any]
    tags: list[str]
    referred_by: str | None


@dataclass
class ImportRun:
    config: Config
    on_duplicate: str
    now: datetime
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    referrals: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, dict[str, str], str]] = field(default_factory=list)

    def reject(self, item_line: int, raw: dict[str, str], reason: str) -> None:
        self.problems.append((item_line, reason))
        self.rejected.append((item_line, raw, reason))


def validate_row(line: int, raw: dict[str, str], config: Config) -> Pending:
    if "__error__" in raw:
        raise Invalid(raw["__error__"])
    data = CustomerInput(**{k: raw.get(k) for k in FIELDS if k not in ("tags", "referred_by")})
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
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import a customer CSV in one transaction; returns counts.

    All or nothing unless ``reject_file`` is given: any bad row raises
    :class:`ImportFailed` listing every bad row, and nothing is written.
    """
    if on_duplicate not in DUPLICATE_MODES:
        raise Invalid(f"--on-duplicate must be one of {', '.join(DUPLICATE_MODES)}")
    if reject_file is not None and not reject_file.expanduser().parent.exists():
        raise Invalid(f"cannot write rejected rows to {reject_file}: the folder does not exist")
    source = CsvSource(path, options, fields=FIELDS, required=("name",))
    run = ImportRun(config=config, on_duplicate=on_duplicate, now=utcnow())
    all_or_nothing = reject_file is None
    with db.session(write=True) as session:
        conn = session.connection()
        batch: list[Pending] = []
        for line, raw in source.rows(progress):
            try:
                batch.append(validate_row(line, raw, config))
            except CrmError as exc:
                run.reject(line, raw, str(exc))
            if len(batch) >= BATCH:
                _write_batch(conn, batch, run)
                batch = []
        if batch:
            _write_batch(conn, batch, run)
        if run.problems and all_or_nothing:
            session.rollback()
            raise ImportFailed(
                f"{len(run.problems)} bad row(s) in {path}; nothing was imported",
                sorted(run.problems),
                hint="fix them, or pass --skip-invalid FILE to import the good rows",
            )
        if dry_run:
            session.rollback()
    if reject_file is not None and run.rejected:
        _write_rejects(reject_file, run.rejected)
    return {
        "rows": run.inserted + run.updated + run.skipped + len(run.rejected),
        "inserted": run.inserted,
        "updated": run.updated,
        "skipped": run.skipped,
        "rejected": len(run.rejected),
        "referrals": run.referrals,
        "dry_run": dry_run,
    }


def _existing(conn: Any, batch: list[Pending]) -> dict[tuple[str, str], int]:
    """(key, value) -> customer id for the batch's emails, phones, refs and keyless names."""
    t = Customer.__table__  # type: ignore[attr-defined]
    conditions = []
    for key in KEYS:
        values = {p.values[key] for p in batch if p.values.get(key)}
        if values:
            conditions.append(t.c[key].in_(values))
    names = {p.values["name"] for p in batch if not any(p.values.get(k) for k in KEYS)}
    if names:
        conditions.append(and_(t.c.name.in_(names), *(t.c[k].is_(None) for k in KEYS),
                               t.c.erased_at.is_(None)))
    found: dict[tuple[str, str], int] = {}
    if not conditions:
        return found
    for row in conn.execute(select(t.c.id, t.c.name, *(t.c[k] for k in KEYS)).where(or_(*conditions))):
        for key in KEYS:
            if row._mapping[key] is not None:
                found[(key, row._mapping[key])] = row.id
        if all(row._mapping[k] is None for k in KEYS):
            found[("name", row.name)] = row.id
    return found


def _match_keys(p: Pending) -> list[tuple[str, str]]:
    keys = [(k, p.values[k]) for k in KEYS if p.values.get(k)]
    return keys or [("name", p.values["name"])]


def _write_batch(conn: Any, batch: list[Pending], run: ImportRun) -> None:
    t = Customer.__table__  # type: ignore[attr-defined]
    existing = _existing(conn, batch)
    seen_in_batch: dict[tuple[str, str], int] = {}
    new: list[Pending] = []
    updates: list[tuple[int, Pending]] = []
    for p in batch:
        keys = _match_keys(p)
        clash = {k: existing[k] for k in keys if k in existing}
        earlier = next((seen_in_batch[k] for k in keys if k in seen_in_batch), None)
        if earlier is not None:
            run.reject(p.line, p.raw, f"same {keys[0][0]} as line {earlier} of this file")
            continue
        for k in keys:
            seen_in_batch[k] = p.line
        if not clash:
            new.append(p)
            continue
        ids = set(clash.values())
        if len(ids) > 1:
            run.reject(p.line, p.raw, "matches several customers: " + ", ".join(
                f"{k[0]} {k[1]} is customer {cid}" for k, cid in clash.items()))
            continue
        (cid,) = ids
        if run.on_duplicate == "skip":
            run.skipped += 1
        elif run.on_duplicate == "update":
            updates.append((cid, p))
        else:
            key, value = next(iter(clash))
            run.reject(p.line, p.raw, f"{key} {value} already belongs to customer {cid} "
                       "(use --on-duplicate skip or update)")
    if new:
        codes = _unused_codes(conn, len(new))
        rows = [{**p.values, "referral_code": code, "created_at": run.now, "updated_at": run.now}
                for p, code in zip(new, codes, strict=True)]
        for row in rows:
            for column in ("email", "phone", "ref", "company", "city", "source", "note"):
                row.setdefault(column, None)
        result = conn.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), rows)
        ids = [r.id for r in result]
        conn.execute(insert(StageChange.__table__), [  # type: ignore[attr-defined]
            {"customer_id": cid, "from_stage": None, "to_stage": p.values["stage"], "at": run.now}
            for cid, p in zip(ids, new, strict=True)])
        tag_rows = [{"customer_id": cid, "tag": tag} for cid, p in zip(ids, new, strict=True) for tag in p.tags]
        if tag_rows:
            conn.execute(insert(CustomerTag.__table__), tag_rows)  # type: ignore[attr-defined]
        run.inserted += len(new)
        _add_referrals(conn, [(cid, p) for cid, p in zip(ids, new, strict=True) if p.referred_by], run)
    for cid, p in updates:
        _update_existing(conn, cid, p, run)


def _unused_codes(conn: Any, count: int) -> list[str]:
    t = Customer.__table__  # type: ignore[attr-defined]
    codes: set[str] = set()
    while len(codes) < count:
        fresh = {new_referral_code() for _ in range(count - len(codes))} - codes
        taken = set(conn.execute(select(t.c.referral_code).where(t.c.referral_code.in_(fresh))).scalars())
        codes |= fresh - taken
    return list(codes)


def _add_referrals(conn: Any, items: list[tuple[int, Pending]], run: ImportRun) -> None:
    """Referrals of newly inserted customers; the referrer may be earlier in the file."""
    if not items:
        return
    t = Customer.__table__  # type: ignore[attr-defined]
    wanted = {p.referred_by for _, p in items if p.referred_by}
    ids = {w for w in wanted if w.isdigit()}
    found: dict[str, int] = {}
    query = select(t.c.id, t.c.email, t.c.ref, t.c.referral_code).where(or_(
        t.c.id.in_([int(i) for i in ids]) if ids else False,
        t.c.email.in_({w.lower() for w in wanted}),
        t.c.ref.in_(wanted),
        t.c.referral_code.in_({w.upper() for w in wanted}),
    ))
    for row in conn.execute(query):
        found[str(row.id)] = row.id
        for value in (row.email, row.ref, row.referral_code):
            if value:
                found[value] = row.id
    new_rows = []
    for cid, p in items:
        assert p.referred_by is not None
        ident = p.referred_by
        referrer = found.get(ident) or found.get(ident.lower()) or found.get(ident.upper())
        if referrer is None:
            run.reject(p.line, p.raw, f"referred_by {ident!r} is not a customer")
        elif referrer == cid:
            run.reject(p.line, p.raw, "a customer cannot refer themselves")
        else:
            new_rows.append({"referrer_id": referrer, "referred_id": cid, "status": "pending",
                             "created_at": run.now})
    if new_rows:
        conn.execute(insert(Referral.__table__), new_rows)  # type: ignore[attr-defined]
        run.referrals += len(new_rows)


def _update_existing(conn: Any, cid: int, p: Pending, run: ImportRun) -> None:
    """--on-duplicate update: the row's non-empty fields overwrite; tags are added."""
    t = Customer.__table__  # type: ignore[attr-defined]
    values = {k: v for k, v in p.values.items() if v is not None and k != "stage"}
    conn.execute(update(t).where(t.c.id == cid).values(**values, updated_at=run.now))
    stage = p.raw.get("stage", "").strip()
    if stage:
        current = conn.execute(select(t.c.stage).where(t.c.id == cid)).scalar_one()
        if current != p.values["stage"]:
            conn.execute(update(t).where(t.c.id == cid).values(stage=p.values["stage"]))
            conn.execute(insert(StageChange.__table__).values(  # type: ignore[attr-defined]
                customer_id=cid, from_stage=current, to_stage=p.values["stage"], at=run.now))
    have = set(conn.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == cid)).scalars())
    extra = [{"customer_id": cid, "tag": tag} for tag in p.tags if tag not in have]
    if extra:
        conn.execute(insert(CustomerTag.__table__), extra)  # type: ignore[attr-defined]
    run.updated += 1


def _write_rejects(path: Path, rejected: list[tuple[int, dict[str, str], str]]) -> None:
    with output_stream(path, encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["line", "error", *FIELDS])
        for line, raw, reason in sorted(rejected, key=lambda r: r[0]):
            writer.writerow([line, reason, *(raw.get(f, "") for f in FIELDS)])


# --- export -----------------------------------------------------------------------


def export_rows(conn: Any) -> Iterator[tuple[Any, ...]]:
    """Customers in import-column order, streamed in id order."""
    c = Customer.__table__  # type: ignore[attr-defined]
    tag = CustomerTag.__table__  # type: ignore[attr-defined]
    referrer = c.alias("referrer")
    tags = (
        select(func.aggregate_strings(tag.c.tag, ";"))
        .where(tag.c.customer_id == c.c.id).scalar_subquery()
    )
    referred_by = func.coalesce(referrer.c.ref, referrer.c.email, cast(referrer.c.id, String))
    query = (
        select(c.c.name, c.c.email, c.c.phone, c.c.company, c.c.city, c.c.source, c.c.stage,
               tags, c.c.ref, referred_by, c.c.note)
        .select_from(c)
        .outerjoin(Referral.__table__, Referral.__table__.c.referred_id == c.c.id)  # type: ignore[attr-defined]
        .outerjoin(referrer, referrer.c.id == Referral.__table__.c.referrer_id)  # type: ignore[attr-defined]
        .where(c.c.erased_at.is_(None))
        .order_by(c.c.id)
    )
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for row in result:
        yield tuple(row)


def export_customers(*, db: Database, path: Path | None, fmt: str = "csv", bom: bool = True) -> int:
    if fmt not in ("csv", "json"):
        raise Invalid(f"export format must be csv or json, not {fmt!r}")
    encoding = "utf-8-sig" if fmt == "csv" and bom else "utf-8"
    writer = write_csv if fmt == "csv" else write_json
    with db.engine.connect() as conn, output_stream(path, encoding=encoding) as handle:
        return writer(handle, FIELDS, export_rows(conn))
