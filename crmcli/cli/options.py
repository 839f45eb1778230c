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
# what a file's record the database already has can do when it is never rewritten (a coupon's terms)
KeepMode = StrEnum("KeepMode", {v: v for v in choices.DUPLICATE_MODES if v != "update"})  # type: ignore[misc]
ExportFormat = StrEnum("ExportFormat", {v: v for v in choices.EXPORT_FORMATS})  # type: ignore[misc]

COMPLETION_LIMIT = 20  # customers offered at once by shell completion


def complete_customer(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a customer: emails and refs from the database, by prefix."""
    try:
        from crmcli.config import database_target, load_config
        from crmcli.db import Database
        from crmcli.services.identify import customer_completions

        root = ctx.find_root()
        config = load_config(root.params.get("config"))
        target = database_target(root.params.get("db"), config)
        if "://" not in target and not Path(target).expanduser().exists():
            return []  # completing never creates a database
        db = Database(target, migrate=False)
        try:
            with db.session() as session:
                return customer_completions(session, incomplete, COMPLETION_LIMIT)
        finally:
            db.close()
    except Exception:  # completion must never print a traceback into the shell
        return []


def complete_segment(incomplete: str) -> list[str]:
    wanted = incomplete.lower()
    return [name for name in choices.SEGMENTS if name.lower().startswith(wanted)]


SEGMENT_HELP = "; ".join(choices.SEGMENTS)
FormatOpt = Annotated[
    Format,
    typer.Option("--format", "-f", help="Output format (ndjson: one JSON object per line).", case_sensitive=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new id.")]
CustomerArg = Annotated[
    str,
    typer.Argument(help="Customer id, email or external ref.", show_default=False, autocompletion=complete_customer),
]
CustomerOpt = Annotated[
    str | None,
    typer.Option("--customer", help="Only this customer (id, email or ref).", autocompletion=complete_customer),
]
SegmentOpt = Annotated[
    str | None,
    typer.Option("--segment", help=f"Only this segment: {SEGMENT_HELP}.", autocompletion=complete_segment),
]
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

# Listings and report row sets share how a script shapes them (see ``listing``).
SortOpt = Annotated[
    str | None,
    typer.Option(
        "--sort",
        help="Sort by this field (any listed column); -FIELD for descending.",
        show_default=False,
        metavar="FIELD",
    ),
]
OffsetOpt = Annotated[int, typer.Option("--offset", help="Skip the first N rows.", parser=whole(0), show_default=False)]
FieldsOpt = Annotated[
    str | None,
    typer.Option(
        "--fields",
        metavar="A,B,C",
        help="Only these fields, in this order: a,b,c (JSON keeps only those keys).",
        show_default=False,
    ),
]
NoPagerOpt = Annotated[bool, typer.Option("--no-pager", help="Never page a long table on a terminal.")]
SHAPING = ("sort", "offset", "fields", "no_pager")


def listing(default_sort: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command that prints a row set --sort, --offset, --limit, --fields and --no-pager.

    The command keeps its own parameters; what a script asked for is kept in the runtime,
    which every ``Output`` of the invocation applies (sort, then slice, then pick fields).
    The command's own ``limit`` reaches its service only when the service's order is the
    one shown (no --sort), so a limited query stays a limited query.
    """
    import functools
    import inspect

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        has_limit = "limit" in signature.parameters
        own_sort = "sort" in signature.parameters  # the command sorts in its query where it can
        added = {"sort": SortOpt, "offset": OffsetOpt, "fields": FieldsOpt, "no_pager": NoPagerOpt}
        defaults: dict[str, Any] = {"sort": None, "offset": 0, "fields": None, "no_pager": False}
        if own_sort:
            del added["sort"], defaults["sort"]
        if not has_limit:
            added["limit"] = LimitOpt
            defaults["limit"] = None
        params = [
            *signature.parameters.values(),
            *(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=kind)
                for name, kind in added.items()
            ),
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from crmcli.cli.context import runtime
            from crmcli.render import Shape, parse_fields

            ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
            sort = None if own_sort else kwargs.pop("sort")
            offset = kwargs.pop("offset")
            fields = kwargs.pop("fields")
            no_pager = kwargs.pop("no_pager")
            limit = kwargs.get("limit") if has_limit else kwargs.pop("limit")
            rt = runtime(ctx)
            rt.shape = Shape(
                fields=parse_fields(fields), sort=None if own_sort else sort or default_sort, offset=offset, limit=limit
            )
            rt.paged = not no_pager
            if has_limit:
                # the service's own order and limit serve when no other order is asked for
                kwargs["limit"] = None if sort or limit is None else limit + offset
            try:
                return command(*args, **kwargs)
            finally:  # the shaping belongs to this command only, not to one run after it
                rt.shape, rt.paged = None, True

        run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {**{p.name: p.annotation for p in params}, "return": signature.return_annotation}
        del run.__wrapped__  # Typer reads the new signature, not the command's own
        return run

    return decorate
