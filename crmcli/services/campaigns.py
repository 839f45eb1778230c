"""Campaign budgets: a cap on the uses and on the discount of all the coupons of a campaign.

A budget is counted exactly as a coupon's own ``max_uses``: each use charges the campaign
in the same transaction, by one conditional UPDATE that only matches while the budget
still covers it, so two processes can never both take its last use or its last amount.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlmodel import Session

from crmcli.config import Config
from crmcli.errors import Conflict, Invalid
from crmcli.models import Campaign, table_of
from crmcli.values import money


def ensure_campaign(session: Session, name: str) -> None:
    """The campaign's row, so its coupons' uses are counted from the first (no budget yet)."""
    t = table_of(Campaign)
    if session.execute(select(t.c.name).where(t.c.name == name)).first() is None:
        from sqlalchemy.exc import IntegrityError

        try:
            with session.begin_nested():  # another transaction may create it at the same moment
                session.execute(insert(t).values(name=name, uses=0, spent_minor=0))
        except IntegrityError:
            pass


def set_budget(
    session: Session, name: str, *, budget_uses: int | None = None, budget_minor: int | None = None
) -> None:
    """Set (or change) a campaign's budget; a budget below what is already used is refused."""
    if budget_uses is not None and budget_uses < 1:
        raise Invalid("a campaign budget must allow at least 1 use", fields=("budget_uses",))
    if budget_minor is not None and budget_minor <= 0:
        raise Invalid("a campaign's amount budget must be more than 0", fields=("budget_amount",))
    ensure_campaign(session, name)
    t = table_of(Campaign)
    uses, spent = session.execute(
        select(t.c.uses, t.c.spent_minor).where(t.c.name == name).with_for_update()
    ).one()
    if budget_uses is not None and budget_uses < uses:
        raise Invalid(
            f"campaign {name} has already used {uses} coupons, more than a budget of {budget_uses}",
            fields=("budget_uses",),
        )
    if budget_minor is not None and budget_minor < spent:
        raise Invalid(f"campaign {name} has already given more discount than that budget", fields=("budget_amount",))
    values: dict[str, Any] = {}
    if budget_uses is not None:
        values["budget_uses"] = budget_uses
    if budget_minor is not None:
        values["budget_minor"] = budget_minor
    if values:
        session.execute(update(t).where(t.c.name == name).values(**values))


def needs_amount(session: Session, name: str) -> bool:
    """True when the campaign has an amount budget (a use must know its discount)."""
    t = table_of(Campaign)
    return session.execute(select(t.c.budget_minor).where(t.c.name == name)).scalar() is not None


def charge_campaign(session: Session, name: str, discount_minor: int, config: Config) -> None:
    """Count one use and its discount against the campaign's budget, or refuse it with why."""
    t = table_of(Campaign)
    charged = session.execute(
        update(t)
        .where(
            t.c.name == name,
            or_(t.c.budget_uses.is_(None), t.c.uses < t.c.budget_uses),
            or_(t.c.budget_minor.is_(None), t.c.spent_minor + discount_minor <= t.c.budget_minor),
        )
        .values(uses=t.c.uses + 1, spent_minor=t.c.spent_minor + discount_minor)
    )
    if int(getattr(charged, "rowcount", 0)) == 1:
        return
    row = session.execute(select(t).where(t.c.name == name)).first()
    if row is None:  # coupons issued before campaigns were counted: nothing to cap
        return
    digits = config.currency.minor_digits
    if row.budget_uses is not None and row.uses >= row.budget_uses:
        raise Conflict(f"campaign {name} has used its budget of {row.budget_uses} coupon uses")
    raise Conflict(
        f"campaign {name} has {money(row.budget_minor - row.spent_minor, digits)} of its "
        f"{money(row.budget_minor, digits)} budget left, less than this discount of {money(discount_minor, digits)}"
    )


def budgets(session: Session) -> dict[str, tuple[int | None, int | None]]:
    """Each campaign's caps: (uses, discount in minor units); None is no cap."""
    t = table_of(Campaign)
    return {row.name: (row.budget_uses, row.budget_minor) for row in session.execute(select(t))}


def spending(session: Session) -> dict[str, tuple[int, int]]:
    """What each campaign's coupons have taken so far, as counted at each use: (uses, discount)."""
    t = table_of(Campaign)
    return {row.name: (row.uses, row.spent_minor) for row in session.execute(select(t))}
