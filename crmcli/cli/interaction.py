"""crmcli interaction ... and crmcli followup ...: every contact, complaints, follow-ups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import (
    CustomerArg,
    CustomerOpt,
    DelimiterOpt,
    DryRunOpt,
    EncodingOpt,
    ExportFormat,
    ExportFormatOpt,
    ForceOpt,
    FormatOpt,
    InteractionKind,
    LimitOpt,
    MapOpt,
    NoBomOpt,
    OutOpt,
    QuietOpt,
    SheetOpt,
    SkipInvalidOpt,
    WhenHelp,
    id_argument,
    listing,
)
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Interactions: log calls, visits, complaints and surveys; answer complaints.\n\n"
        'Example: crmcli interaction log ann@example.com --kind call --summary "asked about sizes"'
    ),
    no_args_is_help=True,
)
followup_app = typer.Typer(
    help=(
        "Follow-ups: who needs a call today.\n\n"
        "Example: crmcli followup due --format csv --fields customer,reason,due_at"
    ),
    no_args_is_help=True,
)

LIST_COLUMNS = [
    Column("id", numeric=True),
    Column("at", time=True),
    Column("customer_id", "cust", numeric=True, drop=4),
    Column("customer"),
    Column("kind"),
    Column("rating", numeric=True, drop=2),
    Column("summary"),
    Column("follow_up_at", "follow-up", drop=1),
    Column("responded_at", "responded", drop=3),
    Column("resolved_at", "resolved", drop=3),
]
DUE_COLUMNS = [
    Column("customer_id", "id", numeric=True),
    Column("customer"),
    Column("reason"),
    Column("due_at", "due"),
    Column("last_contact", "last contact", drop=1),
    Column("detail", drop=2),
]
IdArg = Annotated[int, id_argument("Interaction id (see 'crmcli interaction list').")]


@app.command("log")
def log(
    ctx: typer.Context,
    customer: CustomerArg,
    kind: Annotated[InteractionKind, typer.Option(help="What kind of contact.", case_sensitive=False)],
    summary: Annotated[str | None, typer.Option(help="What was said or done.")] = None,
    rating: Annotated[int | None, typer.Option(help="Satisfaction 1-5 (5 = completely satisfied).")] = None,
    at: Annotated[str | None, typer.Option(help=f"When it happened: {WhenHelp}. Default now.")] = None,
    follow_up: Annotated[str | None, typer.Option(help=f"When to follow up: {WhenHelp}.")] = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Log an interaction with a customer.

    Example: crmcli interaction log ann@example.com --kind call --summary "asked about sizes" --follow-up +3d
    """
    from crmcli.services.interactions import interaction_row, log_interaction

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        interaction = log_interaction(
            session=session,
            customer=found,
            kind=kind,
            summary=summary,
            rating=rating,
            at=rt.when(at, happened="--at"),
            follow_up=rt.when(follow_up),
        )
        row = interaction_row(interaction, found.name)
    out = rt.output(fmt)
    if quiet:
        out.new_id(interaction.id)
    else:
        out.record(row, title=f"Interaction {interaction.id}")


@app.command("list")
@listing(default_sort="-at")
def list_(
    ctx: typer.Context,
    customer: CustomerOpt = None,
    kind: Annotated[InteractionKind | None, typer.Option(help="Only this kind.", case_sensitive=False)] = None,
    since: Annotated[str | None, typer.Option(help=f"Only from this time: {WhenHelp}.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Only unresolved complaints and pending follow-ups.")] = False,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List interactions, newest first.

    Example: crmcli interaction list --kind complaint --open
    """
    from crmcli.services.interactions import list_interactions

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, customer) if customer else None
        rows = list_interactions(
            session=session, customer=found, kind=kind, since=rt.when(since), open_only=open_, limit=limit
        )
    rt.output(fmt).rows(rows, LIST_COLUMNS, empty="No interactions match.")


@app.command("respond")
def respond(
    ctx: typer.Context,
    interaction_id: IdArg,
    at: Annotated[str | None, typer.Option(help=f"When: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Record the first response to a complaint (the SLA clock's first deadline).

    Example: crmcli interaction respond 42
    """
    from crmcli.services.identify import customer_name
    from crmcli.services.interactions import interaction_row, respond

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        complaint = respond(session=session, interaction_id=interaction_id, at=rt.when(at, happened="--at"))
        row = interaction_row(complaint, customer_name(session, complaint.customer_id))
    rt.output(fmt).record(row, title=f"Complaint {interaction_id}")


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    interaction_id: IdArg,
    summary: Annotated[str | None, typer.Option(help="How it was resolved.")] = None,
    at: Annotated[str | None, typer.Option(help=f"When: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Mark a complaint resolved.

    Example: crmcli interaction resolve 42 --summary "replaced the item"
    """
    from crmcli.services.identify import customer_name
    from crmcli.services.interactions import interaction_row, resolve

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        complaint = resolve(
            session=session, interaction_id=interaction_id, summary=summary, at=rt.when(at, happened="--at")
        )
        row = interaction_row(complaint, customer_name(session, complaint.customer_id))
    rt.output(fmt).record(row, title=f"Complaint {interaction_id}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or .xlsx file with a header row; - for standard input.")],
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    sheet: SheetOpt = None,
    mapping: MapOpt = None,
    dry_run: DryRunOpt = False,
    skip_invalid: SkipInvalidOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Import a contact history from CSV or Excel: all or nothing unless --skip-invalid.

    Columns: customer (id, email, ref, or id:/ref:/email:/phone:) and kind required; at, summary,
    rating, follow_up_at, follow_up_done_at, responded_at, resolved_at, resolution, apology_at,
    apology_coupon, apology_points (what the daily job gave for a late complaint). A contact
    closes the customer's earlier open follow-ups, as 'interaction log' does.

    Example: crmcli interaction import contacts.csv --map "Date=at"
    """
    from crmcli.io.interactions import import_interactions

    rt = runtime(ctx)
    rt.import_file(
        import_interactions,
        file,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        mapping=mapping,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        force=force,
        fmt=fmt,
    )


@app.command("export")
def export(
    ctx: typer.Context,
    out_file: OutOpt = None,
    fmt: ExportFormatOpt = ExportFormat("csv"),
    no_bom: NoBomOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export interactions as CSV or JSON, in the columns 'interaction import' reads.

    Example: crmcli interaction export --out contacts.csv
    """
    from crmcli.io.interactions import export_interactions

    runtime(ctx).export_file(export_interactions, "interactions", out_file, fmt=fmt, no_bom=no_bom, force=force)


@followup_app.command("due")
@listing()
def due(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check", help="Exit 3 when anything is due (for cron).")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help=f"Pretend it is this time: {WhenHelp}.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Follow-ups whose date has come, and customers quiet for longer than their stage's cadence.

    Example: crmcli followup due --check || mail -s "customers to call" me@example.com
    """
    from crmcli.services.interactions import followups_due

    rt = runtime(ctx)
    with rt.session() as session:
        rows = followups_due(session=session, config=rt.config, now=rt.when(as_of, end_of_day=True))
    rt.output(fmt).rows(rows, DUE_COLUMNS, empty="Nothing due. Everyone has been looked after.")
    if check and rows:
        raise typer.Exit(3)
