"""crmcli batch: many commands in one process, for scripts.

Each input line is one command as JSON, ``{"cmd": "purchase add", "args": {...}}``; each
command runs through the CLI's own command object (the same names, option parsing,
validation, defaults, errors and audit as when typed), with its output in JSON, and one
result line is written per command. The database is opened, and its schema checked,
once for the whole batch.
"""

from __future__ import annotations

import enum
import functools
import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from typer.core import TyperArgument, TyperOption

from crmcli.cli.context import Runtime, runtime
from crmcli.errors import CrmError, ImportFailed, Invalid
from crmcli.render import Format

MAX_PROBLEMS = 50  # an import's rejected rows listed in one result
NOT_IN_BATCH = ("batch",)  # no batch inside a batch
NOT_ATOMIC = ("db",)  # they work on the database file itself, outside any transaction
EXIT_USAGE = 2
BATCH_STATEMENT_CACHE = 64


@dataclass
class Outcome:
    """One command's result line."""

    line: int
    ok: bool = True
    result: Any = None
    error: str | None = None
    exit: int = 0
    messages: list[str] = field(default_factory=list)
    problems: list[list[Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"line": self.line, "ok": self.ok}
        if self.ok:
            shown["result"] = self.result
        else:
            shown.update(error=self.error, exit=self.exit)
            if self.result is not None:
                shown["result"] = self.result
        if self.problems:
            shown["problems"] = self.problems
        if self.messages:
            shown["messages"] = self.messages
        return shown


class LineError(Exception):
    """A line that is not a command this batch can run (exit 2, like a mistyped command)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class OutputClosed(CrmError):
    """The reader of the results went away: unlike a listing cut short, commands were left unrun."""

    def __init__(self, line: int) -> None:
        super().__init__(
            f"the output was closed while the result of line {line} was written (that command ran); "
            "the lines after it were not run"
        )


class AtomicFailure(Exception):
    """Raised inside the atomic block so that everything before the failing line rolls back."""


def batch(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="File of JSON lines, one command each; - (the default) for standard input.")
    ] = "-",
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic", help="All or nothing: one transaction for the whole file; the first failure undoes it all."
        ),
    ] = False,
) -> None:
    """Run many commands in one process: one JSON command per line in, one JSON result per line out.

    A line is {"cmd": "purchase add", "args": {"customer": "ann@example.com", "amount": "59.90"}}:
    "cmd" is a command as typed after crmcli; "args" are its arguments and options by name
    (customer, amount, coupon, paid or paid_at, tag: ["a", "b"], unpaid: true). A result is
    {"line": 1, "ok": true, "result": ...} (the command's --format json output) or
    {"line": 1, "ok": false, "error": "...", "exit": 1}. Each command commits on its own unless
    --atomic. The exit status is 0 when every command succeeded, else 1.

    Example: crmcli batch sales.jsonl --atomic
    """
    rt = runtime(ctx)
    # Each line runs the same few dozen statements: keep them prepared (the driver's default
    # for crmcli, 16, is sized for imports' long IN-lists, and a sale's rules alone use more).
    rt.db.statement_cache = BATCH_STATEMENT_CACHE
    root = ctx.find_root()
    runner = BatchRunner(root_command=root.command, root_name=root.info_name or "crmcli", base=rt, atomic=atomic)
    out = sys.stdout
    try:
        if file == "-":
            failed = runner.run(sys.stdin, out)
        else:
            with Path(file).open(encoding="utf-8-sig") as handle:
                failed = runner.run(handle, out)
    except UnicodeDecodeError as exc:
        raise Invalid(f"the commands are not UTF-8 text ({exc.reason} at byte {exc.start} of a block)") from None
    if failed:
        raise typer.Exit(1)


class BatchRunner:
    def __init__(self, *, root_command: Any, root_name: str, base: Runtime, atomic: bool) -> None:
        self.root_command = root_command
        self.root_name = root_name
        self.base = base
        self.atomic = atomic
        self.defaults: Defaults = {}  # see command_context

    def run(self, lines: Iterable[str], out: IO[str]) -> bool:
        """Run every line, writing its result; True when any command failed."""
        if not self.atomic:
            failed = False
            for outcome in self._outcomes(lines):
                failed = failed or not outcome.ok
                try:
                    _write(out, outcome)
                except BrokenPipeError:
                    raise OutputClosed(outcome.line) from None
            return failed
        done: list[Outcome] = []
        db = self.base.db
        try:
            with db.atomic():
                for outcome in self._outcomes(lines):
                    if outcome.ok and not db.atomic_intact():
                        outcome = Outcome(
                            outcome.line,
                            ok=False,
                            error="this command ends its own transaction (a dry run), which would undo the batch",
                            exit=1,
                        )
                    done.append(outcome)
                    if not outcome.ok:
                        raise AtomicFailure
        except AtomicFailure:
            failing = done[-1]
            for earlier in done[:-1]:
                _write(
                    out,
                    Outcome(earlier.line, ok=False, error=f"rolled back: line {failing.line} failed", exit=1),
                )
            _write(out, failing)
            return True
        for outcome in done:
            _write(out, outcome)
        return False

    def _outcomes(self, lines: Iterable[str]) -> Iterator[Outcome]:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                words, args = parse_line(text, number)
                path, command = self.resolve(words)
                argv = to_argv(command, args, " ".join(words))
            except LineError as exc:
                yield Outcome(number, ok=False, error=exc.message, exit=exc.exit_code)
                continue
            yield self.invoke(number, path, command, argv)

    # --- one command ------------------------------------------------------------

    def resolve(self, words: list[str]) -> tuple[list[Any], Any]:
        """The groups along a command's path and the command itself."""
        if not words:
            raise LineError('"cmd" is empty; ' + self._valid(self.root_command, []))
        ctx = self._context([], Runtime())
        command = self.root_command
        path = []
        for depth, word in enumerate(words):
            sub = command.get_command(ctx, word) if _is_group(command) else None
            if sub is None or (depth == 0 and word in NOT_IN_BATCH):
                raise LineError(f"unknown command {' '.join(words)!r}; {self._valid(command, words[:depth])}")
            path.append(command)
            command = sub
        if _is_group(command):
            raise LineError(f"{' '.join(words)!r} needs a subcommand; {self._valid(command, words)}")
        if self.atomic and words[0] in NOT_ATOMIC:
            raise LineError(f"'{' '.join(words)}' cannot run inside an atomic batch")
        return path, command

    def _valid(self, group: Any, prefix: list[str]) -> str:
        return "valid commands: " + ", ".join(" ".join(p) for p in _leaves(group, prefix) if p[0] not in NOT_IN_BATCH)

    def _context(self, words: list[str], rt: Runtime) -> Any:
        """The contexts a command runs under, as if typed: ``crmcli purchase`` for ``purchase add``."""
        ctx = self.root_command.context_class(
            self.root_command, info_name=self.root_name, obj=rt, help_option_names=["-h", "--help"]
        )
        command = self.root_command
        for word in words:
            command = command.get_command(ctx, word)
            ctx = command.context_class(command, parent=ctx, info_name=word)
        return ctx

    def invoke(self, number: int, path: list[Any], command: Any, argv: list[str]) -> Outcome:
        from crmcli.cli.app import error_text, translate

        rt = self.base.fork()
        names = [c.name for c in path[1:]]
        parent = self._context(names, rt)
        captured, messages = io.StringIO(), io.StringIO()
        outcome = Outcome(number)
        try:
            with redirect_stdout(captured), redirect_stderr(messages), _no_stdin():
                with command_context(command, argv, parent, self.defaults) as ctx:
                    command.invoke(ctx)
        except typer.Exit as exc:
            if exc.exit_code:  # a check that found something to act on (exit 3) still printed its rows
                outcome = Outcome(number, ok=False, error=f"exit status {exc.exit_code}", exit=exc.exit_code)
                outcome.result = _result(captured.getvalue())
        except typer.Abort:
            outcome = Outcome(number, ok=False, error="aborted", exit=1)
        except Exception as exc:
            known = exc if isinstance(exc, CrmError) else translate(exc)
            usage = _usage_error(exc)
            if usage is not None:
                outcome = Outcome(number, ok=False, error=usage[0], exit=usage[1])
            elif known is not None and not rt.debug:
                outcome = Outcome(number, ok=False, error=error_text(known, rt.command), exit=known.exit_code)
                if isinstance(known, ImportFailed):
                    outcome.problems = [[line, reason] for line, reason in known.problems[:MAX_PROBLEMS]]
            elif rt.debug:
                raise
            else:
                outcome = Outcome(number, ok=False, error=f"unexpected {type(exc).__name__}: {exc}", exit=1)
        if outcome.ok:
            outcome.result = _result(captured.getvalue())
        outcome.messages = [line for line in messages.getvalue().splitlines() if line.strip()]
        return outcome


def parse_line(text: str, number: int) -> tuple[list[str], dict[str, Any]]:
    """A line's command words and arguments."""
    try:
        # a number keeps the digits it was written with (12.50, 1e3): read as the same text would be
        data = json.loads(text.removeprefix("\ufeff") if number == 1 else text, parse_float=str)
    except json.JSONDecodeError as exc:
        raise LineError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cmd"), str):
        raise LineError(f'line {number}: expected an object like {{"cmd": "customer show", "args": {{"customer": 5}}}}')
    extra = sorted(set(data) - {"cmd", "args"})
    if extra:
        raise LineError(f'line {number}: unknown key {extra[0]!r}; a line has "cmd" and "args"')
    args = data.get("args") or {}
    if not isinstance(args, dict):
        raise LineError(f'line {number}: "args" must be an object of argument names and values')
    return data["cmd"].split(), args


def to_argv(command: Any, args: dict[str, Any], name: str) -> list[str]:
    """Command-line words for ``args``: options as ``--flag value`` (``--flag`` for true), then
    ``--`` and the positional arguments in their order, so a value starting with - stays a value."""
    params = _by_name(command)
    options: list[str] = []
    positional: dict[str, list[str]] = {}
    for key, value in args.items():
        param = params.get(key)
        if param is None:
            takes = ", ".join(p.name for p in command.params)
            raise LineError(f"{name!r} has no argument {key!r}; it takes: {takes}")
        if value is None:
            continue
        if isinstance(param, TyperArgument):
            values = value if isinstance(value, list) and param.nargs != 1 else [value]
            positional[param.name] = [_word(v, key) for v in values]
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if not isinstance(value, bool):
                raise LineError(f"{key!r} of {name!r} is true or false")
            if value:
                options.append(flag)
            elif param.secondary_opts:
                options.append(max(param.secondary_opts, key=len))
            continue
        values = value if isinstance(value, list) and param.multiple else [value]
        for item in values:
            options += [flag, _word(item, key)]
    if "fmt" not in {params[k].name for k in args if k in params} and _renders(command):
        options += ["--format", Format.json.value]
    words = [*options, "--"]
    for param in command.params:
        if isinstance(param, TyperArgument) and param.name in positional:
            words += positional[param.name]
    return words


@functools.cache
def _by_name(command: Any) -> dict[str, Any]:
    """A command's parameters by every name a line may give them (``paid_at``, ``paid``,
    ``decimal-comma``), worked out once per command for a batch of a thousand lines."""
    params: dict[str, Any] = {}
    for param in command.params:
        keys = {param.name, param.name.replace("_", "-")}
        if isinstance(param, TyperOption):
            keys.update(opt[2:] for opt in param.opts if opt.startswith("--"))
        for key in keys:
            params.setdefault(key, param)
            params.setdefault(key.replace("-", "_"), param)
    return params


Defaults = dict[tuple[Any, str], tuple[Any, Any]]


def command_context(command: Any, argv: list[str], parent: Any, defaults: Defaults) -> Any:
    """``command.make_context(argv)``: Click's own parsing of what the line gives, except that a
    parameter the line leaves out takes the default it took on an earlier line of the batch.

    Working out a default (Typer's conversion of it, the checks) is most of what parsing costs,
    and a ``purchase add`` line gives two of its thirteen parameters. Only a default that is
    fixed is kept (see :func:`_fixed`); anything else, an argument left over included, goes
    through Click as typed. ``defaults`` holds them for the batch, by (command, parameter).
    """
    from typer._click.core import iter_params_for_processing

    if not argv and command.no_args_is_help:  # Click shows the help instead: let it
        return command.make_context(command.name, [], parent=parent)
    ctx = command.context_class(command, info_name=command.name, parent=parent, **command.context_settings)
    with ctx.scope(cleanup=False):
        parser = command.make_parser(ctx)
        opts, rest, order = parser.parse_args(args=list(argv))
        if rest:  # more values than the command takes: Click says so, in its words
            return command.make_context(command.name, list(argv), parent=parent)
        for param in iter_params_for_processing(order, command.get_params(ctx)):
            given = param.name in opts
            known = None if given else defaults.get((command, param.name))
            if known is not None:
                ctx.set_parameter_source(param.name, known[1])
                ctx.params[param.name] = known[0]
                continue
            param.handle_parse_result(ctx, opts, rest)
            if not given and _fixed(param, ctx):
                defaults[(command, param.name)] = (ctx.params[param.name], ctx.get_parameter_source(param.name))
        ctx.args = rest
        ctx._opt_prefixes.update(parser._opt_prefixes)
    return ctx


def _fixed(param: Any, ctx: Any) -> bool:
    """The default ``param`` just took is the one it takes on every line: no callback, no
    environment variable, prompt or default worked out by a function, and a plain value
    (None, a flag, a number, a text or a choice) that no command can change in place."""
    if not param.expose_value or param.callback is not None or param.envvar or getattr(param, "prompt", None):
        return False
    if callable(param.default) or ctx.default_map is not None or ctx.auto_envvar_prefix is not None:
        return False
    value = ctx.params.get(param.name)
    return value is None or isinstance(value, bool | int | float | str | enum.Enum)


@functools.cache
def _renders(command: Any) -> bool:
    """The command prints through the renderer (--format table/json/csv)."""
    return any(
        param.name == "fmt" and getattr(getattr(param, "type_descriptor", None), "annotation", None) is Format
        for param in command.params
    )


def _word(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LineError(f"{key!r} must be text or a number, not {json.dumps(value)}")
    return str(value)


def _result(text: str) -> Any:
    """A command's output: its JSON, else the text it printed (an export), else null."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _usage_error(exc: BaseException) -> tuple[str, int] | None:
    """A misused command (a bad option value, a missing argument): its message and exit 2."""
    from typer._click.exceptions import UsageError

    if isinstance(exc, UsageError):
        return exc.format_message(), exc.exit_code
    return None


def _is_group(command: Any) -> bool:
    return hasattr(command, "get_command") and hasattr(command, "list_commands")


def _leaves(group: Any, prefix: list[str]) -> list[list[str]]:
    ctx = None
    found: list[list[str]] = []
    for word in group.list_commands(ctx):
        sub = group.get_command(ctx, word)
        if sub is None or getattr(sub, "hidden", False):
            continue
        if _is_group(sub):
            found += _leaves(sub, [*prefix, word])
        else:
            found.append([*prefix, word])
    return found


@contextmanager
def _no_stdin() -> Iterator[None]:
    """A command in a batch reads nothing from standard input (it carries the batch) and never
    prompts: a command that would ask is refused as off a terminal."""
    saved = sys.stdin
    sys.stdin = io.StringIO()
    try:
        yield
    finally:
        sys.stdin = saved


def _write(out: IO[str], outcome: Outcome) -> None:
    out.write(json.dumps(outcome.as_json(), ensure_ascii=False) + "\n")
    out.flush()
