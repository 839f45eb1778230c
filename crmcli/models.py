"""SQLModel tables. Money is integer minor units; times are UTC.

Times are stored as naive UTC (portable between SQLite and PostgreSQL) and come
back timezone-aware through :class:`UTCDateTime`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Table, UniqueConstraint, inspect, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

M = TypeVar("M", bound=SQLModel)

# Named constraints let later migrations alter them on SQLite (batch mode).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; attach a timezone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for set-based statements."""
    return cast(Table, getattr(model, "__table__"))  # noqa: B009 - not declared on SQLModel's metaclass


def as_written(model: type[M], values: dict[str, Any]) -> M:
    """The model object of a row just written in SQL (a Core INSERT), made as the ORM makes
    one it loads: its values set, no changes pending, and without SQLModel's constructor,
    which costs a tenth of a sale at the till."""
    obj = cast(M, inspect(model).class_manager.new_instance())
    defaults = _defaults(model)
    obj.__dict__.update({name: defaults[name] for name in defaults.keys() - values.keys()})
    obj.__dict__.update(values)
    return obj


@functools.cache
def _defaults(model: type[SQLModel]) -> dict[str, Any]:
    """The defaults the constructor would set (a field without one stays unset, as there); the
    tables' defaults are plain values (no factories), shared safely."""
    fields = model.model_fields
    assert all(field.default_factory is None for field in fields.values())
    return {name: field.default for name, field in fields.items() if not field.is_required()}


def _time(nullable: bool = False, index: bool = False) -> datetime:
    return Field(sa_type=UTCDateTime, nullable=nullable, index=index)


def _money(default: int | None = 0) -> int:
    return Field(default=default, sa_type=BigInteger, nullable=default is None)


class Customer(SQLModel, table=True):
    __tablename__ = "customer"
    __table_args__ = (
        CheckConstraint(
            "stage IN ('lead','verified','prospect','customer','repeat','lost')",
            name="stage",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str | None = Field(default=None, unique=True)
    phone: str | None = Field(default=None, unique=True)
    ref: str | None = Field(default=None, unique=True)
    company: str | None = None
    city: str | None = None
    source: str | None = None
    note: str | None = None
    birthday: str | None = None  # "MM-DD": the day and month only, no year (birthday rewards)
    stage: str = Field(default="lead", index=True)
    referral_code: str = Field(unique=True)
    created_at: datetime = _time()
    updated_at: datetime = _time()
    erased_at: datetime | None = _time(nullable=True)


class CustomerTag(SQLModel, table=True):
    __tablename__ = "customer_tag"
    __table_args__ = (Index("ix_customer_tag_tag", "tag"),)

    customer_id: int = Field(foreign_key="customer.id", primary_key=True)
    tag: str = Field(primary_key=True)


class StageChange(SQLModel, table=True):
    __tablename__ = "stage_change"
    __table_args__ = (Index("ix_stage_change_customer_at", "customer_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    from_stage: str | None = None
    to_stage: str
    at: datetime = _time()
    cause: str = Field(default="manual")  # "manual", or "purchase" for the rows the purchase rule derives


class Interaction(SQLModel, table=True):
    __tablename__ = "interaction"
    __table_args__ = (
        Index("ix_interaction_customer_at", "customer_id", "at"),
        Index("ix_interaction_follow_up_at", "follow_up_at"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    kind: str = Field(index=True)
    summary: str | None = None
    rating: int | None = None
    at: datetime = _time()
    follow_up_at: datetime | None = _time(nullable=True)
    follow_up_done_at: datetime | None = _time(nullable=True)
    responded_at: datetime | None = _time(nullable=True)
    resolved_at: datetime | None = _time(nullable=True)
    resolution: str | None = None
    created_at: datetime = _time()


CREDIT_OR_REFUND = "due_at IS NOT NULL OR refunded_at IS NOT NULL"


class Purchase(SQLModel, table=True):
    __tablename__ = "purchase"
    __table_args__ = (
        # Covers the revenue-per-customer aggregate every report starts from (an index-only scan).
        Index("ix_purchase_customer_revenue", "customer_id", "at", "net_minor", "refunded_at"),
        Index("ix_purchase_at", "at"),
        # Only the sales on credit or refunded (a tenth): the points rules find late payments and
        # refunds per customer in this index alone, not by reading every sale.
        Index(
            "ix_purchase_credit_or_refund",
            "customer_id",
            "due_at",
            "paid_at",
            "refunded_at",
            "net_minor",
            sqlite_where=text(CREDIT_OR_REFUND),
            postgresql_where=text(CREDIT_OR_REFUND),
        ),
        CheckConstraint("gross_minor >= 0", name="gross_not_negative"),  # 0: a free order
        CheckConstraint("net_minor >= 0", name="net_not_negative"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    ref: str | None = Field(default=None, unique=True)
    gross_minor: int = _money()
    coupon_discount_minor: int = _money()
    points_used: int = 0
    points_discount_minor: int = _money()
    net_minor: int = _money()
    coupon_id: int | None = Field(default=None, foreign_key="coupon.id", index=True)
    at: datetime = _time()
    due_at: datetime | None = _time(nullable=True)
    paid_at: datetime | None = _time(nullable=True)
    refunded_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()


class Coupon(SQLModel, table=True):
    __tablename__ = "coupon"
    __table_args__ = (
        CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses"),
        CheckConstraint("(percent_bp IS NULL) <> (amount_minor IS NULL)", name="one_kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    percent_bp: int | None = None  # basis points: 10% = 1000
    amount_minor: int | None = _money(None)
    min_spend_minor: int = _money()
    expires_at: datetime | None = _time(nullable=True)
    max_uses: int = 1
    uses: int = 0
    campaign: str | None = Field(default=None, index=True)
    voided_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()
    referral_id: int | None = Field(default=None, foreign_key="referral.id", index=True)  # a referral reward


class PointsEntry(SQLModel, table=True):
    """The append-only points ledger: the balance is the sum of ``delta``."""

    __tablename__ = "points_entry"
    __table_args__ = (
        UniqueConstraint("customer_id", "kind", "period"),
        Index("ix_points_entry_customer_id", "customer_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    delta: int
    kind: str
    reason: str | None = None
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id", index=True)
    period: str | None = None  # e.g. "2026-11" for tenure accrual, so cron reruns add nothing
    at: datetime = _time()


class PointsSettled(SQLModel, table=True):
    """When a customer's derived removals were last replayed (``at``), under which settings,
    with the count and sum of the facts dated by then: a sale at the till may then skip the
    replay when no removal has fallen due since and no fact has been added before it
    (services/points.py)."""

    __tablename__ = "points_settled"

    customer_id: int = Field(foreign_key="customer.id", primary_key=True, ondelete="CASCADE")
    at: datetime = _time()
    rules: str  # the settings it ran under (reset on late payment, earning rate, expiry)
    facts: int
    total: int = _money()


class AuditEntry(SQLModel, table=True):
    """One write transaction: when, who, which command, what changed (crmcli/audit.py)."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(index=True)
    os_user: str
    command: str = Field(index=True)
    details: str  # JSON: the records changed (personal values masked) and notes such as import counts


class AuditCustomer(SQLModel, table=True):
    """The customers an audit entry touched, for ``audit list --customer``."""

    __tablename__ = "audit_customer"
    __table_args__ = (Index("ix_audit_customer_customer_id", "customer_id"),)

    audit_id: int = Field(foreign_key="audit_entry.id", primary_key=True)
    customer_id: int = Field(primary_key=True)  # no foreign key: merged and erased customers keep their history


class Referral(SQLModel, table=True):
    __tablename__ = "referral"
    __table_args__ = (
        CheckConstraint("referrer_id <> referred_id", name="not_self"),
        CheckConstraint("status IN ('pending','verified','rejected','review')", name="status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    referrer_id: int = Field(foreign_key="customer.id", index=True)
    referred_id: int = Field(foreign_key="customer.id", unique=True)
    status: str = Field(default="pending", index=True)
    reason: str | None = None
    created_at: datetime = _time()
    decided_at: datetime | None = _time(nullable=True)
    # The sale that verified it: refunding that sale puts the referral back to pending. No
    # foreign key: purchase -> coupon -> referral -> purchase would be a cycle of them.
    purchase_id: int | None = Field(default=None, index=True)
    # The fraud signals found (space-separated names, see crmcli/services/signals.py), and when
    # both sides were rewarded (None while the qualifying purchase is held, see referrals.hold_days).
    signals: str | None = None
    rewarded_at: datetime | None = _time(nullable=True)


class Campaign(SQLModel, table=True):
    """A campaign's budget: the uses and the discount all its coupons may take together.

    ``uses`` and ``spent_minor`` are counted in the same transaction as each coupon use, by a
    conditional UPDATE, so two processes can never both take the last of a budget.
    """

    __tablename__ = "campaign"
    __table_args__ = (
        CheckConstraint("budget_uses IS NULL OR uses <= budget_uses", name="uses_within_budget"),
        CheckConstraint("budget_minor IS NULL OR spent_minor <= budget_minor", name="spent_within_budget"),
    )

    name: str = Field(primary_key=True)
    budget_uses: int | None = None
    budget_minor: int | None = _money(None)
    uses: int = 0
    spent_minor: int = _money()


class AutoReward(SQLModel, table=True):
    """A reward the daily job gave (a birthday, an apology for a complaint past its deadline):
    the unique (rule, customer, key) makes each one given once, however often the job runs."""

    __tablename__ = "auto_reward"
    __table_args__ = (UniqueConstraint("rule", "customer_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    rule: str  # "birthday" or "apology"
    # No foreign key: merged and erased customers keep what they were given.
    customer_id: int
    key: str  # the birthday's year, or the complaint's interaction id
    coupon_id: int | None = Field(default=None, foreign_key="coupon.id")
    points: int | None = None
    at: datetime = _time()
