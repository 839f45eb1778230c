"""Shared option aliases, so every command spells the same thing the same way."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from crmcli import choices
from crmcli.render import Format

# The domain's fixed choices as Enums, so Typer lists them in --help and refuses anything else
# (exit 2). Built from crmcli.choices, the one home of the values, which the services check too.
# (mypy wants a literal for the functional Enum API; the members are the tuples' values.)
Stage = StrEnum("Stage", {v: v for v in choices.STAGES})  # type: ignore[misc]
InteractionKind = StrEnum("InteractionKind", {v: v for v in choices.INTERACTION_KINDS})  # type: ignore[misc]
CouponStatus = StrEnum("CouponStatus", {v: v for v in choices.COUPON_STATUSES})  # type: ignore[misc]
ReferralStatus = StrEnum("ReferralStatus", {v: v for v in choices.REFERRAL_STATUSES})  # type: ignore[misc]
DuplicateMode = StrEnum("DuplicateMode", {v: v for v in choices.DUPLICATE_MODES})  # type: ignore[misc]
ExportFormat = StrEnum("ExportFormat", {v: v for v in choices.EXPORT_FORMATS})  # type: ignore[misc]

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
ExportFormatOpt = Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.", case_sensitive=False)]
NoBomOpt = Annotated[bool, typer.Option("--no-bom", help="CSV without the UTF-8 byte-order mark Excel needs.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists (never the database).")]
