"""crmcli demo: sample data and the summary a new user sees first."""

from __future__ import annotations

from typing import Annotated

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import FormatOpt, whole
from crmcli.cli.report import DASHBOARD_TABLES
from crmcli.render import Format


def demo(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(help="How many sample customers.", parser=whole(1, 100_000))] = 200,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fill a fresh database with realistic sample data and print the summary.

    It never mixes with real data: on a database that holds real customers it
    refuses, and a second run only prints the summary again.

    Example: crmcli --db demo.db demo --customers 500
    """
    from crmcli.reports.dashboard import dashboard
    from crmcli.services.demo import load_demo
    from crmcli.values import utcnow

    rt = runtime(ctx)
    out = rt.output(fmt)
    now = utcnow()
    with rt.session(write=True) as session:
        result = load_demo(session=session, config=rt.config, customers=customers, now=now)
    with rt.session() as session:
        summary = dashboard(session=session, config=rt.config, as_of=now)
    where = rt.db.path or rt.db.url
    if result["created"]:
        out.message(f"Loaded {result['created']} demo customers into {where}")
    else:
        out.message(f"The demo data is already in {where}; showing its summary")
    out.record(summary, title="crmcli demo: your shop at a glance", tables=DASHBOARD_TABLES)
    out.message(
        "Next: crmcli report rfm | crmcli report pareto | crmcli followup due | crmcli customer show demo-00001"
    )
