"""Customer records: adding, editing, tags and listing (the profile, merge and erase have their own modules)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select
from sqlmodel import Session, col

from crmcli.config import Config
from crmcli.errors import Conflict, Invalid
from crmcli.models import (
    Customer,
    CustomerTag,
    StageChange,
)
from crmcli.services.codes import referral_code, unused_codes
from crmcli.services.identify import find_customer
from crmcli.services.stages import change_stage, check_stage
from crmcli.values import normalize_email, normalize_phone, parse_birthday, utcnow

TEXT_FIELDS = ("company", "city", "source", "note", "birthday")
ERASED_NAME = "(erased)"
SORT_FIELDS = ("id", "name", "email", "city", "stage", "created_at")


@dataclass
class CustomerInput:
    """Fields as a user typed them; :func:`clean_fields` validates and normalises."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    city: str | None = None
    source: str | None = None
    stage: str | None = None
    ref: str | None = None
    note: str | None = None
    birthday: str | None = None  # MM-DD
    tags: list[str] = field(default_factory=list)


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags are trimmed, lower-cased and unique, in the order given."""
    seen: dict[str, None] = {}
    for tag in tags:
        value = tag.strip().lower()
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def clean_fields(data: CustomerInput, config: Config, *, require_name: bool) -> dict[str, Any]:
    """Validated column values for the fields that were given (None means "not given")."""
    values: dict[str, Any] = {}
    if data.name is not None or require_name:
        name = _blank_to_none(data.name)
        if not name:
            raise Invalid("a customer needs a name")
        values["name"] = name
    if data.email is not None:
        email = _blank_to_none(data.email)
        values["email"] = normalize_email(email) if email else None
    if data.phone is not None:
        phone = _blank_to_none(data.phone)
        values["phone"] = normalize_phone(phone, config.default_phone_region) if phone else None
    if data.stage is not None:
        values["stage"] = check_stage(data.stage)
    if data.ref is not None:
        values["ref"] = _blank_to_none(data.ref)
    for name in TEXT_FIELDS:
        value = getattr(data, name)
        if value is not None:
            values[name] = _blank_to_none(value)
    if values.get("birthday"):
        values["birthday"] = parse_birthday(values["birthday"])
    return values


def ensure_unique(session: Session, values: dict[str, Any], *, exclude_id: int | None = None) -> None:
    """Refuse an email, phone or ref that another customer already has."""
    for column in ("email", "phone", "ref"):
        value = values.get(column)
        if value is None:
            continue
        query = select(col(Customer.id)).where(getattr(Customer, column) == value)
        if exclude_id is not None:
            query = query.where(col(Customer.id) != exclude_id)
        existing = session.execute(query).scalar()
        if existing is not None:
            raise Conflict(
                f"customer {existing} already has {column} {value}",
                subject="customer",
                key=existing,
            )


def write_unique(
    session: Session, change: Callable[[], None], values: dict[str, Any], *, exclude_id: int | None = None
) -> None:
    """Make ``change`` and write it; when another transaction took the same email, phone or
    ref between our check and our write (a race on PostgreSQL), say so as the check would."""
    from sqlalchemy.exc import IntegrityError

    session.flush()  # what came before is not part of the savepoint
    try:
        with session.begin_nested():  # the transaction stays usable after a refusal
            change()
            session.flush()
    except IntegrityError:
        with session.no_autoflush:  # the refused row is still pending: do not write it again
            ensure_unique(session, values, exclude_id=exclude_id)
        raise


def add_customer(
    *,
    session: Session,
    data: CustomerInput,
    config: Config,
    referred_by: str | None = None,
    now: datetime | None = None,
    at: datetime | None = None,
) -> Customer:
    """A new customer who joined at ``at`` (default now): the stage history and a referral
    start then, so a history typed in later still reads as it happened."""
    now = now or utcnow()
    at = at or now
    values = clean_fields(data, config, require_name=True)
    values.setdefault("stage", "lead")
    referrer = find_customer(session, referred_by, config.default_phone_region) if referred_by else None
    if referrer is not None:
        from crmcli.services.referrals import same_person

        # Said before the duplicate check: "cannot refer themselves" is the reason that helps.
        if reason := same_person(referrer, Customer(**values)):
            raise Invalid(f"a customer cannot refer themselves ({reason})")
    ensure_unique(session, values)
    code = unused_codes(session, col(Customer.referral_code), 1, referral_code)[0]
    customer = Customer(**values, referral_code=code, created_at=at, updated_at=now)
    write_unique(session, lambda: session.add(customer), values)
    assert customer.id is not None
    tag_customer(session, customer.id, clean_tags(data.tags))
    session.add(StageChange(customer_id=customer.id, from_stage=None, to_stage=customer.stage, at=at, cause="manual"))
    if referrer is not None:
        from crmcli.services.referrals import record_referral

        record_referral(session=session, referrer=referrer, referred=customer, now=at)
    return customer


def tag_customer(session: Session, customer_id: int, tags: Sequence[str]) -> None:
    if not tags:
        return
    existing = set(
        session.execute(select(col(CustomerTag.tag)).where(col(CustomerTag.customer_id) == customer_id)).scalars()
    )
    new = [{"customer_id": customer_id, "tag": t} for t in tags if t not in existing]
    if new:
        session.execute(insert(CustomerTag), new)


def edit_customer(
    *,
    session: Session,
    customer: Customer,
    data: CustomerInput,
    config: Config,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    now: datetime | None = None,
) -> Customer:
    now = now or utcnow()
    if customer.erased_at is not None:
        raise Invalid(f"customer {customer.id} was erased and cannot be edited")
    values = clean_fields(data, config, require_name=False)
    new_stage = values.pop("stage", None)
    ensure_unique(session, values, exclude_id=customer.id)

    def change() -> None:
        for key, value in values.items():
            setattr(customer, key, value)

    write_unique(session, change, values, exclude_id=customer.id)
    assert customer.id is not None
    tag_customer(session, customer.id, clean_tags(add_tags))
    drop = clean_tags(remove_tags)
    if drop:
        session.execute(
            delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer.id,
                col(CustomerTag.tag).in_(drop),
            )
        )
    if new_stage is not None:
        change_stage(session=session, customer=customer, stage=new_stage, now=now)
    customer.updated_at = now
    session.add(customer)
    return customer


# --- reading ------------------------------------------------------------------


def tags_of(session: Session, customer_ids: Sequence[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {i: [] for i in customer_ids}
    if not customer_ids:
        return result
    rows = session.execute(
        select(col(CustomerTag.customer_id), col(CustomerTag.tag))
        .where(col(CustomerTag.customer_id).in_(customer_ids))
        .order_by(col(CustomerTag.customer_id), col(CustomerTag.tag))
    )
    for customer_id, tag in rows:
        result[customer_id].append(tag)
    return result


def list_customers(
    *,
    session: Session,
    stage: str | None = None,
    tag: str | None = None,
    search: str | None = None,
    customer_ids: Sequence[int] | None = None,
    sort: str = "id",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_FIELDS:
        raise Invalid(f"cannot sort by {sort!r}: use one of {', '.join(SORT_FIELDS)} (prefix - for descending)")
    if limit is not None and limit < 1:
        raise Invalid("the limit must be at least 1", fields=("limit",))
    columns = [
        col(Customer.id),
        col(Customer.name),
        col(Customer.email),
        col(Customer.phone),
        col(Customer.company),
        col(Customer.city),
        col(Customer.stage),
        col(Customer.ref),
        col(Customer.created_at),
    ]
    query = select(*columns).where(col(Customer.erased_at).is_(None))
    if stage:
        query = query.where(col(Customer.stage) == check_stage(stage))
    if tag:
        query = query.where(
            col(Customer.id).in_(
                select(col(CustomerTag.customer_id)).where(col(CustomerTag.tag) == tag.strip().lower())
            )
        )
    if search:
        pattern = f"%{search.strip().lower()}%"
        matches = [
            func.lower(col(Customer.name)).like(pattern),
            col(Customer.email).like(pattern),
            func.lower(col(Customer.company)).like(pattern),
            func.lower(col(Customer.city)).like(pattern),
            col(Customer.phone).like(pattern),
            col(Customer.ref).like(pattern),
        ]
        # A phone as typed ("138 0013 8000", "(212) 555-0100") finds the stored number by its digits.
        digits = "".join(ch for ch in search if ch.isascii() and ch.isdigit())
        if len(digits) >= 4 and not any(ch.isalpha() for ch in search):
            matches.append(col(Customer.phone).like(f"%{digits}%"))
        query = query.where(or_(*matches))
    if customer_ids is not None:
        query = query.where(col(Customer.id).in_(customer_ids))
    order = getattr(Customer, key)
    query = query.order_by(order.desc() if descending else order, col(Customer.id))
    if limit:
        query = query.limit(limit)
    rows = [dict(r._mapping) for r in session.execute(query)]
    tags = tags_of(session, [r["id"] for r in rows])
    for row in rows:
        row["tags"] = tags[row["id"]]
    return rows
