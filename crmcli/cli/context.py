"""Per-invocation state: global options, and the config and database opened lazily."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from crmcli.render import Format, Output, Shape

if TYPE_CHECKING:
    from sqlmodel import Session

    from crmcli.config import Config
    from crmcli.db import Database
    from crmcli.io.writer import Target
    from crmcli.models import Customer


@dataclass
class Runtime:
    db_target: str | None = None
    config_path: str | None = None
    debug: bool = False
    command: Any = None  # the Typer command being run, whose flags an error's hint may name
    command_line: str = "crmcli"  # the same, as the audit log records it
    number_format: str | None = None  # --number-format / --decimal-comma over the config's number_format
    date_order: str | None = None  # --date-order over the config's date_order
    shape: Shape | None = None  # a listing's --sort, --offset, --limit and --fields
    paged: bool = True  # --no-pager turns it off
    color: bool = True  # --no-color (NO_COLOR is honoured as well)
    _config: Config | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)
    _progress: FileProgress | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from crmcli.config import load_config

            config = load_config(self.config_path)
            overrides = {"number_format": self.number_format, "date_order": self.date_order}
            self._config = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        return self._config

    def use_decimal_comma(self, flag: bool) -> None:
        """A command's --decimal-comma: read amounts the European way (1.234,50)."""
        if flag:
            self.number_format = "decimal_comma"
            if self._config is not None:
                self._config = self._config.model_copy(update={"number_format": "decimal_comma"})

    def database(self, *, migrate: bool = True) -> Database:
        if self._db is None:
            from crmcli.cli.process import work_begins
            from crmcli.config import database_target
            from crmcli.db import Database

            config = self.config
            work_begins()
            self._db = Database(
                database_target(self.db_target, config),
                migrate=migrate,
                lock_timeout=config.lock_timeout_seconds,
                on_wait=say_waiting,
                backups_kept=config.backups.keep,
            )
            self._db.audit_command = self.command_line
        return self._db

    @property
    def db(self) -> Database:
        return self.database()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        with self.db.session(write=write) as session:
            yield session

    def output(self, fmt: Format | str = Format.table) -> Output:
        from zoneinfo import ZoneInfo

        config = self.config
        return Output(
            format=Format(fmt),
            tz=ZoneInfo(config.timezone),
            shape=self.shape,
            currency=config.currency.code,
            color=self.color,
            pager=self.paged,
        )

    def when(self, text: str | None, *, end_of_day: bool = False, happened: str | None = None) -> datetime | None:
        """Parse a user's date or time in the business time zone.

        ``happened`` names the option of something that has happened (a sale, a payment):
        such a time more than a day ahead is refused.
        """
        if text is None:
            return None
        from crmcli.values import check_happened, parse_when

        moment = parse_when(text, self.config.tz, end_of_day=end_of_day, date_order=self.config.date_order)
        return check_happened(moment, happened, tz=self.config.tz) if happened else moment

    def amount(self, text: str, *, what: str = "amount") -> int:
        """An amount as typed, in minor units, read with the configured number format."""
        from crmcli.values import parse_money

        currency = self.config.currency
        return parse_money(
            text, currency.minor_digits, what=what, decimal_comma=self.config.decimal_comma, currency=currency.code
        )

    def customer(self, session: Session, text: str) -> Customer:
        """The customer a CUSTOMER argument names (crmcli.services.identify: one rule everywhere)."""
        from crmcli.services.identify import find_customer

        return find_customer(session, text, self.config.default_phone_region)

    def target(self, path: Path | None, *, force: bool = False, reading: Path | None = None) -> Target | None:
        """A file a command writes: never the database (nor its -wal/-shm) nor the file it reads."""
        if path is None:
            return None
        from crmcli.io.writer import Target, protected_database_files

        protected = protected_database_files(self.db.path)
        if reading is not None and str(reading) != "-":
            protected += (reading,)
        return Target(path, force=force, protected=protected)

    def progress(self, path: Path) -> FileProgress | None:
        """A progress bar over a file's bytes, on a terminal only (never in a pipe or cron)."""
        import sys

        if not is_interactive(sys.stderr):
            return None
        try:
            total = path.stat().st_size
        except OSError:
            return None
        self._progress = FileProgress(total, f"Reading {path.name}")
        return self._progress

    def import_file(
        self,
        importer: Callable[..., dict[str, Any]],
        file: Path,
        *,
        encoding: str | None,
        delimiter: str | None,
        sheet: str | None,
        mapping: list[str] | None,
        dry_run: bool,
        skip_invalid: Path | None,
        force: bool,
        fmt: Format | str,
        **extra: Any,
    ) -> None:
        """What every ``NOUN import FILE`` command does around its importer: the file's reading
        options, the rejected-rows file (never the file read nor the database), a progress bar,
        and the summary. ``extra`` goes to the importer as it is (``on_duplicate``, ``warn``)."""
        from crmcli.io.reader import CsvOptions

        options = CsvOptions.build(encoding=encoding, delimiter=delimiter, mapping=mapping or [], sheet=sheet)
        summary = importer(
            db=self.db,
            config=self.config,
            path=file,
            options=options,
            dry_run=dry_run,
            reject_file=self.target(skip_invalid, force=force, reading=file),
            progress=self.progress(file),
            **extra,
        )
        self.output(fmt).record(summary, title="Dry run: nothing written" if dry_run else "Imported")

    def export_file(
        self, exporter: Callable[..., int], what: str, out_file: Path | None, *, fmt: str, no_bom: bool, force: bool
    ) -> None:
        """What every ``NOUN export`` command does around its exporter: the target file (standard
        output when none), and the count written, said only when it is a file."""
        count = exporter(
            db=self.db, config=self.config, path=self.target(out_file, force=force), fmt=fmt, bom=not no_bom
        )
        if out_file is not None:
            self.output().message(f"Exported {count} {what} to {out_file}")

    def count_progress(self, label: str) -> Callable[[int, int], None] | None:
        """A progress bar over a count known as work starts, on a terminal only."""
        import sys

        if not is_interactive(sys.stderr):
            return None

        def update(done: int, total: int) -> None:
            if self._progress is None:
                self._progress = FileProgress(total, label)
            self._progress(done)

        return update

    def fork(self) -> Runtime:
        """A fresh state for one command of a batch: the same config and open database (loaded
        once), none of what an earlier command changed (its --decimal-comma, its name)."""
        return Runtime(
            db_target=self.db_target,
            config_path=self.config_path,
            debug=self.debug,
            number_format=self.number_format,
            date_order=self.date_order,
            _config=self.config,
            _db=self.db,
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._db is not None:
            self._db.close()


class FileProgress:
    """A Rich progress bar on stderr, started on the first update."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def command_line(ctx: typer.Context) -> str:
    """The running command for the audit log: its path and the options given, no values
    (values may be personal or secret; what they changed is recorded, masked)."""
    given = [
        name if isinstance(value, bool) else f"{name}=…"
        for name, value in ctx.params.items()
        if value not in (None, False, (), [])
    ]
    return " ".join([ctx.command_path, *given])


def runtime(ctx: typer.Context) -> Runtime:
    """The invocation's state; called from a command, it also notes which command runs."""
    root = ctx.find_root()
    if not isinstance(root.obj, Runtime):
        root.obj = Runtime(debug=bool(os.environ.get("CRMCLI_DEBUG")))
    if ctx is not root:
        root.obj.command = ctx.command
        root.obj.command_line = command_line(ctx)
        if root.obj._db is not None:
            root.obj._db.audit_command = root.obj.command_line
    return root.obj


def say_waiting() -> None:
    """Called (from a timer thread) when a write has waited a second for another process's lock."""
    import sys

    sys.stderr.write("waiting for another crmcli to finish writing…\n")
    sys.stderr.flush()


def is_interactive(stream: Any = None) -> bool:
    import sys

    stream = stream or sys.stdin
    return bool(getattr(stream, "isatty", lambda: False)())
