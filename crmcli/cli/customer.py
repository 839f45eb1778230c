"""crmcli customer ...: one lifetime profile per customer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.cli.context import Runtime, is_interactive, runtime
from crmcli.cli.options import (
    CustomerArg,
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
    SegmentOpt,
    SheetOpt,
    SkipInvalidOpt,
    SortOpt,
    Stage,
    WhenHelp,
    listing,
)
from crmcli.errors import Invalid
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Customers: add, find, edit, merge, erase, import and export.\n\n"
        "Example: crmcli customer list --stage customer --sort -created_at --limit 20"
    ),
    no_args_is_help=True,
)

LIST_COLUMNS = [
    Column("id", numeric=True),
    Column("name"),
    Column("email"),
    Column("phone", drop=1),
    Column("company", drop=3),
    Column("city", drop=2),
    Column("stage"),
    Column("tags", drop=4),
]

Name = Annotated[str | None, typer.Option(help="Full name.")]
Email = Annotated[str | None, typer.Option(help="Email address (stored in lower case).")]
Phone = Annotated[str | None, typer.Option(help="Phone; E.164 when a default region is set.")]
Company = Annotated[str | None, typer.Option(help="Company.")]
City = Annotated[str | None, typer.Option(help="City.")]
Source = Annotated[str | None, typer.Option(help="Where the customer came from (web, walk-in...).")]
Ref = Annotated[str | None, typer.Option("--ref", help="External id from another system.")]
Note = Annotated[str | None, typer.Option(help="Free-text note.")]
Birthday = Annotated[str | None, typer.Option(help="Birthday as MM-DD (no year), for the birthday reward.")]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Full name.")],
    email: Email = None,
    phone: Phone = None,
    company: Company = None,
    city: City = None,
    source: Source = None,
    stage: Annotated[Stage, typer.Option(help="Lifecycle stage.", case_sensitive=False)] = Stage("lead"),
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag; repeat for more.")] = None,
    ref: Ref = None,
    referred_by: Annotated[str | None, typer.Option(help="Referrer: customer id, email, ref or referral code.")] = None,
    note: Note = None,
    at: Annotated[str | None, typer.Option("--at", help=f"When the customer joined: {WhenHelp}. Default now.")] = None,
    birthday: Birthday = None,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
) -> None:
    """Add a customer (with --at, one who joined in the past: the stage history starts then).

    Example: crmcli customer add "Ann Lee" --email ann@example.com --tag vip --birthday 03-14 --at 2026-03-01
    """
    from crmcli.services.customers import CustomerInput, add_customer
    from crmcli.services.profile import customer_profile

    rt = runtime(ctx)
    data = CustomerInput(
        name=name,
        email=email,
        phone=phone,
        company=company,
        city=city,
        source=source,
        stage=stage,
        ref=ref,
        note=note,
        birthday=birthday,
        tags=tag or [],
    )
    with rt.session(write=True) as session:
        customer = add_customer(
            session=session,
            data=data,
            config=rt.config,
            referred_by=referred_by,
            at=rt.when(at, happened="--at"),
        )
        profile = customer_profile(session=session, customer=customer, config=rt.config)
    out = rt.output(fmt)
    _warn_about_phone_region(rt, phone)
    if quiet:
        out.new_id(customer.id)
    else:
        out.record(profile, title=f"Customer {customer.id}")


@app.command("list")
@listing()
def list_(
    ctx: typer.Context,
    stage: Annotated[Stage | None, typer.Option(help="Only this stage.", case_sensitive=False)] = None,
    tag: Annotated[str | None, typer.Option(help="Only customers with this tag.")] = None,
    search: Annotated[str | None, typer.Option(help="Text in name, email, phone, company, city or ref.")] = None,
    segment: SegmentOpt = None,
    sort: SortOpt = None,
    limit: LimitOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List customers.

    Example: crmcli customer list --segment "At Risk" --sort -created_at --limit 20
    """
    from dataclasses import replace

    from crmcli.services.customers import SORT_FIELDS, list_customers

    rt = runtime(ctx)
    if sort is not None and sort.removeprefix("-") not in SORT_FIELDS:  # a field the query cannot order by
        rt.shape = replace(rt.shape, sort=sort) if rt.shape else None
        sort, limit = None, None
    with rt.session() as session:
        ids = None
        if segment is not None:
            from crmcli.reports.segments import customers_in_segment

            ids = customers_in_segment(session=session, config=rt.config, segment=segment)
        rows = list_customers(
            session=session, stage=stage, tag=tag, search=search, customer_ids=ids, sort=sort or "id", limit=limit
        )
    rt.output(fmt).rows(rows, LIST_COLUMNS, empty="No customers match.")


@app.command("show")
def show(
    ctx: typer.Context,
    customer: CustomerArg,
    predicted: Annotated[
        bool,
        typer.Option(
            "--predicted", help="Add predicted value, churn risk and next purchase (fits the model over all customers)."
        ),
    ] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help=f"The profile as it stood at the end of: {WhenHelp}.")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show a customer's lifetime profile: details, totals, points, referrals, timeline.

    Example: crmcli customer show ann@example.com --predicted --format json
    """
    from crmcli.services.profile import customer_profile

    rt = runtime(ctx)
    moment = rt.when(as_of, end_of_day=True)
    # Today's read records a late-payment reset that is due first; a read of the past writes nothing.
    with rt.session(write=moment is None) as session:
        found = rt.customer(session, customer)
        profile = customer_profile(session=session, customer=found, config=rt.config, as_of=moment)
        if predicted:
            from crmcli.reports.prediction import customer_prediction

            profile["predicted"] = customer_prediction(session=session, config=rt.config, customer_id=found.id)
    rt.output(fmt).record(profile, title=f"Customer {found.id}")


@app.command("edit")
def edit(
    ctx: typer.Context,
    customer: CustomerArg,
    name: Name = None,
    email: Email = None,
    phone: Phone = None,
    company: Company = None,
    city: City = None,
    source: Source = None,
    stage: Annotated[
        Stage | None, typer.Option(help="New stage (recorded in the history).", case_sensitive=False)
    ] = None,
    ref: Ref = None,
    note: Note = None,
    birthday: Birthday = None,
    add_tag: Annotated[list[str] | None, typer.Option("--add-tag", help="Add a tag; repeatable.")] = None,
    remove_tag: Annotated[list[str] | None, typer.Option("--remove-tag", help="Remove a tag; repeatable.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Change a customer's details. An empty value ("") clears a field.

    Example: crmcli customer edit 12 --phone "+44 20 7946 0018" --add-tag vip
    """
    from crmcli.services.customers import CustomerInput, edit_customer
    from crmcli.services.profile import customer_profile

    rt = runtime(ctx)
    data = CustomerInput(
        name=name,
        email=email,
        phone=phone,
        company=company,
        city=city,
        source=source,
        stage=stage,
        ref=ref,
        note=note,
        birthday=birthday,
    )
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        edit_customer(
            session=session,
            customer=found,
            data=data,
            config=rt.config,
            add_tags=add_tag or [],
            remove_tags=remove_tag or [],
        )
        profile = customer_profile(session=session, customer=found, config=rt.config)
    _warn_about_phone_region(rt, phone)
    rt.output(fmt).record(profile, title=f"Customer {found.id}")


def _warn_about_phone_region(rt: Runtime, phone: str | None) -> None:
    from crmcli.values import PHONE_REGION_HINT, phone_compared_by_digits

    if phone_compared_by_digits(phone, rt.config.default_phone_region):
        rt.output().message(f"Warning: {PHONE_REGION_HINT}")


@app.command("stage")
def stage(
    ctx: typer.Context,
    customer: CustomerArg,
    new_stage: Annotated[Stage, typer.Argument(metavar="STAGE", help="The new stage.", case_sensitive=False)],
) -> None:
    """Move a customer to another lifecycle stage; the change is recorded with its time.

    Example: crmcli customer stage ann@example.com prospect
    """
    from crmcli.services.stages import change_stage

    rt = runtime(ctx)
    with rt.session(write=True) as session:
        found = rt.customer(session, customer)
        previous = found.stage
        changed = change_stage(session=session, customer=found, stage=new_stage)
    out = rt.output()
    out.message(
        f"Customer {found.id}: {previous} -> {found.stage}"
        if changed
        else f"Customer {found.id} is already {found.stage}"
    )


@app.command("duplicates")
@listing()
def duplicates(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """List groups of customers that look like the same person (same name).

    Example: crmcli customer duplicates   then   crmcli customer merge 12 31
    """
    from crmcli.services.merge import find_duplicates

    rt = runtime(ctx)
    with rt.session() as session:
        rows = find_duplicates(session=session)
    rt.output(fmt).rows(rows, empty="No likely duplicates.")


@app.command("merge")
def merge(
    ctx: typer.Context,
    keep: Annotated[str, typer.Argument(help="The customer to keep.")],
    drop: Annotated[str, typer.Argument(help="The customer merged into KEEP, then removed.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm; needed when not on a terminal.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would move; change nothing.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Merge DROP into KEEP: purchases, interactions, coupons, points and referrals move to KEEP.
    Shows both and asks first; it cannot be undone.

    Example: crmcli customer merge 12 31 --dry-run
    """
    from crmcli.services.merge import merge_customers, merge_summary
    from crmcli.values import money

    rt = runtime(ctx)
    if not (yes or dry_run or is_interactive()):
        raise Invalid("a merge cannot be undone: pass --yes to confirm, or --dry-run to see what would move")
    with rt.session(write=True) as session:
        kept, dropped = rt.customer(session, keep), rt.customer(session, drop)
        if not (yes or dry_run):
            out = rt.output()
            for title, who in (("keep", kept), ("merge in, then remove", dropped)):
                s = merge_summary(session, who)
                net = money(s["net_minor"], rt.config.currency.minor_digits)
                out.message(
                    f"{title}: customer {s['id']} {s['name']} <{s['email'] or s['phone'] or '-'}>, stage {s['stage']}, "
                    f"{s['orders']} orders ({net} {rt.config.currency.code}), {s['points']} points, "
                    f"referred {s['referred']}" + (f", referred by {s['referred_by']}" if s["referred_by"] else "")
                )
            typer.confirm(f"Merge customer {dropped.id} into {kept.id}? This cannot be undone", abort=True)
        result = merge_customers(session=session, keep=kept, drop=dropped, config=rt.config)
        if dry_run:
            session.rollback()
    result["dry_run"] = dry_run
    rt.output(fmt).record(result, title="Would merge (nothing changed)" if dry_run else "Merged")


@app.command("erase")
def erase(
    ctx: typer.Context,
    customer: CustomerArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm; needed when not on a terminal.")] = False,
) -> None:
    """Remove a customer's personal data for good; anonymous purchase totals stay.

    Example: crmcli customer erase ann@example.com --yes
    """
    from crmcli.services.merge import erase_customer

    rt = runtime(ctx)
    if not yes:
        if not is_interactive():
            raise Invalid("erasing is permanent: pass --yes to confirm")
        typer.confirm(f"Erase the personal data of customer {customer!r} for good?", abort=True)
    with rt.session(write=True) as session:
        found = erase_customer(session=session, customer=rt.customer(session, customer))
    assert found.id is not None
    out = rt.output()
    if not rt.db.checkpoint():
        out.message(
            "Warning: another process is reading the database; the erased values leave the -wal file once it closes"
        )
    for backup in rt.db.files_holding(found.id):
        out.message(f"Warning: the backup {backup} still holds this customer's data: delete it or keep it out of reach")
    out.message(f"Customer {found.id} erased.")


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
    on_duplicate: Annotated[
        DuplicateMode,
        typer.Option(help="What to do with a row whose email, phone or ref exists.", case_sensitive=False),
    ] = DuplicateMode("error"),
    fmt: FormatOpt = Format.table,
) -> None:
    """Import customers from CSV or Excel: all or nothing unless --skip-invalid.

    Columns: name (required), email, phone, company, city, source, stage,
    tags (separated by ;), ref, referred_by, note, birthday (MM-DD); and, as 'customer export'
    writes them, created_at, stage_history, referral_status, referral_decided_at,
    referral_reason, birthday_rewards.

    Example: crmcli customer import till.csv --map "E-mail=email" --on-duplicate skip
    """
    from crmcli.io.customers import import_customers

    rt = runtime(ctx)
    rt.import_file(
        import_customers,
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
        warn=lambda text: rt.output().message(f"Warning: {text}"),
    )


@app.command("export")
def export(
    ctx: typer.Context,
    out_file: OutOpt = None,
    fmt: ExportFormatOpt = ExportFormat("csv"),
    no_bom: NoBomOpt = False,
    force: ForceOpt = False,
) -> None:
    """Export customers as CSV (UTF-8 with BOM, for Excel) or JSON; it imports back unchanged.

    Example: crmcli customer export --out customers.csv
    """
    from crmcli.io.customers import export_customers

    runtime(ctx).export_file(export_customers, "customers", out_file, fmt=fmt, no_bom=no_bom, force=force)
