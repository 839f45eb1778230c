"""Customer CSV import (validated, all-or-nothing, batched) and export (streamed)."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, select, union_all, update
from sqlmodel import Session

from crmcli.bulk import insert_rows, sqlite_rows_in
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import Invalid
from crmcli.io.importing import BULK_CACHE_KB, ImportRun, bulk_cache, check_options, run_import
from crmcli.io.reader import CsvOptions, TableSource, open_source
from crmcli.io.writer import Target, write_export
from crmcli.models import AutoReward, Customer, CustomerTag, Purchase, Referral, StageChange, table_of
from crmcli.services.codes import REFERRAL_CODE, referral_code, unused_codes
from crmcli.services.customers import CustomerInput, clean_fields, clean_tags
from crmcli.services.identify import identifier_keys
from crmcli.services.referrals import same_person
from crmcli.values import PHONE_REGION_HINT, phone_compared_by_digits, utcnow

FIELDS = (
    "name",
    "email",
    "phone",
    "company",
    "city",
    "source",
    "stage",
    "tags",
    "ref",
    "referred_by",
    "note",
    "birthday",
    "created_at",
    "stage_history",
    "referral_status",
    "referral_decided_at",
    "referral_reason",
    "birthday_rewards",
    "referral_code",
)
DECIDED_BY_HAND = ("verified", "rejected")
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
    "birthday",
    "stage",
    "referral_code",
    "created_at",
    "updated_at",
)
BATCH = 5000


@dataclass
class Pending:
    line: int
    cells: dict[str, str] | tuple[tuple[str, ...], tuple[str, ...]]  # see ``raw``
    values: dict[str, Any]
    tags: list[str]
    referred_by: str | None
    joined: datetime | None = None  # when the customer joined (the created_at column), else the import's time
    history: list[tuple[str, datetime]] = field(default_factory=list)  # stage changes by hand, the first on joining
    decision: Decision | None = None  # the referral decided by hand
    birthdays: list[tuple[str, datetime]] = field(default_factory=list)  # (year, when) the daily job rewarded

    @property
    def raw(self) -> dict[str, str]:
        """The row's cells. From a reading process they come as (columns, values), made a dict
        only for the few rows that need them (a refused row, a referral resolved later)."""
        if not isinstance(self.cells, dict):
            columns, values = self.cells
            self.cells = dict(zip(columns, values, strict=True))
        return self.cells


@dataclass(frozen=True)
class Decision:
    """A referral verified or rejected by hand (``referral verify``/``reject``), as the export writes it."""

    status: str
    at: datetime
    reason: str | None


@dataclass
class Someone:
    """The few fields the self-referral check compares, without building a model."""

    id: int | None
    email: str | None
    phone: str | None


class LineOf:
    """The file line that created, updated or skipped each customer: 4 bytes per id, flat memory."""

    def __init__(self) -> None:
        self._lines = array("I")

    def __setitem__(self, cid: int, line: int) -> None:
        if cid >= len(self._lines):
            self._lines.extend(bytes(4 * max(cid + 1 - len(self._lines), len(self._lines))))
        self._lines[cid] = line

    def get(self, cid: int) -> int:
        return self._lines[cid] if cid < len(self._lines) else 0


@dataclass
class Deferred:
    """A new customer's referral that waits for the end of the file: its referrer comes later, or by name."""

    line: int
    raw: dict[str, str] | None  # kept only for the rejected-rows file
    customer: Someone
    referred_by: str
    joined: datetime | None = None


@dataclass
class CustomerRun(ImportRun):
    keep_going: bool = False  # --skip-invalid: a rejected row must leave nothing behind
    referrals: int = 0
    first_new_id: int = 0
    decisions: dict[int, Decision] = field(default_factory=dict)  # new customer id -> its referral's decision
    line_of: LineOf = field(default_factory=LineOf)
    deferred: list[Deferred] = field(default_factory=list)
    dropped: set[int] = field(default_factory=set)
    forward_links: bool = False  # a referrer later in the file: from then on, circles are checked


END = Pending(0, {}, {}, [], None)
_END_ROW: dict[str, str] = {}


class CustomerSource(TableSource):
    """The file's rows, then an end marker that reaches ``_write_batch`` as the last batch's last item.

    The referrals that wait for the end of the file are settled there rather than in
    ``run_import``'s ``finish``, which runs after the all-or-nothing check, where their
    problems would not count.
    """

    def __init__(self, inner: TableSource) -> None:
        super().__init__(inner.path, inner.options, fields=inner.fields, required=inner.required, label=inner.label)
        self.inner = inner

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
        yield from self.inner.rows(progress)
        yield 0, _END_ROW

    def close(self) -> None:
        self.inner.close()


def _moment(text: str, what: str, config: Config, now: datetime | None) -> datetime:
    from crmcli.values import check_happened, parse_when

    try:
        moment = parse_when(text, config.tz, now=now, date_order=config.date_order)
    except Invalid as exc:
        raise Invalid(f"{what}: {exc}") from None
    checked = check_happened(moment, what, now=now, tz=config.tz)
    assert checked is not None
    return checked


def parse_stage_history(text: str, config: Config, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """``lead@2026-01-05T10:00:00+00:00;prospect@2026-02-01T09:30:00+00:00``: the stage changes made
    by hand, the first the stage the customer joined with (the export writes it so)."""
    from crmcli.services.stages import check_stage

    steps = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        stage, at, when = part.partition("@")
        if not at:
            raise Invalid(f"stage_history: {part!r} is not stage@time")
        steps.append((check_stage(stage), _moment(when.strip(), "stage_history", config, now)))
    if any(later[1] < earlier[1] for earlier, later in zip(steps, steps[1:], strict=False)):
        raise Invalid("stage_history: the changes are not in time order")
    return steps


def validate_row(line: int, raw: dict[str, str], config: Config, now: datetime | None = None) -> Pending:
    if raw is _END_ROW:
        return END
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
        birthday=raw.get("birthday"),
    )
    values = clean_fields(data, config, require_name=True)
    values.setdefault("stage", "lead")
    code = (raw.get("referral_code") or "").strip().upper()
    if code:  # the code the customer was given, kept when the customer is new
        if not REFERRAL_CODE.fullmatch(code):
            raise Invalid(f"referral_code {code!r} is not a referral code (8 letters and digits, no 0, 1, I or O)")
        values["referral_code"] = code
    tags = clean_tags((raw.get("tags") or "").split(";"))
    referred_by = (raw.get("referred_by") or "").strip() or None
    joined_text = (raw.get("created_at") or "").strip()
    joined = _moment(joined_text, "created_at", config, now) if joined_text else None
    history = parse_stage_history(raw.get("stage_history") or "", config, now)
    if history:
        joined = joined or history[0][1]
        if history[0][1] < joined:
            raise Invalid("stage_history: a change is dated before the customer joined")
        values["stage"] = history[-1][0]  # the stage set by hand last: purchases then move it on
    elif joined is not None:
        history = [(values["stage"], joined)]
    decision = _decision(raw, referred_by, joined or now, config, now)
    birthdays = _birthday_rewards(raw.get("birthday_rewards") or "", config, now)
    return Pending(line, raw, values, tags, referred_by, joined, history, decision, birthdays)


def _birthday_rewards(text: str, config: Config, now: datetime | None) -> list[tuple[str, datetime]]:
    """``2025@2025-04-28T06:00:00+00:00;2026@…``: the years the daily job gave a birthday reward, and when."""
    given = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        year, at, when = part.partition("@")
        year = year.strip()
        if not at or not (year.isascii() and year.isdigit() and len(year) == 4):
            raise Invalid(f"birthday_rewards: {part!r} is not year@time")
        given.append((year, _moment(when.strip(), "birthday_rewards", config, now)))
    if len({year for year, _ in given}) < len(given):
        raise Invalid("birthday_rewards: a year is given twice (a birthday is rewarded once a year)")
    return given


def _decision(
    raw: dict[str, str], referred_by: str | None, joined: datetime | None, config: Config, now: datetime | None
) -> Decision | None:
    """The referral's decision made by hand: verified or rejected, when, and why (a rejection)."""
    status = (raw.get("referral_status") or "").strip().lower()
    when = (raw.get("referral_decided_at") or "").strip()
    reason = (raw.get("referral_reason") or "").strip() or None
    if not status:
        if when or reason:
            raise Invalid("referral_decided_at and referral_reason need a referral_status")
        return None
    if status not in DECIDED_BY_HAND:
        raise Invalid(f"referral_status must be verified or rejected (a decision made by hand), not {status!r}")
    if referred_by is None:
        raise Invalid("a referral_status needs the referral: give referred_by")
    if not when:
        raise Invalid("a referral_status needs the time it was decided (referral_decided_at)")
    at = _moment(when, "referral_decided_at", config, now)
    if joined is not None and at < joined:
        raise Invalid("referral_decided_at: the referral is decided before the customer joined")
    if status == "rejected" and reason is None:
        raise Invalid("a rejected referral needs its reason (referral_reason)")
    return Decision(status, at, reason if status == "rejected" else None)


_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}  # a file's few lists of columns, each one object


def _keys(mapping: dict[str, Any]) -> tuple[str, ...]:
    keys = tuple(mapping)
    return _KEYS.setdefault(keys, keys)


_CARRIED = tuple(f.name for f in fields(Pending) if f.name not in ("cells", "values"))  # as they are


def _plain(p: Pending) -> tuple[Any, ...]:
    """A validated row as plain values, cheap to send from a reading process (see ``_pending``):
    its two dicts as shared key lists and value tuples, every other field as it is."""
    return (
        _keys(p.raw),
        tuple(p.raw.values()),
        _keys(p.values),
        tuple(p.values.values()),
        *(getattr(p, f) for f in _CARRIED),
    )


def _pending(plain: tuple[Any, ...]) -> Pending:
    raw_keys, raw, keys, values, line, *carried = plain  # (``line`` is the first of _CARRIED)
    return Pending(line, (raw_keys, raw), dict(zip(keys, values, strict=True)), *carried)


def import_customers(
    *,
    db: Database,
    config: Config,
    path: Path,
    options: CsvOptions,
    dry_run: bool = False,
    reject_file: Path | Target | None = None,
    on_duplicate: str = "error",
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Import a customer CSV in one transaction; returns counts.

    A row whose email, phone or ref belongs to a customer (or, with none of the three,
    whose name is that of a customer who has none either) is a duplicate, handled by
    ``on_duplicate``; two rows of the file that match each other are an error whatever
    ``on_duplicate`` says. All or nothing unless ``reject_file`` is given. ``warn`` is told,
    after an import that went through, when phones were compared by their digits for
    want of a default region.
    """
    check_options(on_duplicate, reject_file)
    source = CustomerSource(open_source(path, options, fields=FIELDS, required=("name",)))
    run = CustomerRun(config=config, on_duplicate=on_duplicate, now=now or utcnow(), keep_going=reject_file is not None)
    by_digits = False

    def write(session: Session, batch: list[Pending]) -> None:
        nonlocal by_digits
        by_digits = by_digits or any(phone_compared_by_digits(p.raw.get("phone"), region) for p in batch)
        _write_batch(session, batch, run, source)

    region = config.default_phone_region
    counts = run_import(
        db=db,
        source=source,
        run=run,
        batch_size=BATCH,
        dry_run=dry_run,
        reject_file=reject_file,
        progress=progress,
        validate=lambda line, raw: validate_row(line, raw, config, run.now),
        write_batch=write,
        pack=_plain,
        unpack=_pending,
    )
    by_digits = by_digits or any(phone_compared_by_digits(raw.get("phone"), region) for _, raw, _ in run.rejected)
    if by_digits and warn is not None:
        warn(PHONE_REGION_HINT)
    return {**counts, "referrals": run.referrals}


def _existing(conn: Any, batch: list[Pending]) -> dict[tuple[str, str], int]:
    """(key, value) -> customer id for the batch's emails, phones, refs and keyless names."""
    t = table_of(Customer)
    by_key = {key: {p.values[key] for p in batch if p.values.get(key)} for key in KEYS}
    names = {p.values["name"] for p in batch if not any(p.values.get(k) for k in KEYS)}
    found: dict[tuple[str, str], int] = {}
    columns = (t.c.id, t.c.name, *(t.c[k] for k in KEYS))
    if conn.dialect.name == "sqlite":  # one query per key, straight through the driver
        shown = f"SELECT {', '.join(c.name for c in columns)} FROM customer"
        keyless = " AND ".join(["erased_at IS NULL", *(f"{k} IS NULL" for k in KEYS)])
        rows: Iterable[Any] = [
            *(row for key, values in by_key.items() for row in sqlite_rows_in(conn, shown, key, values)),
            *sqlite_rows_in(conn, shown, "name", names, keyless),
        ]
    else:
        conditions: list[Any] = [t.c[key].in_(values) for key, values in by_key.items() if values]
        if names:
            keyless_sql = [t.c[k].is_(None) for k in KEYS]
            conditions.append(and_(t.c.name.in_(names), t.c.erased_at.is_(None), *keyless_sql))
        rows = conn.execute(select(*columns).where(or_(*conditions))) if conditions else []
    for cid, name, *keys in rows:
        matches = [(k, v) for k, v in zip(KEYS, keys, strict=True) if v is not None]
        for match in matches or [("name", name)]:
            found[match] = cid
    return found


def _match_keys(p: Pending) -> list[tuple[str, str]]:
    keys = [(k, p.values[k]) for k in KEYS if p.values.get(k)]
    return keys or [("name", p.values["name"])]


def _own_keys(p: Pending) -> set[tuple[str, str]]:
    return {(k, p.values[k]) for k in KEYS if p.values.get(k)}


def _write_batch(session: Session, batch: list[Pending], run: CustomerRun, source: CustomerSource) -> None:
    conn = session.connection()
    if not run.first_new_id:
        # the unique indexes of emails, phones and codes take a row each at random places
        bulk_cache(session, BULK_CACHE_KB // 2)
        run.first_new_id = conn.execute(select(func.coalesce(func.max(table_of(Customer).c.id), 0))).scalar_one() + 1
    last = bool(batch) and batch[-1].line == END.line  # (END itself, or its copy from a reading process)
    if last:
        batch = batch[:-1]
    _write_new(session, _own_codes(conn, _new_rows(conn, batch, run), run), run)
    if last:
        _settle_deferred(session, run)
        _apply_decisions(conn, run)
        _fill_rejected_rows(run, source)


def _apply_decisions(conn: Any, run: CustomerRun) -> None:
    """The referrals decided by hand take their decision, with no reward: the rewards they gave
    are in the coupon and points files, and a later sale neither verifies nor rewards them again."""
    r = table_of(Referral)
    params = [
        # a referral verified by hand was rewarded then: the daily check leaves it as it is
        {
            "cid": cid,
            "status": d.status,
            "at": d.at,
            "reason": d.reason,
            "given": d.at if d.status == "verified" else None,
        }
        for cid, d in run.decisions.items()
        if cid not in run.dropped
    ]
    for start in range(0, len(params), BATCH):
        conn.execute(
            update(r)
            .where(r.c.referred_id == bindparam("cid"), r.c.status == "pending")
            .values(
                status=bindparam("status"),
                decided_at=bindparam("at"),
                reason=bindparam("reason"),
                rewarded_at=bindparam("given"),
            ),
            params[start : start + BATCH],
        )


def _new_rows(conn: Any, batch: list[Pending], run: CustomerRun) -> list[Pending]:
    """The rows that are new customers; duplicates are skipped, updated or rejected."""
    existing = _existing(conn, batch)
    seen: dict[tuple[str, str], int] = {}
    new: list[Pending] = []
    for p in batch:
        keys = _match_keys(p)
        clash = {k: existing[k] for k in keys if k in existing}
        # A row of an earlier batch is in the database by now; the line recorded for its
        # customer tells it apart from a customer that was there before the import.
        earlier = [(k, seen[k]) for k in keys if k in seen]
        earlier += [(k, run.line_of.get(cid)) for k, cid in clash.items() if run.line_of.get(cid)]
        if earlier:
            (key, _), line = earlier[0]
            run.reject(p.line, p.raw, f"same {key} as line {line} of this file")
            continue
        for k in keys:
            seen[k] = p.line
        if not clash:
            new.append(p)
            continue
        ids = set(clash.values())
        if len(ids) > 1:
            detail = ", ".join(f"{k[0]} {k[1]} is customer {cid}" for k, cid in clash.items())
            run.reject(p.line, p.raw, f"matches several customers: {detail}")
            continue
        cid = ids.pop()
        run.line_of[cid] = p.line
        if run.on_duplicate == "skip":
            run.skipped += 1
        elif run.on_duplicate == "update":
            _update_existing(conn, cid, p, run)
        else:
            (key, value), _ = next(iter(clash.items()))
            run.duplicate(p.line, p.raw, f"{key} {value} already belongs to customer {cid}")
    return new


def _own_codes(conn: Any, rows: list[Pending], run: CustomerRun) -> list[Pending]:
    """The new customers whose file gives a referral code no one else has (in the database, an
    earlier row of the file, or this batch); the others are refused."""
    given = {p.values["referral_code"] for p in rows if "referral_code" in p.values}
    if not given:
        return rows
    t = table_of(Customer)
    holder = dict(conn.execute(select(t.c.referral_code, t.c.id).where(t.c.referral_code.in_(given))).all())
    seen: dict[str, int] = {}
    kept = []
    for p in rows:
        code = p.values.get("referral_code")
        if code is not None and code in holder:
            line = run.line_of.get(holder[code])
            where = f"line {line} of this file" if line else f"customer {holder[code]}"
            run.reject(p.line, p.raw, f"referral_code {code} already belongs to {where}")
        elif code is not None and code in seen:
            run.reject(p.line, p.raw, f"referral_code {code} already belongs to line {seen[code]} of this file")
        else:
            if code is not None:
                seen[code] = p.line
            kept.append(p)
    return kept


def _write_new(session: Session, rows: list[Pending], run: CustomerRun) -> None:
    """Insert the new customers with their referrals to customers already written.

    A row that names itself, or a referrer who is the same person, is refused before
    anything is written. A referrer not in the database yet (later in the file, or named
    by name) is looked for again at the end of the file; the customer is written now,
    in file order, so that an export imports back with the same order.
    """
    region = run.config.default_phone_region
    referrers = Referrers(session.connection(), {p.referred_by for p in rows if p.referred_by}, region)
    ready: list[Pending] = []
    referrer_of: dict[int, Any] = {}
    later: list[Pending] = []
    for p in rows:
        if p.referred_by:
            if _own_keys(p).intersection(Referrers.keys_of(p.referred_by, region)):
                run.reject(p.line, p.raw, "a customer cannot refer themselves (the same row)")
                continue
            referrer = referrers.find(p.referred_by)
            if referrer is None:
                later.append(p)
            elif reason := same_person(_someone(referrer), _someone(p)):
                run.reject(p.line, p.raw, f"a customer cannot refer themselves ({reason})")
                continue
            else:
                referrer_of[p.line] = referrer
        ready.append(p)
        referrers.add(p)
    if not ready:
        return
    id_by_line = _insert_new(session, ready, referrer_of, run)
    for p in later:
        assert p.referred_by is not None
        someone = Someone(id_by_line[p.line], p.values.get("email"), p.values.get("phone"))
        run.deferred.append(Deferred(p.line, p.raw if run.keep_going else None, someone, p.referred_by, p.joined))


def _someone(who: Any) -> Someone:
    if isinstance(who, Pending):
        return Someone(None, who.values.get("email"), who.values.get("phone"))
    return Someone(who.id, who.email, who.phone)


def _settle_deferred(session: Session, run: CustomerRun) -> None:
    """The referrals that waited for the end of the file, when every customer of it is written."""
    from crmcli.services.referrals import would_cycle

    conn = session.connection()
    region = run.config.default_phone_region
    waiting, run.deferred = run.deferred, []
    refused = _rejected_rows_by_key(run) if waiting else {}
    for start in range(0, len(waiting), BATCH):
        chunk = [d for d in waiting[start : start + BATCH] if d.customer.id not in run.dropped]
        referrers = Referrers(conn, {d.referred_by for d in chunk}, region, by_name=True)
        rejected: dict[int, tuple[int, dict[str, str] | None, str]] = {}
        for d in chunk:
            cid = d.customer.id
            assert cid is not None
            referrer = referrers.find(d.referred_by)
            if referrer is None:
                earlier = next((refused[k] for k in Referrers.keys_of(d.referred_by, region) if k in refused), None)
                why = f"its referrer, line {earlier}, was rejected" if earlier else referrers.why_not(d.referred_by)
                rejected[cid] = (d.line, d.raw, why)
                continue
            if reason := same_person(_someone(referrer), d.customer):
                rejected[cid] = (d.line, d.raw, f"a customer cannot refer themselves ({reason})")
                continue
            new = referrer.id >= run.first_new_id
            run.forward_links |= new and run.line_of.get(referrer.id) > d.line
            # Every circle has a referrer later in the file; once there is one, check each new referrer.
            if new and run.forward_links and would_cycle(session, referrer.id, cid):
                rejected[cid] = (
                    d.line,
                    d.raw,
                    f"referred_by {d.referred_by!r} was brought by this customer, directly or through "
                    "others: a referral cannot close a circle",
                )
                continue
            conn.execute(
                insert(table_of(Referral)).values(
                    referrer_id=referrer.id, referred_id=cid, status="pending", created_at=d.joined or run.now
                )
            )
            run.referrals += 1
        _reject_written(conn, run, rejected)


def _rejected_rows_by_key(run: CustomerRun) -> dict[tuple[str, str], int]:
    """The keys (ref, email, phone, name) of the rows rejected so far, to say why a referrer is missing."""
    region = run.config.default_phone_region
    found: dict[tuple[str, str], int] = {}
    for line, raw, _ in run.rejected:
        for kind in ("ref", "email", "phone", "name"):
            value = (raw.get(kind) or "").strip()
            if not value:
                continue
            keys = [(kind, value.lower() if kind == "email" else value)]
            if kind == "phone":
                keys += [k for k in Referrers.keys_of(value, region) if k[0] == "phone"]
            for key in keys:
                found.setdefault(key, line)
    return found


def _reject_written(conn: Any, run: CustomerRun, rejected: dict[int, tuple[int, dict[str, str] | None, str]]) -> None:
    """Reject rows whose customers are written already.

    With --skip-invalid the customers are deleted again, and so are the customers of
    this file they referred, whose rows are rejected in turn: a rejected row leaves
    nothing behind, so it can be fixed and imported again. Without it, everything is
    rolled back anyway. Rows not kept in memory get their cells back at the end.
    """
    for line, raw, reason in rejected.values():
        run.reject(line, raw or {}, reason)
    if not run.keep_going or not rejected:
        return
    c, r = table_of(Customer), table_of(Referral)
    tags, stages = table_of(CustomerTag), table_of(StageChange)
    todo = list(rejected)
    while todo:
        children = conn.execute(select(r.c.referred_id, r.c.referrer_id).where(r.c.referrer_id.in_(todo))).all()
        run.referrals -= conn.execute(
            delete(r).where(or_(r.c.referred_id.in_(todo), r.c.referrer_id.in_(todo)))
        ).rowcount
        conn.execute(delete(tags).where(tags.c.customer_id.in_(todo)))
        conn.execute(delete(stages).where(stages.c.customer_id.in_(todo)))
        conn.execute(delete(table_of(AutoReward)).where(table_of(AutoReward).c.customer_id.in_(todo)))
        conn.execute(delete(c).where(c.c.id.in_(todo)))
        run.inserted -= len(todo)
        run.dropped.update(todo)
        for child, parent in children:
            run.reject(run.line_of.get(child), {}, f"its referrer, line {run.line_of.get(parent)}, was rejected")
        todo = [child for child, _ in children]


def _fill_rejected_rows(run: CustomerRun, source: CustomerSource) -> None:
    """Read the file again for the cells of rejected rows that were not kept in memory."""
    missing = {line for line, raw, _ in run.rejected if not raw}
    if not missing or not run.keep_going:
        return
    cells = {line: raw for line, raw in source.inner.rows() if line in missing}
    run.rejected = [(line, raw or cells.get(line, {}), reason) for line, raw, reason in run.rejected]


def _insert_new(session: Session, new: list[Pending], referrer_of: dict[int, Any], run: CustomerRun) -> dict[int, int]:
    """One executemany for the customers, and one for each of their tags, stage histories,
    birthday rewards and referrals."""
    conn = session.connection()
    t = table_of(Customer)
    made = iter(unused_codes(conn, t.c.referral_code, sum("referral_code" not in p.values for p in new), referral_code))
    codes = [p.values.get("referral_code") or next(made) for p in new]
    sqlite = conn.dialect.name == "sqlite"
    # On SQLite the ids are given: the next ones after the largest, as SQLite would give them (the
    # import holds the write lock), without reading them back. Elsewhere they are read back by code.
    top = conn.execute(select(func.coalesce(func.max(t.c.id), 0))).scalar_one() if sqlite else 0
    rows = [
        {
            "id": top + 1 + i,
            "email": None,
            "phone": None,
            "ref": None,
            "company": None,
            "city": None,
            "source": None,
            "note": None,
            "birthday": None,
            **p.values,
            "referral_code": code,
            "created_at": p.joined or run.now,
            "updated_at": run.now,
        }
        for i, (p, code) in enumerate(zip(new, codes, strict=True))
    ]
    if sqlite:
        insert_rows(conn, t, ("id", *COLUMNS), rows)
        ids = [row["id"] for row in rows]
    else:
        insert_rows(conn, t, COLUMNS, rows)
        id_of = dict(conn.execute(select(t.c.referral_code, t.c.id).where(t.c.referral_code.in_(codes))).all())
        ids = [id_of[code] for code in codes]
    id_by_line = {p.line: cid for cid, p in zip(ids, new, strict=True)}
    joined_by_line = {p.line: p.joined for p in new}
    for cid, p in zip(ids, new, strict=True):
        run.line_of[cid] = p.line
        if p.decision is not None:
            run.decisions[cid] = p.decision
    given = [
        {"rule": "birthday", "customer_id": cid, "key": year, "coupon_id": None, "points": None, "at": at}
        for cid, p in zip(ids, new, strict=True)
        for year, at in p.birthdays
    ]
    insert_rows(conn, table_of(AutoReward), ("rule", "customer_id", "key", "coupon_id", "points", "at"), given)
    # The stage history starts when the customer joined, with the changes by hand the file gives.
    steps = []
    for cid, p in zip(ids, new, strict=True):
        previous = None
        for stage, at in p.history or [(p.values["stage"], p.joined or run.now)]:
            steps.append({"customer_id": cid, "from_stage": previous, "to_stage": stage, "at": at, "cause": "manual"})
            previous = stage
    insert_rows(conn, table_of(StageChange), ("customer_id", "from_stage", "to_stage", "at", "cause"), steps)
    tag_rows = [{"customer_id": cid, "tag": tag} for cid, p in zip(ids, new, strict=True) for tag in p.tags]
    insert_rows(conn, table_of(CustomerTag), ("customer_id", "tag"), tag_rows)
    run.inserted += len(new)
    links = [
        {
            "referrer_id": id_by_line[who.line] if isinstance(who, Pending) else who.id,
            "referred_id": id_by_line[line],
            "status": "pending",
            "created_at": joined_by_line[line] or run.now,  # recorded when the referred customer joined
        }
        for line, who in referrer_of.items()
    ]
    insert_rows(conn, table_of(Referral), ("referrer_id", "referred_id", "status", "created_at"), links)
    run.referrals += len(links)
    return id_by_line


class Referrers:
    """Whom ``referred_by`` cells name: customers found in one query, and the rows accepted before.

    Tried in this order: ref, email, phone, referral code, id and, at the end of the
    file only (the name is not indexed), exact name. The identifiers a file carries from
    elsewhere come before this database's own, as ids and codes differ from one database
    to another: an export names each referrer by ref, else email, else phone, else name,
    and so imports back to the same referrer even when a ref is a number that is also
    some customer's id.
    """

    def __init__(self, conn: Any, wanted: set[str], region: str | None, *, by_name: bool = False) -> None:
        self.region = region
        self.by_name = by_name
        self.known: dict[tuple[str, str], list[Any]] = {}
        # the keys the wanted cells may stand for: the only ones looked up, so the only ones kept
        self.keys = keys = {key for ident in wanted for key in self.keys_of(ident, region)}
        if not wanted:
            return
        t = table_of(Customer)
        values = {kind: {v for k, v in keys if k == kind} for kind in ("ref", "email", "phone", "code", "id")}
        conditions = [
            t.c.ref.in_(values["ref"]),
            t.c.email.in_(values["email"]),
            t.c.phone.in_(values["phone"]),
            t.c.referral_code.in_(values["code"]),
            t.c.id.in_({int(v) for v in values["id"]}),
        ]
        if by_name:
            conditions.append(t.c.name.in_(wanted))
        columns = (t.c.id, t.c.name, t.c.email, t.c.phone, t.c.ref, t.c.referral_code)
        for row in conn.execute(select(*columns).where(t.c.erased_at.is_(None), or_(*conditions))):
            found = [("ref", row.ref), ("email", row.email), ("phone", row.phone)]
            found += [("code", row.referral_code), ("id", str(row.id)), ("name", row.name)]
            for kind, value in found:
                if value is not None:
                    self.known.setdefault((kind, value), []).append(row)

    @staticmethod
    def keys_of(ident: str, region: str | None = None) -> list[tuple[str, str]]:
        """The (kind, value) pairs ``ident`` may stand for: the customer rule, then the name."""
        return [*identifier_keys(ident, region), ("name", ident)]

    def add(self, p: Pending) -> None:
        """A row accepted in this batch, which later rows of the batch may name."""
        for key in [*_own_keys(p), ("name", p.values["name"])]:
            if key in self.keys:
                self.known.setdefault(key, []).append(p)

    def find(self, ident: str) -> Any | None:
        """A customer row or an accepted Pending row, or None (see :meth:`why_not`).

        As for every customer cell, a text that matches two different customers by
        different keys names neither.
        """
        matches: dict[Any, Any] = {}
        for key in self.keys_of(ident, self.region):
            if key[0] != "name":
                for who in self.known.get(key, ()):
                    matches.setdefault(("line", who.line) if isinstance(who, Pending) else ("id", who.id), who)
        if len(matches) == 1:
            return next(iter(matches.values()))
        if matches or not self.by_name:
            return None
        named = self.known.get(("name", ident), [])
        # An export names a referrer by name only when it has no ref, email or phone.
        keyless = [who for who in named if not _has_keys(who)]
        if len(named) == 1 or len(keyless) == 1:
            return (named if len(named) == 1 else keyless)[0]
        return None

    def why_not(self, ident: str) -> str:
        matched = {
            ("line", who.line) if isinstance(who, Pending) else ("id", who.id)
            for key in self.keys_of(ident, self.region)
            if key[0] != "name"
            for who in self.known.get(key, ())
        }
        if len(matched) > 1:
            return (
                f"referred_by {ident!r} matches {len(matched)} customers by different keys: "
                "write id:, ref:, email:, phone: or code: before it to say which"
            )
        named = self.known.get(("name", ident), []) if self.by_name else []
        if len(named) > 1:
            return f"referred_by {ident!r} names {len(named)} customers: use their email, ref or id"
        return f"referred_by {ident!r} is not a customer"


def _has_keys(who: Any) -> bool:
    if isinstance(who, Pending):
        return bool(_own_keys(who))
    return who.email is not None or who.phone is not None or who.ref is not None


def _update_existing(conn: Any, cid: int, p: Pending, run: CustomerRun) -> None:
    """--on-duplicate update: the row's non-empty fields overwrite; tags are added. The customer
    keeps the referral code it has (it may be in people's hands already)."""
    t = table_of(Customer)
    values = {k: v for k, v in p.values.items() if v is not None and k not in ("stage", "referral_code")}
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
    """Customers in import-column order, in id order.

    The referrer is named by ref, else email, else phone, else name: what the import
    tries first, and what stays the same in another database (ids and referral codes
    do not). An erased referrer is left out, and so is the referral.
    """
    c = table_of(Customer)
    tag = table_of(CustomerTag)
    r = table_of(Referral)
    referrer = c.alias("referrer")
    sale = table_of(Purchase).alias("sale")
    tags = select(func.aggregate_strings(tag.c.tag, ";")).where(tag.c.customer_id == c.c.id).scalar_subquery()
    # Explicit forms (ref:12), so a till's numeric ref is never read as another customer's id.
    referred_by = func.coalesce(
        literal("ref:") + referrer.c.ref,
        literal("email:") + referrer.c.email,
        literal("phone:") + referrer.c.phone,
        referrer.c.name,
    )
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
            c.c.birthday,
            c.c.created_at,
            c.c.id,
            r.c.status,
            r.c.decided_at,
            r.c.reason,
            r.c.created_at,
            sale.c.at,
            c.c.referral_code,
        )
        .select_from(c)
        .outerjoin(r, r.c.referred_id == c.c.id)
        .outerjoin(sale, sale.c.id == r.c.purchase_id)
        .outerjoin(referrer, and_(referrer.c.id == r.c.referrer_id, referrer.c.erased_at.is_(None)))
        .where(c.c.erased_at.is_(None))
        .order_by(c.c.id)
    )


def export_rows(conn: Any, config: Config | None = None, history: Any = None) -> Iterator[tuple[Any, ...]]:
    """The export's rows: each customer with when they joined and the stage changes made by hand
    (``stage_history``; the purchases' changes come back with the purchases). ``history`` is a
    second connection: the changes stream beside the customers, both in customer order."""
    tz = config.tz if config is not None else None
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(export_query())
    steps = iter(_manual_steps(history or conn, tz)) if history is not None else None
    pending: tuple[int, str, str] | None = None
    for row in result:
        *fields, joined, cid, status, decided, reason, linked, sale_at, code = tuple(row)
        own: dict[str, list[str]] = {"stage": [], "birthday": []}
        if steps is not None:
            while True:
                if pending is None:
                    pending = next(steps, None)
                if pending is None or pending[0] > cid:
                    break
                if pending[0] == cid:
                    own[pending[1]].append(pending[2])
                pending = None
        decision: tuple[Any, ...] = (None, None, None)
        # The decisions made by hand; those the sales make (verified at the first qualifying
        # sale, held for review) come back with the purchase file. No referrer named, no referral.
        by_hand = status == "rejected" or (
            status == "verified" and (sale_at is None or decided != max(sale_at, linked))
        )
        if by_hand and fields[9] is not None:
            decision = (status, _iso(decided, tz), reason)
        stages, birthdays = (";".join(own[k]) or None for k in ("stage", "birthday"))
        yield (*fields, _iso(joined, tz), stages, *decision, birthdays, code)


def _manual_steps(conn: Any, tz: Any) -> Iterator[tuple[int, str, str]]:
    """In customer order: the stage changes made by hand (``stage``) and the birthday rewards the
    daily job gave (``birthday``: the year), each as ``what@time``."""
    sc, c, a = table_of(StageChange), table_of(Customer), table_of(AutoReward)
    stages = select(
        sc.c.customer_id, literal("stage").label("kind"), sc.c.to_stage.label("what"), sc.c.at, sc.c.id
    ).where(sc.c.cause == "manual")
    birthdays = select(a.c.customer_id, literal("birthday"), a.c.key, a.c.at, a.c.id).where(a.c.rule == "birthday")
    both = union_all(stages, birthdays).subquery("beside")
    query = (
        select(both.c.customer_id, both.c.kind, both.c.what, both.c.at)
        .join(c, c.c.id == both.c.customer_id)
        .where(c.c.erased_at.is_(None))
        .order_by(both.c.customer_id, both.c.kind, both.c.at, both.c.id)
    )
    for cid, kind, what, at in conn.execution_options(stream_results=True, yield_per=5000).execute(query):
        yield cid, kind, f"{what}@{_iso(at, tz)}"


def _iso(moment: datetime | None, tz: Any) -> str | None:
    if moment is None:
        return None
    return (moment.astimezone(tz) if tz is not None else moment).isoformat()  # exact: microseconds when there are any


def export_customers(
    *, db: Database, path: Path | Target | None, fmt: str = "csv", bom: bool = True, config: Config | None = None
) -> int:
    """Customers with when they joined and their stage changes by hand, so that importing this
    file, then the purchase and interaction exports, rebuilds the same history."""
    # two connections: the stage changes stream beside the customers
    return write_export(db, path, fmt, bom, FIELDS, lambda conn, steps: export_rows(conn, config, steps), connections=2)
