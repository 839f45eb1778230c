"""Root command: global options, sub-apps per noun, and the one error handler."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from crmcli import __version__
from crmcli.cli.context import Runtime, runtime
from crmcli.cli.hints import next_step
from crmcli.errors import CrmError, DatabaseError, ImportFailed

MAX_PROBLEMS_SHOWN = 50
MAX_MESSAGE = 500  # characters of one error line


class NumberFormat(StrEnum):
    decimal_point = "decimal_point"
    decimal_comma = "decimal_comma"


class DateOrder(StrEnum):
    ymd = "ymd"
    dmy = "dmy"
    mdy = "mdy"


def _debug(ctx: Any) -> bool:
    obj = getattr(ctx, "obj", None)
    return bool(os.environ.get("CRMCLI_DEBUG")) or (isinstance(obj, Runtime) and obj.debug)


def _translate(exc: Exception) -> CrmError | None:
    """Known library failures as one-line errors; None for genuine bugs."""
    module = type(exc).__module__
    if module.startswith("sqlalchemy"):
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).splitlines()[0]
        if "locked" in text or "busy" in text:
            return DatabaseError(f"the database is busy: {text}", hint="try again in a moment")
        return DatabaseError(f"database error: {text}", hint="run 'crmcli db check'")
    if isinstance(exc, OSError):
        return CrmError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    return None


class CrmGroup(TyperGroup):
    """Turns domain errors into ``Error: ...`` on stderr with exit 1, once, for every command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no output or database takes.
        for arg in args:
            if any("\udc80" <= ch <= "\udcff" for ch in arg):
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise typer.BadParameter(f"argument {shown!r} is not valid UTF-8 text", ctx=ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`crmcli ... | head`): stop quietly, as other Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(1) from None
        except CrmError as exc:
            if _debug(ctx):
                raise
            _report(exc, ctx)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            known = _translate(exc)
            if known is None or _debug(ctx):
                if not _debug(ctx):
                    typer.echo(
                        f"Error: unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
                        err=True,
                    )
                    raise typer.Exit(1) from None
                raise
            _report(known, ctx)
            raise typer.Exit(1) from None
        finally:
            obj = getattr(ctx, "obj", None)
            if isinstance(obj, Runtime):
                obj.close()


def _report(exc: CrmError, ctx: Any) -> None:
    if isinstance(exc, ImportFailed):
        for line, reason in exc.problems[:MAX_PROBLEMS_SHOWN]:
            typer.echo(f"line {line}: {_short(reason)}", err=True)
        if len(exc.problems) > MAX_PROBLEMS_SHOWN:
            typer.echo(f"... and {len(exc.problems) - MAX_PROBLEMS_SHOWN} more", err=True)
    obj = getattr(ctx, "obj", None)
    hint = next_step(exc, obj.command if isinstance(obj, Runtime) else None)
    message = _short(exc.message)
    typer.echo(f"Error: {message} ({hint})" if hint else f"Error: {message}", err=True)


def _short(message: str) -> str:
    """One readable line: a message quoting a 100 kB cell is cut, and a line break in a value is shown as \\n."""
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


app = typer.Typer(
    cls=CrmGroup,
    name="crmcli",
    no_args_is_help=True,
    help=(
        "A customer-relationship manager for small businesses, in the terminal.\n\n"
        "Example: crmcli demo && crmcli customer list"
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crmcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database path or URL (env CRMCLI_DB).", show_default=False),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Config file (env CRMCLI_CONFIG).", show_default=False),
    ] = None,
    number_format: Annotated[
        NumberFormat | None,
        typer.Option(
            "--number-format",
            help="How amounts are written: 1,234.50 (decimal_point) or 1.234,50 (decimal_comma).",
            show_default=False,
        ),
    ] = None,
    date_order: Annotated[
        DateOrder | None,
        typer.Option(
            "--date-order",
            help="How 1.10.2026-style dates are read: dmy or mdy (ymd: year-first dates only).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A customer-relationship manager for small businesses, in the terminal.

    Example: crmcli demo && crmcli customer list
    """
    state = runtime(ctx)
    state.db_target = db
    state.config_path = config
    state.number_format = number_format.value if number_format else None
    state.date_order = date_order.value if date_order else None
    state.debug = debug or state.debug


def _register() -> None:
    from crmcli.cli import audit, coupon, customer, daily, db, demo, interaction, points, purchase, referral, report

    app.add_typer(customer.app, name="customer")
    app.add_typer(interaction.app, name="interaction")
    app.add_typer(interaction.followup_app, name="followup")
    app.add_typer(purchase.app, name="purchase")
    app.add_typer(coupon.app, name="coupon")
    app.add_typer(points.app, name="points")
    app.add_typer(referral.app, name="referral")
    app.add_typer(report.app, name="report")
    app.add_typer(db.app, name="db")
    app.add_typer(audit.app, name="audit")
    app.command("demo")(demo.demo)
    app.command("daily")(daily.daily)


_register()


def main() -> None:
    sys.exit(app(prog_name="crmcli"))
