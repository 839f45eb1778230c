"""Shared option aliases, so every command spells the same thing the same way."""

from __future__ import annotations

from typing import Annotated

import typer

from crmcli.render import Format

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new id.")]
CustomerArg = Annotated[str, typer.Argument(help="Customer id, email or external ref.", show_default=False)]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N rows.", min=1)]
WhenHelp = "YYYY-MM-DD, ISO timestamp, today, +30d or -7d"
