"""crmcli purchase ...: sales, payments and refunds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import (
    CustomerArg,
    CustomerOpt,
    DecimalCommaOpt,
    DelimiterOpt,
    DryRunOpt,
    DuplicateMode,
    EncodingOpt,
    ExportFormat,
    ExportFormatOpt,
    ForceOpt,
    FormatOpt,
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
    whole,
)
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Purchases: record sales with coupons and points, payments, refunds.\n\n"
        "Example: crmcli purchase add ann@example.com 59.90 --coupon 7KQ2M-XH4PA"
    ),
    no_args_is_help=True,
)

LIST_COLUMNS = [
    Column("id", numeric=True),
    Column("at"),
    Column("customer_id", "cust", numeric=True, drop=4),
    Column("customer"),
    Column("amount", numeric=True, drop=2),
    Column("coupon_discount", "coupon", numeric=True, drop=3),
    Column("points_discount", "points", numeric=True, drop=3),
    Column("net", numeric=True),
    Column("due_at", "due", drop=1),
    Column("paid_at", "paid"),
    Column("late", drop=1),
    Column("refunded_at", "refunded", drop=2),
    Column("ref", drop=5),
]
IdArg = Annotated[int, id_argument("Purchase id (see 'crmcli purchase list').")]


@app.command("add")
def add(
    ctx: typer.Context,
    customer: CustomerArg,
    amount: Annotated[str, typer.Argument(help="Amount before discounts, e.g. 19.90, 1,234.50 or 0 (a free order).")],
    at: Annotated[str | None, typer.Option(help=f"When: {WhenHelp}. Default now.")] = None,
    coupon: Annotated[str | None, typer.Option(help="Coupon code to apply.")] = None,
    points: Annotated[int | None, typer.Option(help="Points to spend as a discount.", parser=whole())] = None,
    due: Annotated[
        str | None, typer.Option(help=f"Payment due date ({WhenHelp}); unpaid until 'purchase pay'.")
    ] = None,
    paid_at: Annotated[
        str | None, typer.Option("--paid", help=f"When it was paid ({WhenHelp}). Default: at the sale.")
    ] = None,
    unpaid: Annotated[bool, typer.Option("--unpaid", help="Not paid yet.")] = False,
    ref: Annotated[str | None, typer.Option("--ref", help="External id (till receipt number).")] = None,
    decimal_comma: DecimalCommaOpt = False,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Record a purchase: coupon and points discounts, points earned, stage advanced.

    Example: crmcli purchase add ann@example.com 59.90 --coupon 7KQ2M-XH4PA --points 200
    """
    from crmcli.services.purchases import PurchaseInput, add_purchase, purchase_row

    rt = runtime(ctx)
    rt.use_decimal_comma(decimal_comma)
    data = PurchaseInput(
        amount_minor=rt.amount(amount),
        at=rt.when(at, happened="--at"),
        coupon=coupon,
        points=points,
        due_at=rt.when(due, end_of_day=True),
        paid_at=rt.when(paid_at, happened="--paid"),
        unpaid=unpaid,
        ref=ref,
    )
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        purchase, effects = add_purchase(session=session, customer=found, data=data, config=rt.config)
        row = {**purchase_row(purchase, rt.config, found.name), **effects, "stage": found.stage}
    out = rt.output(fmt)
    if quiet:
        out.new_id(purchase.id)
    else:
        out.record(row, title=f"Purchase {purchase.id}")


@app.command("pay")
def pay(
    ctx: typer.Context,
    purchase_id: IdArg,
    at: Annotated[str | None, typer.Option(help=f"When it was paid: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Record the payment of a purchase. Paying after the due date is late: with
    points.reset_on_late_payment the customer's points balance goes to zero.

    Example: crmcli purchase pay 42 --at 2026-03-01
    """
    from crmcli.services.identify import customer_name
    from crmcli.services.purchases import pay_purchase, purchase_row

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        purchase, effects = pay_purchase(
            session=session, purchase_id=purchase_id, config=rt.config, at=rt.when(at, happened="--at")
        )
        row = {**purchase_row(purchase, rt.config, customer_name(session, purchase.customer_id)), **effects}
    rt.output(fmt).record(row, title=f"Purchase {purchase_id}")


@app.command("refund")
def refund(
    ctx: typer.Context,
    purchase_id: IdArg,
    at: Annotated[str | None, typer.Option(help=f"When it was refunded: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Refund a purchase: it leaves revenue from then on, and the points it earned are reversed.

    Example: crmcli purchase refund 42 --at 2026-03-05
    """
    from crmcli.services.identify import customer_name
    from crmcli.services.purchases import purchase_row, refund_purchase

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        purchase, effects = refund_purchase(
            session=session, purchase_id=purchase_id, config=rt.config, at=rt.when(at, happened="--at")
        )
        row = {**purchase_row(purchase, rt.config, customer_name(session, purchase.customer_id)), **effects}
    rt.output(fmt).record(row, title=f"Purchase {purchase_id} refunded")


@app.command("list")
@listing(default_sort="-at")
def list_(
    ctx: typer.Context,
    customer: CustomerOpt = None,
    since: Annotated[str | None, typer.Option(help=f"From: {WhenHelp}.")] = None,
    until: Annotated[str | None, typer.Option(help=f"Up to the end of: {WhenHelp}.")] = None,
    unpaid: Annotated[bool, typer.Option("--unpaid", help="Only unpaid, unrefunded purchases.")] = False,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List purchases, newest first.

    Example: crmcli purchase list --unpaid --sort -net --limit 20
    """
    from crmcli.services.purchases import list_purchases

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, customer) if customer else None
        rows = list_purchases(
            session=session,
            config=rt.config,
            customer=found,
            since=rt.when(since),
            until=rt.when(until, end_of_day=True),
            unpaid=unpaid,
            limit=limit,
        )
    rt.output(fmt).rows(rows, LIST_COLUMNS, empty="No purchases match.")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or .xlsx file with a header row; - for standard input.")],
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    sheet: SheetOpt = None,
    mapping: MapOpt = None,
    decimal_comma: DecimalCommaOpt = False,
    dry_run: DryRunOpt = False,
    skip_invalid: SkipInvalidOpt = None,
    force: ForceOpt = False,
    on_duplicate: Annotated[
        DuplicateMode, typer.Option(help="What to do with a row whose ref exists.", case_sensitive=False)
    ] = DuplicateMode("error"),
    fmt: FormatOpt = Format.table,
) -> None:
    """Import purchases (a till's history) from CSV or Excel: all or nothing unless --skip-invalid.

    Columns: customer (id, email or ref) and amount required; at, due, paid_at, coupon, ref.

    Example: crmcli purchase import till-2025.csv --map "Receipt=ref" --map "Total=amount"
    """
    from crmcli.io.purchases import import_purchases

    rt = runtime(ctx)
    rt.use_decimal_comma(decimal_comma)
    rt.import_file(
        import_purchases,
        file,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        mapping=mapping,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        force=force,
        fmt=fmt,
        on_duplicate=on_duplicate,
    )


@app.command("export")
def export(
    ctx: typer.Context,
    out_file: OutOpt = None,
    fmt: ExportFormatOpt = ExportFormat("csv"),
    no_bom: NoBomOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export purchases as CSV or JSON, in the columns 'purchase import' reads.

    Example: crmcli purchase export --out purchases.csv
    """
    from crmcli.io.purchases import export_purchases

    runtime(ctx).export_file(export_purchases, "purchases", out_file, fmt=fmt, no_bom=no_bom, force=force)
