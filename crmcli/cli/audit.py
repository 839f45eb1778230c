"""crmcli audit ...: who changed what, and when."""

from __future__ import annotations

from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import FormatOpt, LimitOpt, WhenHelp, complete_customer, listing
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "The audit log: every change, when, by whom and which command.\n\n"
        "Example: crmcli audit list --since -7d --fields at,command"
    ),
    no_args_is_help=True,
)
COLUMNS = [
    Column("id", numeric=True),
    Column("at", time=True),
    Column("user", drop=1),
    Column("command"),
    Column("changes"),
]


@app.command("list")
@listing(default_sort="-at")
def list_(
    ctx: typer.Context,
    customer: Annotated[
        str | None, typer.Option(help="Only changes that touched this customer.", autocompletion=complete_customer)
    ] = None,
    since: Annotated[str | None, typer.Option(help=f"Only changes from: {WhenHelp}.")] = None,
    command: Annotated[str | None, typer.Option(help="Only commands containing this text, e.g. 'merge'.")] = None,
    limit: LimitOpt = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """List audit entries, newest first. Personal values are never in the log (shown as ***).

    Example: crmcli audit list --customer ann@example.com --since -30d
    """
    from crmcli.audit import list_entries

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, customer) if customer else None
        rows = list_entries(
            session=session, customer_id=found.id if found else None, since=rt.when(since), command=command, limit=limit
        )
    if not Format(fmt).structured:  # one readable cell; JSON keeps the details
        for row in rows:
            details = row.pop("details")
            records = ", ".join(f"{r['op']} {r['table']} {r['id']}" for r in details.pop("records", [])[:3])
            extra = ", ".join(f"{k} {v}" for k, v in details.items() if k != "changed")
            row["changes"] = "; ".join(
                part for part in (f"{details.get('changed', 0)} changed", records, extra) if part
            )
    rt.output(fmt).rows(rows, COLUMNS, empty="No audit entries match.")
