"""crmcli points ...: the loyalty ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import (
    CustomerArg,
    DelimiterOpt,
    DryRunOpt,
    EncodingOpt,
    ExportFormat,
    ExportFormatOpt,
    ForceOpt,
    FormatOpt,
    LimitOpt,
    MapOpt,
    NoBomOpt,
    OutOpt,
    SheetOpt,
    SkipInvalidOpt,
    WhenHelp,
    whole,
)
from crmcli.render import Format

app = typer.Typer(
    help=(
        "Loyalty points: balance and tier, adjust, redeem, monthly tenure accrual.\n\n"
        "Example: crmcli points show ann@example.com"
    ),
    no_args_is_help=True,
)
Points = Annotated[int, typer.Argument(help="Number of points (whole, positive).", parser=whole())]
Reason = Annotated[str, typer.Option(help="Why (kept in the ledger).")]


def _summary(
    ctx: typer.Context, customer_id: int, fmt: Format, title: str, limit: int | None = 20, as_of: str | None = None
) -> None:
    from crmcli.services.profile import points_summary

    rt = runtime(ctx)
    moment = rt.when(as_of, end_of_day=True)
    # Today's read records a late-payment reset that is due first; a read of the past writes nothing.
    with rt.session(write=moment is None) as session:
        row = points_summary(session=session, config=rt.config, customer_id=customer_id, limit=limit, as_of=moment)
    rt.output(fmt).record(row, title=title)


@app.command("show")
def show(
    ctx: typer.Context,
    customer: CustomerArg,
    limit: LimitOpt = 20,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help=f"Balance, tier and ledger as at the end of: {WhenHelp}.")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show a customer's points balance, tier, the points expiring in the next 30 days, and the
    ledger (newest first).

    Example: crmcli points show ann@example.com --as-of 2026-06-30
    """

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, customer)
    assert found.id is not None
    _summary(ctx, found.id, fmt, f"Points of {found.name}", limit, as_of)


@app.command("add")
def add(
    ctx: typer.Context, customer: CustomerArg, points: Points, reason: Reason, fmt: FormatOpt = Format.table
) -> None:
    """Give a customer points (a goodwill gesture, a correction).

    Example: crmcli points add ann@example.com 50 --reason "sorry for the wait"
    """
    from crmcli.services.points import add_points

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        add_points(session=session, customer=found, points=points, reason=reason, config=rt.config)
    assert found.id is not None
    _summary(ctx, found.id, fmt, f"Points of {found.name}", 5)


@app.command("redeem")
def redeem(
    ctx: typer.Context, customer: CustomerArg, points: Points, reason: Reason, fmt: FormatOpt = Format.table
) -> None:
    """Take points from a customer's balance (never below zero).

    Example: crmcli points redeem ann@example.com 200 --reason "free coffee"
    """
    from crmcli.services.points import redeem_points

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        redeem_points(session=session, customer=found, points=points, reason=reason, config=rt.config)
    assert found.id is not None
    _summary(ctx, found.id, fmt, f"Points of {found.name}", 5)


@app.command("accrue")
def accrue(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option("--as-of", help=f"Count months up to: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Add tenure points for each full month of membership (the tenure part of 'crmcli daily');
    safe to run repeatedly.

    Example: crmcli points accrue --as-of 2026-06-30
    """
    from crmcli.services.points import accrue_tenure

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        result = accrue_tenure(session=session, config=rt.config, as_of=rt.when(as_of, happened="--as-of"))
    rt.output(fmt).record(result, title="Tenure points accrued")


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
    before_sales: Annotated[
        bool,
        typer.Option(
            "--before-sales",
            help="Moving a shop: the sales come next, in the purchase file. An uncovered redemption of "
            "a customer with no sales yet is accepted, and checked by the purchase import of that customer's sales.",
        ),
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Import points given or redeemed by hand and referral rewards: all or nothing unless --skip-invalid.

    Columns: customer, kind (adjust, redeem, referral, birthday or
    apology) and points required (a redeem takes them); at, reason,
    referral (the referred customer, for a referral reward).

    A redemption the customer's points cannot cover at its moment is
    refused. Moving a shop, import it after the customers and coupons,
    before the purchases, with --before-sales.

    Example: crmcli --db new.db points import points.csv --before-sales
    """
    from crmcli.io.points import import_points

    rt = runtime(ctx)
    rt.import_file(
        import_points,
        file,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        mapping=mapping,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        force=force,
        fmt=fmt,
        before_sales=before_sales,
    )


@app.command("export")
def export(
    ctx: typer.Context,
    out_file: OutOpt = None,
    fmt: ExportFormatOpt = ExportFormat("csv"),
    no_bom: NoBomOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export the points given or redeemed by hand and the referral rewards, in the columns
    'points import' reads (the sales' points come back with the purchase export).

    Example: crmcli points export --out points.csv
    """
    from crmcli.io.points import export_points

    runtime(ctx).export_file(export_points, "points entries", out_file, fmt=fmt, no_bom=no_bom, force=force)
