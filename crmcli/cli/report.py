"""crmcli report ...: the numbers a shop owner keeps a CRM for."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from crmcli.choices import CLV_SEGMENTS, RFM_SEGMENTS
from crmcli.cli.context import runtime
from crmcli.cli.options import ForceOpt, FormatOpt, LimitOpt, WhenHelp, complete_segment, listing, whole
from crmcli.render import Column, Format

app = typer.Typer(
    help=(
        "Reports: 80/20, RFM segments, value, predicted value, cohorts, funnel, referrals, payment, satisfaction, SLA."
        "\n\nExample: crmcli report --html month.html --as-of 2026-06-30"
    )
)
AsOf = Annotated[str | None, typer.Option("--as-of", help=f"As at the end of: {WhenHelp}. Default now.")]

SEGMENT_COLUMNS = [
    Column("segment"),
    Column("r"),
    Column("f"),
    Column("customers", numeric=True, bar=True),
    Column("customer_share", "share", numeric=True),
    Column("revenue", numeric=True),
    Column("revenue_share", "of revenue", numeric=True),
]
STAGE_COLUMNS = [
    Column("stage"),
    Column("customers", numeric=True, bar=True),
    Column("by_referral", "by referral", numeric=True),
    Column("conversion", numeric=True),
    Column("median_days", "median days", numeric=True),
]
RISK_COLUMNS = [
    Column("risk"),
    Column("customers", numeric=True, bar=True),
    Column("share", numeric=True),
    Column("expected_purchases", "expected purchases", numeric=True),
    Column("predicted_value", "predicted value", numeric=True),
]
# Tables fit 80 columns; JSON and CSV carry every field.
CLV_COLUMNS = [
    Column("id", numeric=True),
    Column("name"),
    Column("p_alive", "P(alive)", numeric=True),
    Column("risk"),
    Column("expected_purchases", "exp. buys", numeric=True),
    Column("predicted_value", "value", numeric=True),
    Column("next_purchase", "next buy"),
]
ESTIMATE_COLUMNS = [
    Column("id", numeric=True),
    Column("name"),
    Column("risk"),
    Column("next_purchase_earliest", "next: earliest"),
    Column("next_purchase", "likely"),
    Column("next_purchase_latest", "latest"),
]
DASHBOARD_TABLES = {
    "stages": [Column("stage"), Column("customers", numeric=True, bar=True)],
    "segments": [Column("segment"), Column("customers", numeric=True, bar=True), Column("revenue", numeric=True)],
}


def _run(ctx: typer.Context, as_of: str | None, build: Callable[..., Any], **kw: Any) -> Any:
    rt = runtime(ctx)
    with rt.session() as session:
        return build(session=session, config=rt.config, as_of=rt.when(as_of or "now", end_of_day=bool(as_of)), **kw)


@app.callback(invoke_without_command=True)
def overview(
    ctx: typer.Context,
    as_of: AsOf = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write one printable page (dashboard, Pareto, RFM, value, cohorts, payment, satisfaction, SLA).",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """One screen of headline figures; the subcommands give each report in full.
    With --html, a self-contained page to print or send (no network needed to view it).

    Example: crmcli report --as-of 2026-06-30 --html june.html
    """
    if ctx.invoked_subcommand is not None:
        return
    if html is not None:
        from crmcli.io.writer import atomic_path
        from crmcli.reports.html import collect, render_page

        rt = runtime(ctx)
        target = rt.target(html, force=force)
        assert target is not None
        page = render_page(_run(ctx, as_of, collect))
        with atomic_path(target) as tmp:
            tmp.write_text(page, encoding="utf-8")
        rt.output().message(f"Wrote the report to {html}")
        return
    from crmcli.reports.dashboard import dashboard

    result = _run(ctx, as_of, dashboard)
    runtime(ctx).output(fmt).record(result, title="Your shop at a glance", tables=DASHBOARD_TABLES)


@app.command("pareto")
@listing()
def pareto(ctx: typer.Context, as_of: AsOf = None, fmt: FormatOpt = Format.table) -> None:
    """The 80/20 split: the top 20% of customers' share of revenue, how many make 80%,
    and how many referrals come from the top 20% and from the other 80%.

    Example: crmcli report pareto --format json
    """
    from crmcli.reports.pareto import pareto as build

    runtime(ctx).output(fmt).record(_run(ctx, as_of, build), title="Pareto: who brings the revenue")


@app.command("rfm")
@listing()
def rfm(
    ctx: typer.Context,
    customers: Annotated[bool, typer.Option("--customers", help="List each customer's r, f, m and segment.")] = False,
    segment: Annotated[
        str | None,
        typer.Option(
            help=f"With --customers: only this segment: {', '.join(RFM_SEGMENTS)}.", autocompletion=complete_segment
        ),
    ] = None,
    limit: LimitOpt = None,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """RFM segments (Champions, Loyal, At Risk, Hibernating, ...) with customer counts and revenue.

    Example: crmcli report rfm --customers --segment "At Risk" --format csv
    """
    from crmcli.reports.rfm import rfm_customers, rfm_segments

    out = runtime(ctx).output(fmt)
    if customers:
        rows = _run(ctx, as_of, rfm_customers, segment=segment, limit=limit)
        out.rows(rows, empty="No customers with purchases.")
    else:
        out.rows(_run(ctx, as_of, rfm_segments), SEGMENT_COLUMNS)


@app.command("value")
@listing()
def value(
    ctx: typer.Context,
    customers: Annotated[bool, typer.Option("--customers", help="List each customer's two values and group.")] = False,
    predicted: Annotated[
        bool, typer.Option("--predicted", help="Add predicted value (see 'report clv'; needs the analytics extra).")
    ] = False,
    limit: LimitOpt = None,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Lifetime value next to referral value, and the four groups: champions (high both),
    affluents (high lifetime only), advocates (high referral only), misers (low both).

    Example: crmcli report value --customers --predicted --limit 20
    """
    from crmcli.reports.value import value_report

    result = _run(ctx, as_of, value_report, with_customers=customers, limit=limit, predicted=predicted)
    runtime(ctx).output(fmt).record(
        result,
        title="Lifetime value and referral value",
        csv_rows="rows" if customers else "groups",
        tables={
            "groups": [
                Column("group"),
                Column("customers", numeric=True, bar=True),
                Column("customer_share", "share", numeric=True),
                Column("lifetime_value", "lifetime value", numeric=True),
                Column("referral_value", "referral value", numeric=True),
                *([Column("predicted_value", "predicted value", numeric=True)] if predicted else []),
            ]
        },
    )


@app.command("funnel")
@listing()
def funnel(ctx: typer.Context, as_of: AsOf = None, fmt: FormatOpt = Format.table) -> None:
    """Customers who reached each stage, conversion between stages, median days between them.

    Example: crmcli report funnel
    """
    from crmcli.reports.funnel import funnel as build

    runtime(ctx).output(fmt).record(
        _run(ctx, as_of, build), title="Lifecycle funnel", csv_rows="stages", tables={"stages": STAGE_COLUMNS}
    )


@app.command("referrals")
@listing()
def referrals(
    ctx: typer.Context,
    top: Annotated[int, typer.Option(help="How many top referrers to list.", parser=whole())] = 10,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """How much of the business word of mouth brings: referred customers, verified share,
    their revenue, and the top referrers.

    Example: crmcli report referrals --top 5
    """
    from crmcli.reports.referrals import referral_report

    runtime(ctx).output(fmt).record(
        # (the fraud signals only for today: their findings are not kept as a history)
        _run(ctx, as_of, referral_report, top=top, signals=as_of is None),
        title="Word of mouth",
        csv_rows="top_referrers",
    )


@app.command("payment")
@listing()
def payment(ctx: typer.Context, as_of: AsOf = None, fmt: FormatOpt = Format.table) -> None:
    """Big/small customers x good/poor payers, with the terms each cell deserves.

    Example: crmcli report payment
    """
    from crmcli.reports.payment import payment_report

    runtime(ctx).output(fmt).record(_run(ctx, as_of, payment_report), title="Payment behaviour", csv_rows="cells")


@app.command("satisfaction")
@listing()
def satisfaction(ctx: typer.Context, as_of: AsOf = None, fmt: FormatOpt = Format.table) -> None:
    """Rating distribution: the share of 5s (loyal) against 3-4 (likely to leave) and 1-2.

    Example: crmcli report satisfaction
    """
    from crmcli.reports.satisfaction import satisfaction as build

    runtime(ctx).output(fmt).record(
        _run(ctx, as_of, build),
        title="Satisfaction",
        csv_rows="distribution",
        tables={
            "distribution": [
                Column("rating", numeric=True),
                Column("count", numeric=True, bar=True),
                Column("share", numeric=True),
                Column("meaning"),
            ]
        },
    )


@app.command("sla")
@listing()
def sla(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 3 when an open complaint is past its deadline; give the apologies due (sla.breach_reward).",
        ),
    ] = False,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Complaint response and resolution times against the SLA, the overdue ones, and the
    breaches: the apology each got and whether the customer bought again afterwards.

    Example: crmcli report sla --check || notify-send "a complaint is waiting"
    """
    from crmcli.reports.amends import sla_with_amends

    rt = runtime(ctx)
    if check and rt.config.sla.breach_reward is not None:
        from crmcli.services.rewards import give_apologies
        from crmcli.values import utcnow

        with rt.session(write=True) as session:
            give_apologies(session, rt.config, utcnow())
    result = _run(ctx, as_of, sla_with_amends)
    rt.output(fmt).record(result, title="Complaints against the SLA", csv_rows="overdue")
    if check and result["overdue"]:
        raise typer.Exit(3)


@app.command("clv")
@listing()
def clv(
    ctx: typer.Context,
    calibration_end: Annotated[
        str | None,
        typer.Option(help=f"Learn from purchases up to the end of this day ({WhenHelp}); default --as-of."),
    ] = None,
    horizon: Annotated[
        int | None, typer.Option(help="Days ahead to predict (default: clv.horizon_days, 365).", min=1, max=3650)
    ] = None,
    customers: Annotated[bool, typer.Option("--customers", help="List each customer's figures.")] = False,
    segment: Annotated[
        str | None,
        typer.Option(
            help=f"List only this band: {', '.join(CLV_SEGMENTS)} (implies --customers).",
            autocompletion=complete_segment,
        ),
    ] = None,
    limit: LimitOpt = None,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Who will come back: probability alive, expected purchases and spend, predicted value,
    churn risk and next purchase (BG/NBD + Gamma-Gamma; needs the analytics extra:
    pip install 'crmcli\\[analytics]').

    Example: crmcli report clv --customers --segment "valuable but slipping" --limit 20
    """
    from crmcli.reports.prediction import clv_report

    rt = runtime(ctx)
    end = rt.when(calibration_end, end_of_day=True)
    listed = customers or segment is not None
    result = _run(
        ctx,
        as_of,
        clv_report,
        calibration_end=end,
        horizon_days=horizon,
        with_customers=listed,
        segment=segment,
        limit=limit,
    )
    tables = {"risk": RISK_COLUMNS, "rows": CLV_COLUMNS if result["model"] else ESTIMATE_COLUMNS}
    rt.output(fmt).record(
        result,
        title="Who will come back",
        csv_rows="rows" if listed else "risk",
        tables=tables if fmt is Format.table else {},
    )


class Period(StrEnum):
    month = "month"
    quarter = "quarter"


class Metric(StrEnum):
    customers = "customers"
    revenue = "revenue"


@app.command("cohorts")
@listing()
def cohorts(
    ctx: typer.Context,
    period: Annotated[Period, typer.Option(help="Group first purchases by month or quarter.")] = Period.month,
    metric: Annotated[
        Metric, typer.Option(help="customers: share of the cohort still buying; revenue: what it spent.")
    ] = Metric.customers,
    as_of: AsOf = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Retention by cohort: customers grouped by the period of their first purchase, and for
    each later period the share still buying or their revenue (JSON carries both).

    Example: crmcli report cohorts --period quarter --metric revenue
    """
    from crmcli.reports.cohorts import cohorts as build
    from crmcli.reports.cohorts import triangle

    result = _run(ctx, as_of, build, period=period.value)
    out = runtime(ctx).output(fmt)
    if Format(fmt).structured:
        out.record(result, csv_rows="cohorts")
        return
    rows = triangle(result, metric.value)
    later = [Column(key, numeric=True, heat=True) for key in (rows[0] if rows else {}) if key.startswith("+")]
    title = f"{'Monthly' if period is Period.month else 'Quarterly'} cohorts: " + (
        "share still buying" if metric is Metric.customers else "revenue"
    )
    out.rows(
        rows,
        [Column("cohort"), Column("customers", numeric=True), *later],
        title=title,
        empty="No customers with purchases.",
    )
