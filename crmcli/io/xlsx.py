"""Excel workbooks (.xlsx) as import files, read with openpyxl in read-only mode (streamed).

Cells are read as what they are: a date cell is a date, a number cell a number written
out in full (a phone stored as a number keeps every digit, an amount keeps its
decimals), so the importers validate them like the text of a CSV file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from crmcli.errors import Invalid, MissingExtra
from crmcli.io.reader import CsvOptions, TableSource


def cell_text(value: Any) -> str:
    """A cell's value as the text a CSV file would hold for it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            # Excel keeps a date as a date-time at midnight: it is a day, so a due date means its end
            return value.date().isoformat()
        return value.isoformat(sep=" ")  # no offset: read in the business time zone, as in CSV
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        # The shortest text that reads back as this float: 19.9, not 19.899999999999998578915
        return format(Decimal(repr(value)), "f")
    return str(value)


class XlsxSource(TableSource):
    """The rows of one sheet (the first, or ``options.sheet``); line numbers are Excel's row numbers."""

    def __init__(
        self,
        path: Path,
        options: CsvOptions,
        *,
        fields: Sequence[str],
        required: Sequence[str | tuple[str, ...]],
        label: str | None = None,
    ) -> None:
        super().__init__(path, options, fields=fields, required=required, label=label)
        try:
            self.size = path.stat().st_size
        except OSError as exc:
            raise Invalid(f"cannot read {self.label}: {exc.strerror}") from None
        if self.size == 0:
            raise Invalid(f"{self.label} is empty (0 bytes): expected a workbook with a header row")
        self.encoding = "xlsx"
        with self._book() as book:
            self.sheet = self._sheet(book).title

    def _book(self) -> Any:
        try:
            import openpyxl
        except ImportError:
            raise MissingExtra(f"reading {self.label} needs the excel extra (openpyxl)", subject="excel") from None
        try:
            book = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # zipfile, XML and openpyxl's own errors: a file that is not a workbook
            raise Invalid(f"{self.label} is not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
        return _Closing(book)

    def _sheet(self, book: Any) -> Any:
        wanted = self.options.sheet
        if wanted is None:
            if not book.worksheets:
                raise Invalid(f"{self.label} has no worksheet")
            return book.worksheets[0]
        if wanted not in book.sheetnames:
            raise Invalid(f"{self.label} has no sheet {wanted!r}; its sheets are {', '.join(book.sheetnames)}")
        sheet = book[wanted]
        if not hasattr(sheet, "iter_rows"):
            raise Invalid(f"{self.label}: sheet {wanted!r} is a chart, not a worksheet")
        return sheet

    def records(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[str]]]:
        with self._book() as book:
            sheet = self._sheet(book)
            sheet.reset_dimensions()  # some writers record wrong dimensions; read what is there
            number = 0
            try:
                for number, row in enumerate(sheet.iter_rows(values_only=True), 1):  # noqa: B007
                    yield number, [cell_text(v) for v in row]
            except Exception as exc:  # a damaged sheet: openpyxl's, zipfile's and XML errors
                raise Invalid(f"{self.label} row {number + 1}: cannot read the workbook ({exc})") from None


class _Closing:
    def __init__(self, book: Any) -> None:
        self.book = book

    def __enter__(self) -> Any:
        return self.book

    def __exit__(self, *exc: object) -> None:
        self.book.close()
