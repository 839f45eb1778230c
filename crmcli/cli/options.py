"""Shared option aliases, so every command spells the same thing the same way."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from crmcli import choices
from crmcli.render import Format

MAX_ID = 2**63 - 1  # the largest id SQLite and PostgreSQL's BIGINT hold


def whole(low: int = 1, high: int = MAX_ID) -> Callable[[Any], int]:
    """A parser for a whole number written in ASCII digits within bounds: ids and counts.

    Plain ``int`` takes ``٣`` (Python reads any Unicode digit) and any size, which then
    overflows the database driver; this refuses both as a usage error (exit 2).
    """

    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII):
                raise typer.BadParameter(f"{value!r} is not a whole number (digits 0-9)")
            if len(text.lstrip("+-").lstrip("0")) > 19:
                raise typer.BadParameter(f"{value} is too large (at most {high})")
            number = int(text)
        if not low <= number <= high:
            raise typer.BadParameter(f"{value} is not in the range {low} to {high}")
        return number

    return parse


def id_argument(help: str) -> Any:
    """A positional record id: 1 to 2^63-1."""
    return typer.Argument(help=help, parser=whole(), show_default=False, metavar="ID")


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
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N rows.", parser=whole())]
WhenHelp = "YYYY-MM-DD, 2026/10/1 14:30, ISO timestamp, today, yesterday, +30d or -7d"

# Imports and exports share their options.
EncodingOpt = Annotated[
    str | None,
    typer.Option(help="Force an encoding (default: detect UTF-8, UTF-16 BOM, GB18030, Big5, Shift-JIS, cp1252)."),
]
DelimiterOpt = Annotated[str | None, typer.Option(help="Force the delimiter (default: detect , ; tab |).")]
MapOpt = Annotated[
    list[str] | None, typer.Option("--map", help="Rename a column: CSVCOL=FIELD, or CSVCOL= to ignore it; repeatable.")
]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Workbook sheet to read (.xlsx; default the first).")]
DecimalCommaOpt = Annotated[
    bool, typer.Option("--decimal-comma", help="Amounts use a decimal comma: 1.234,50 (config number_format).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Check every row, write nothing.")]
SkipInvalidOpt = Annotated[
    Path | None, typer.Option("--skip-invalid", help="Import good rows; write rejected rows to this CSV.")
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")]
ExportFormatOpt = Annotated[ExportFormat, typer.Option("--format", "-f", help="File format.", case_sensitive=False)]
NoBomOpt = Annotated[bool, typer.Option("--no-bom", help="CSV without the UTF-8 byte-order mark Excel needs.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists (never the database).")]
