"""crmcli coupon ...: promotions that bring customers back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import (
    SEGMENT_HELP,
    CouponStatus,
    CustomerOpt,
    DecimalCommaOpt,
    DelimiterOpt,
    DryRunOpt,
    EncodingOpt,
    ExportFormat,
    ExportFormatOpt,
    ForceOpt,
    FormatOpt,
    KeepMode,
    LimitOpt,
    MapOpt,
    NoBomOpt,
    OutOpt,
    SheetOpt,
    SkipInvalidOpt,
    Stage,
    WhenHelp,
    complete_customer,
    complete_segment,
    listing,
    whole,
)
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Coupons: issue to a customer, a segment, a stage or everyone; redeem; void.\n\n"
        'Example: crmcli coupon issue --segment "At Risk" --percent 15 --expires +30d'
    ),
    no_args_is_help=True,
)

COLUMNS = [
    Column("code", whole=True),
    Column("customer_id", "cust", numeric=True, drop=4),
    Column("customer"),
    Column("percent", "%", numeric=True),
    Column("amount", numeric=True),
    Column("min_spend", "min spend", numeric=True, drop=2),
    Column("expires_at", "expires"),
    Column("uses", numeric=True, drop=1),
    Column("max_uses", "max", numeric=True, drop=1),
    Column("campaign", drop=3),
    Column("status"),
    Column("issued_at", "issued", drop=3),
]
CodeArg = Annotated[str, typer.Argument(help="Coupon code (case does not matter).")]


@app.command("issue")
def issue(
    ctx: typer.Context,
    customer: Annotated[
        str | None, typer.Option(help="One customer (id, email or ref).", autocompletion=complete_customer)
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(help=f"Every customer in this segment: {SEGMENT_HELP}.", autocompletion=complete_segment),
    ] = None,
    stage: Annotated[Stage | None, typer.Option(help="Every customer in this stage.", case_sensitive=False)] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every customer.")] = False,
    percent: Annotated[str | None, typer.Option(help="Percent off, e.g. 15.")] = None,
    amount: Annotated[str | None, typer.Option(help="Amount off, e.g. 5.00.")] = None,
    min_spend: Annotated[str, typer.Option(help="Minimum purchase amount.")] = "0",
    expires: Annotated[str | None, typer.Option(help=f"Last valid day ({WhenHelp}); valid to its end.")] = None,
    max_uses: Annotated[int, typer.Option(help="Uses allowed per coupon.", parser=whole())] = 1,
    code: Annotated[str | None, typer.Option(help="Your own code (one customer only); default random.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign name, for 'coupon stats' and budgets.")] = None,
    budget_uses: Annotated[
        int | None, typer.Option(help="Cap the uses of all the campaign's coupons together.", parser=whole())
    ] = None,
    budget_amount: Annotated[
        str | None, typer.Option(help="Cap the total discount of all the campaign's coupons, e.g. 500.")
    ] = None,
    fmt: FormatOpt = Format.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new codes, one a line.")] = False,
) -> None:
    """Issue coupons, one per customer, and print their codes. A campaign budget caps what all
    its coupons together may cost; a use that would pass it is refused.

    Example: crmcli coupon issue --segment "At Risk" --percent 15 --expires +30d --campaign winback --budget-amount 500
    """
    from crmcli.services.coupons import CouponTerms, coupon_row, issue_coupons, target_customers
    from crmcli.values import parse_percent

    rt = runtime(ctx)
    terms = CouponTerms(
        percent_bp=(
            parse_percent(percent, what="--percent", decimal_comma=rt.config.decimal_comma)
            if percent is not None
            else None
        ),
        amount_minor=rt.amount(amount, what="--amount") if amount is not None else None,
        min_spend_minor=rt.amount(min_spend, what="--min-spend"),
        expires_at=rt.when(expires, end_of_day=True),
        max_uses=max_uses,
        campaign=campaign,
    ).check()
    budget_minor = rt.amount(budget_amount, what="--budget-amount") if budget_amount is not None else None
    if (budget_uses is not None or budget_minor is not None) and campaign is None:
        raise typer.BadParameter("a budget belongs to a campaign: give --campaign too", param_hint="--budget-uses")
    with rt.session(write=True) as session:
        if campaign is not None and (budget_uses is not None or budget_minor is not None):
            from crmcli.services.campaigns import set_budget

            set_budget(session, campaign, budget_uses=budget_uses, budget_minor=budget_minor)
        target = rt.customer(session, customer) if customer else None
        ids = target_customers(
            session=session, customer=target, stage=stage, segment=segment, everyone=everyone, config=rt.config
        )
        coupons = issue_coupons(session=session, customer_ids=ids, terms=terms, code=code)
        rows = [coupon_row(c, rt.config) for c in coupons]
    out = rt.output(fmt)
    if quiet:
        for row in rows:
            out.new_id(row["code"])
        return
    out.rows(rows, COLUMNS)
    out.message(f"Issued {len(rows)} coupon(s).")


@app.command("redeem")
def redeem(
    ctx: typer.Context,
    code: CodeArg,
    customer: Annotated[str, typer.Option(help="The customer using it (id, email or ref).")],
    amount: Annotated[
        str | None, typer.Option(help="Order amount, to check the minimum and show the discount.")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Use a coupon for an order rung up elsewhere (to record the sale too, use 'purchase add --coupon').

    Example: crmcli coupon redeem 7KQ2M-XH4PA --customer ann@example.com --amount 40
    """
    from crmcli.services.coupons import coupon_row, use_coupon
    from crmcli.values import money, utcnow

    rt = runtime(ctx)
    digits = rt.config.currency.minor_digits
    amount_minor = rt.amount(amount) if amount is not None else None
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        assert found.id is not None
        coupon, discount = use_coupon(
            session, code=code, customer_id=found.id, amount_minor=amount_minor, at=utcnow(), config=rt.config
        )
        row = coupon_row(coupon, rt.config, found.name)
    if amount_minor is not None:
        row["discount"] = money(discount, digits)
        row["to_pay"] = money(amount_minor - discount, digits)
    rt.output(fmt).record(row, title=f"Coupon {coupon.code} redeemed")


@app.command("list")
@listing(default_sort="-issued_at")
def list_(
    ctx: typer.Context,
    status: Annotated[
        CouponStatus | None, typer.Option(help="Only coupons in this state.", case_sensitive=False)
    ] = None,
    customer: CustomerOpt = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List coupons, newest first.

    Example: crmcli coupon list --status active --campaign winback
    """
    from crmcli.services.coupons import list_coupons

    rt = runtime(ctx)
    with rt.session() as session:
        found = rt.customer(session, customer) if customer else None
        rows = list_coupons(
            session=session, config=rt.config, status=status, customer=found, campaign=campaign, limit=limit
        )
    rt.output(fmt).rows(rows, COLUMNS, empty="No coupons match.")


@app.command("show")
def show(ctx: typer.Context, code: CodeArg, fmt: FormatOpt = Format.table) -> None:
    """Show a coupon, its status and the purchases that used it.

    Example: crmcli coupon show 7KQ2M-XH4PA
    """
    from crmcli.services.coupons import coupon_detail

    rt = runtime(ctx)
    with rt.session() as session:
        row = coupon_detail(session=session, code=code, config=rt.config)
    rt.output(fmt).record(row, title=f"Coupon {row['code']}")


@app.command("void")
def void(ctx: typer.Context, code: CodeArg) -> None:
    """Void a coupon so it can no longer be used.

    Example: crmcli coupon void 7KQ2M-XH4PA
    """
    from crmcli.services.coupons import void_coupon

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        coupon = void_coupon(session=session, code=code)
    rt.output().message(f"Coupon {coupon.code} voided.")


@app.command("stats")
@listing()
def stats(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help=f"As at the end of: {WhenHelp}. Default now.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per campaign: coupons issued, used, redemption rate, discount given, revenue they brought,
    and the budget with what is spent and left.

    Example: crmcli coupon stats --campaign winback --as-of 2026-06-30
    """
    from crmcli.services.coupons import coupon_stats

    rt = runtime(ctx)
    with rt.session() as session:
        when = rt.when(as_of, end_of_day=True)  # None: now, as recorded
        rows = coupon_stats(session=session, config=rt.config, campaign=campaign, as_of=when)
    columns = [
        Column("campaign"),
        Column("issued", numeric=True),
        Column("used", numeric=True),
        Column("uses", numeric=True),
        Column("redemption_rate", "rate", numeric=True),
        Column("discount", numeric=True),
        Column("revenue", numeric=True),
        Column("budget_uses", "budget uses", numeric=True),
        Column("left_uses", "uses left", numeric=True),
        Column("budget_amount", "budget", numeric=True),
        Column("spent_amount", "spent", numeric=True),
        Column("left_amount", "left", numeric=True),
    ]
    rt.output(fmt).rows(rows, columns, empty="No coupons yet.")


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
        KeepMode,
        typer.Option(help="What to do with a code the database has: skip or error.", case_sensitive=False),
    ] = KeepMode("error"),
    fmt: FormatOpt = Format.table,
) -> None:
    """Import coupons (used or not, void or not) from CSV or Excel: all or nothing unless --skip-invalid.

    Columns: code required; customer, percent or amount, min_spend, expires_at, max_uses,
    uses_without_sale, campaign, issued_at, voided_at, referral (the referred customer of
    the referral a reward coupon rewards). Import it before the purchases that used them.

    Example: crmcli --db new.db coupon import coupons.csv
    """
    from crmcli.io.coupons import import_coupons

    rt = runtime(ctx)
    rt.use_decimal_comma(decimal_comma)
    rt.import_file(
        import_coupons,
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
    """Export every coupon, used or not, as CSV or JSON, in the columns 'coupon import' reads.

    Example: crmcli coupon export --out coupons.csv
    """
    from crmcli.io.coupons import export_coupons

    runtime(ctx).export_file(export_coupons, "coupons", out_file, fmt=fmt, no_bom=no_bom, force=force)
