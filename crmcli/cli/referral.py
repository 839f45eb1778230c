"""crmcli referral ...: word of mouth, recorded, verified and rewarded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import CustomerArg, FormatOpt, LimitOpt, QuietOpt, ReferralStatus, id_argument, listing
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Referrals: who brought whom; verify and reward both sides.\n\nExample: crmcli referral list --status pending"
    ),
    no_args_is_help=True,
)
COLUMNS = [
    Column("id", numeric=True),
    Column("referrer_id", "referrer id", numeric=True, drop=3),
    Column("referrer"),
    Column("referred_id", "referred id", numeric=True, drop=3),
    Column("referred"),
    Column("status"),
    Column("created_at", "recorded"),
    Column("decided_at", "decided", drop=1),
    Column("reason", drop=2),
    Column("signals", drop=3),
]
IdArg = Annotated[int, id_argument("Referral id (see 'crmcli referral list').")]


@app.command("add")
def add(
    ctx: typer.Context,
    referrer: Annotated[str, typer.Argument(help="Who brought them: id, email, ref or referral code.")],
    referred: Annotated[str, typer.Argument(help="The new customer: id, email or ref.")],
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Record that REFERRER brought REFERRED (pending until verified).

    Example: crmcli referral add HLPYV7CA bob@example.com
    """
    from crmcli.services.referrals import list_referrals, record_referral

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        referral = record_referral(
            session=session,
            referrer=rt.customer(session, referrer),
            referred=rt.customer(session, referred),
        )
        rows = [r for r in list_referrals(session=session) if r["id"] == referral.id]
    out = rt.output(fmt)
    if quiet:
        out.new_id(referral.id)
    else:
        out.record(rows[0], title=f"Referral {referral.id}")


@app.command("list")
@listing()
def list_(
    ctx: typer.Context,
    status: Annotated[
        ReferralStatus | None, typer.Option(help="Only referrals in this state.", case_sensitive=False)
    ] = None,
    referrer: Annotated[str | None, typer.Option(help="Only referrals by this customer.")] = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List referrals, with the fraud signals each raises ('review': held until a person decides).

    Example: crmcli referral list --status review
    """
    from crmcli.services.referrals import list_referrals

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, referrer) if referrer else None
        rows = list_referrals(session=session, status=status, referrer=found, limit=limit)
    rt.output(fmt).rows(rows, COLUMNS, empty="No referrals match.")


@app.command("verify")
def verify(ctx: typer.Context, referral_id: IdArg, fmt: FormatOpt = Format.table) -> None:
    """Verify a pending referral, or one held for review, by hand and reward both customers (once).

    Example: crmcli referral verify 12
    """
    from crmcli.services.referrals import verify_referral

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        result = verify_referral(session=session, referral_id=referral_id, config=rt.config)
    rt.output(fmt).record(result, title=f"Referral {referral_id} verified")


@app.command("reject")
def reject(
    ctx: typer.Context,
    referral_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why it is not a real referral.")],
) -> None:
    """Reject a pending referral, or one held for review; nobody is rewarded.

    Example: crmcli referral reject 12 --reason "same household"
    """
    from crmcli.services.referrals import reject_referral

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        reject_referral(session=session, referral_id=referral_id, reason=reason)
    rt.output().message(f"Referral {referral_id} rejected.")


@app.command("tree")
def tree(ctx: typer.Context, customer: CustomerArg, fmt: FormatOpt = Format.table) -> None:
    """Show who a customer brought, and whom those brought, with each branch's size and revenue.

    Example: crmcli referral tree ann@example.com
    """
    from crmcli.services.referrals import referral_tree

    rt = runtime(ctx)
    with rt.session() as session:
        root = referral_tree(session=session, customer=rt.customer(session, customer), config=rt.config)
    rt.output(fmt).tree(root, children="referred", label=_label)


def _label(node: Mapping[str, Any]) -> str:
    status = f" [{node['status']}]" if node.get("status") else ""
    return (
        f"{node['name']} (#{node['id']}){status}: revenue {node['revenue']}; "
        f"brought {node['branch_customers']} customer(s) worth {node['branch_revenue']}"
    )
