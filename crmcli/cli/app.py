"""Root command: global options, sub-apps per noun, and the one error handler."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

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


def translate(exc: Exception) -> CrmError | None:
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


_typer_display_type = TyperOption.display_type_rich


def _display_type(self: TyperOption, ctx: Any) -> str | None:
    """What --help shows after an option: nothing for a flag (Typer shows <bool>), the
    choices for a fixed set, and a name for a value rather than <str> or <int>."""
    if self.is_flag:
        return None
    shown = _typer_display_type(self, ctx)
    if shown in ("<str>", "<int>", "<float>", "<Path>", "<path>", "<file>"):
        return "N" if shown == "<int>" else "FILE" if "ath" in shown or "file" in shown else (self.name or "").upper()
    return shown


TyperOption.display_type_rich = _display_type  # type: ignore[method-assign]
_typer_argument_type = TyperArgument.display_type_rich


def _argument_type(self: TyperArgument, ctx: Any) -> str | None:
    """An argument's name says what it is; only a fixed set of choices is worth showing."""
    shown = _typer_argument_type(self, ctx)
    return shown if shown and "|" in shown else None


TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]


class LazyGroup(TyperGroup):
    """A group whose commands are built when used: "did you mean" looks at all their names."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        from difflib import get_close_matches

        from typer._click.exceptions import UsageError

        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            if self.suggest_commands and args and "Did you mean" not in exc.message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


class NounGroup(LazyGroup):
    """The commands of one noun (customer add, customer show, ...), each built from its
    function when first used: running one does not build the other eleven."""

    pending: dict[str, Any]  # name -> Typer's CommandInfo, in the order they were declared

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(name for name in self.pending if name not in self.commands)]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in self.pending:
            from typer.main import get_command_from_info

            self.commands[name] = get_command_from_info(
                self.pending[name],
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
            )
        return super().get_command(ctx, name)


class CrmGroup(LazyGroup):
    """Turns domain errors into ``Error: ...`` on stderr with exit 1, once, for every command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no output or database takes.
        for arg in args:
            if any("\udc80" <= ch <= "\udcff" for ch in arg):
                shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise typer.BadParameter(f"argument {shown!r} is not valid UTF-8 text", ctx=ctx)
        return super().parse_args(ctx, args)

    _listing = False  # while --help lists the commands: their names and help lines suffice

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in COMMANDS if name not in self.commands)]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name in COMMANDS and name not in self.commands:
            if self._listing:
                from typer.core import TyperCommand

                return TyperCommand(name=name, help=COMMANDS[name][2])
            self.commands[name] = load_command(name)
        return super().get_command(ctx, name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`crmcli ... | head`): stop quietly with success, as other Unix tools do.
            _silence_stdout()
            raise typer.Exit(0) from None
        except CrmError as exc:
            if _debug(ctx):
                raise
            _report(exc, ctx)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            known = translate(exc)
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (a test runner's buffer)
        pass


def _report(exc: CrmError, ctx: Any) -> None:
    if isinstance(exc, ImportFailed):
        for line, reason in exc.problems[:MAX_PROBLEMS_SHOWN]:
            typer.echo(f"line {line}: {_short(reason)}", err=True)
        if len(exc.problems) > MAX_PROBLEMS_SHOWN:
            typer.echo(f"... and {len(exc.problems) - MAX_PROBLEMS_SHOWN} more", err=True)
    obj = getattr(ctx, "obj", None)
    typer.echo(f"Error: {error_text(exc, obj.command if isinstance(obj, Runtime) else None)}", err=True)


def error_text(exc: CrmError, command: Any = None) -> str:
    """An error as one line, with the next step to take when there is one."""
    hint = next_step(exc, command)
    message = _short(exc.message)
    return f"{message} ({hint})" if hint else message


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
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (as does the NO_COLOR variable).")] = False,
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
    state.color = not no_color


# The commands after `crmcli`, in the order --help lists them: (module, attribute, the line
# --help shows). Each is imported and built only when used, so `crmcli --help` and one
# command start without building the other fifty; tests/cli/test_app.py checks that each
# line is the command's own help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("crmcli.cli.demo", "demo", "Fill a fresh database with realistic sample data and print the summary."),
    "daily": ("crmcli.cli.daily", "daily", "Run every scheduled rule once: the one line a shop puts in its crontab."),
    "batch": (
        "crmcli.cli.batch",
        "batch",
        "Run many commands in one process: one JSON command per line in, one JSON result per line out.",
    ),
    "customer": ("crmcli.cli.customer", "app", "Customers: add, find, edit, merge, erase, import and export."),
    "interaction": (
        "crmcli.cli.interaction",
        "app",
        "Interactions: log calls, visits, complaints and surveys; answer complaints.",
    ),
    "followup": ("crmcli.cli.interaction", "followup_app", "Follow-ups: who needs a call today."),
    "purchase": ("crmcli.cli.purchase", "app", "Purchases: record sales with coupons and points, payments, refunds."),
    "coupon": (
        "crmcli.cli.coupon",
        "app",
        "Coupons: issue to a customer, a segment, a stage or everyone; redeem; void.",
    ),
    "points": ("crmcli.cli.points", "app", "Loyalty points: balance and tier, adjust, redeem, monthly tenure accrual."),
    "referral": ("crmcli.cli.referral", "app", "Referrals: who brought whom; verify and reward both sides."),
    "report": (
        "crmcli.cli.report",
        "app",
        "Reports: 80/20, RFM segments, value, predicted value, cohorts, funnel, referrals, payment, satisfaction, SLA.",
    ),
    "db": ("crmcli.cli.db", "app", "Database: upgrade, current revision, backup, integrity check, copy."),
    "audit": ("crmcli.cli.audit", "app", "The audit log: every change, when, by whom and which command."),
}


def load_command(name: str) -> Any:
    """The click command or group for ``crmcli NAME``, built from its module."""
    import importlib

    from typer.main import get_command_from_info, get_command_name, get_group
    from typer.models import CommandInfo

    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        # The group without its commands; NounGroup builds the one that runs.
        registered, target.registered_commands = target.registered_commands, []
        target.info.cls = NounGroup
        try:
            command: Any = get_group(target)
        finally:
            target.registered_commands = registered
        command.pending = {
            info.name or get_command_name(getattr(info.callback, "__name__", "")): info for info in registered
        }
    else:
        command = get_command_from_info(
            CommandInfo(name=name, callback=target),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
    command.name = name
    return command


def main() -> None:
    """The process's entry point (the ``crmcli`` script and ``python -m crmcli``)."""
    from crmcli.cli.process import exit_now, hold_collection

    hold_collection()
    code: Any = 0
    try:
        app(prog_name="crmcli")
    except SystemExit as done:
        code = done.code
    except BrokenPipeError:
        _silence_stdout()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of a pipe left before the last line was flushed
        _silence_stdout()
    exit_now(code)
