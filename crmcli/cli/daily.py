"""crmcli daily: the one job a shop runs from cron."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from crmcli.cli.context import runtime
from crmcli.cli.options import FormatOpt, WhenHelp
from crmcli.render import Format


class _RolledBack(Exception):
    """Raised inside the transaction of a dry run, so nothing it did is kept."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result


def daily(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option("--as-of", help=f"Run as at: {WhenHelp}. Default now.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what the run would do; write nothing.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Run every scheduled rule once: the one line a shop puts in its crontab.

    Late-payment resets, tenure points, points expiry, birthday rewards, apologies for
    complaints past their deadline, referral checks and held referral rewards. Running it
    twice the same day changes nothing.

    Example: crmcli daily --format json   (cron: 5 3 * * * crmcli daily -f json >> ~/crmcli-daily.log)
    """
    from crmcli.services.daily import run_daily
    from crmcli.values import utcnow

    rt = runtime(ctx)
    moment = rt.when(as_of, happened="--as-of") or utcnow()
    try:
        with rt.session(write=True) as session:
            result = run_daily(session=session, config=rt.config, as_of=moment)
            if dry_run:
                raise _RolledBack(result)
    except _RolledBack as undone:
        result = undone.result
    rt.output(fmt).record({**result, "dry_run": dry_run}, title="Daily run" + (" (dry run)" if dry_run else ""))
