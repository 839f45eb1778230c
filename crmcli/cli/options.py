"""Shared option aliases, so every command spells the same thing the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crmcli.render import Format

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new id.")]
CustomerArg = Annotated[str, typer.Argument(help="Customer id, email or external ref.", show_default=False)]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N rows.", min=1)]
WhenHelp = "YYYY-MM-DD, ISO timestamp, today, +30d or -7d"

# Imports and exports share their options.
EncodingOpt = Annotated[str | None, typer.Option(help="Force an encoding (default: detect UTF-8, UTF-8 BOM, GB18030).")]
DelimiterOpt = Annotated[str | None, typer.Option(help="Force the delimiter (default: detect , ; tab |).")]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="Rename a column: CSVCOL=FIELD; repeatable.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Check every row, write nothing.")]
SkipInvalidOpt = Annotated[
    Path | None, typer.Option("--skip-invalid", help="Import good rows; write rejected rows to this CSV.")
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")]
ExportFormatOpt = Annotated[str, typer.Option("--format", "-f", help="csv or json.")]
NoBomOpt = Annotated[bool, typer.Option("--no-bom", help="CSV without the UTF-8 byte-order mark Excel needs.")]
