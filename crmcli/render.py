"""The one renderer: records and reports to a Rich table, JSON or CSV.

Data goes to stdout; messages and warnings go to stderr. Values are turned into
their wire form in one place: money as decimal strings, times as ISO 8601 with
the business time zone's offset.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import IO, Any
from zoneinfo import ZoneInfo

BAR_WIDTH = 30


def bar(value: float, peak: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighths of a character, scaled so ``peak`` fills ``width``."""
    if peak <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / peak * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")


def shade(value: float, peak: float) -> str:
    """A background from white (nothing) to deep blue (the peak), with text that stays readable."""
    if peak <= 0:
        return ""
    f = max(0.0, min(1.0, value / peak))
    red, green = round(255 - 205 * f), round(255 - 155 * f)
    return f"{'white' if f > 0.6 else 'black'} on rgb({red},{green},255)"


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


Record = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    numeric: bool = False
    bar: bool = False  # in tables, draw a bar proportional to the column's largest value
    heat: bool = False  # in tables, shade the cell by its value against the largest of all heat cells

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


@dataclass
class Output:
    """Where a command's results go, in the format the user chose."""

    format: Format = Format.table
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    stdout: IO[str] | None = None
    stderr: IO[str] | None = None

    @property
    def out(self) -> IO[str]:
        return self.stdout or sys.stdout

    @property
    def err(self) -> IO[str]:
        return self.stderr or sys.stderr

    # --- wire values ---------------------------------------------------------

    def wire(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(self.tz).isoformat(timespec="seconds")
        if isinstance(value, date):  # a calendar day (a forecast): no time, no offset
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, Mapping):
            return {k: self.wire(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.wire(v) for v in value]
        return value

    def _cell(self, value: Any, *, list_separator: str = ", ") -> str:
        value = self.wire(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return list_separator.join(str(v) for v in value)
        return str(value)

    # --- sinks ---------------------------------------------------------------

    def message(self, text: str) -> None:
        print(text, file=self.err)

    def new_id(self, value: Any) -> None:
        print(value, file=self.out)

    def rows(
        self,
        rows: Iterable[Record],
        columns: Sequence[Column] | None = None,
        *,
        title: str | None = None,
        empty: str = "Nothing to show.",
    ) -> None:
        rows = list(rows)
        if columns is None:
            columns = [Column(k) for k in rows[0]] if rows else []
        if self.format is Format.json:
            json.dump(self.wire(rows), self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
        elif self.format is Format.csv:
            writer = csv.writer(self.out, lineterminator="\n")
            writer.writerow([c.key for c in columns])
            for row in rows:
                # lists as "a;b", the way imports read tags
                writer.writerow([self._cell(row.get(c.key), list_separator=";") for c in columns])
        elif not rows:
            self.message(empty)
        else:
            self._print(self._table(rows, columns, title))

    def record(
        self,
        record: Record,
        *,
        title: str | None = None,
        tables: Mapping[str, Sequence[Column]] | None = None,
        csv_rows: str | None = None,
    ) -> None:
        """One object: a JSON object; in CSV the ``csv_rows`` list, else one row of the
        scalar fields; in a table, the scalars then each list as its own table (with
        the columns in ``tables`` where given)."""
        tables = tables or {}
        if self.format is Format.json:
            json.dump(self.wire(record), self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
            return
        scalars = {k: v for k, v in record.items() if not isinstance(v, list | dict)}
        if self.format is Format.csv:
            if csv_rows is not None:
                self.rows(record[csv_rows], tables.get(csv_rows))
            else:
                self.rows([scalars], [Column(k) for k in scalars])
            return
        from rich.table import Table
        from rich.text import Text

        grid = Table(title=title, show_header=False, box=None, title_justify="left")
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in scalars.items():
            grid.add_row(key.replace("_", " "), Text(self._cell(value)))
        for key, value in record.items():
            if isinstance(value, dict):
                pairs = ", ".join(f"{k.replace('_', ' ')}: {self._cell(v)}" for k, v in value.items())
                grid.add_row(key.replace("_", " "), Text(pairs))
        self._print(grid)
        for key, value in record.items():
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                columns = tables.get(key) or [Column(k) for k in value[0]]
                self._print(self._table(value, columns, key.replace("_", " ")))
            elif isinstance(value, list):
                self._print(Text.assemble((key.replace("_", " "), "bold"), f": {self._cell(value) or '-'}"))

    def tree(self, root: Record, *, children: str, label: Callable[[Record], str]) -> None:
        """A nested record: a Rich tree, nested JSON, or CSV rows with depth and parent."""
        if self.format is Format.json:
            self.record(root)
            return
        if self.format is Format.csv:
            rows: list[dict[str, Any]] = []

            def flatten(node: Record, depth: int, parent: Any) -> None:
                rows.append({"depth": depth, "parent": parent, **{k: v for k, v in node.items() if k != children}})
                for child in node[children]:
                    flatten(child, depth + 1, node.get("id"))

            flatten(root, 0, None)
            self.rows(rows)
            return
        from rich.text import Text
        from rich.tree import Tree

        def grow(branch: Any, node: Record) -> None:
            for child in node[children]:
                grow(branch.add(Text(label(child))), child)

        top = Tree(Text(label(root)))
        grow(top, root)
        self._print(top)

    # --- tables ---------------------------------------------------------------

    def _table(self, rows: Sequence[Record], columns: Sequence[Column], title: str | None) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, title_justify="left", header_style="bold")
        for column in columns:
            # fold, never truncate: a cell cut to "…" would lose data a user came for
            table.add_column(column.title, justify="right" if column.numeric else "left", overflow="fold")
            if column.bar:
                table.add_column("", no_wrap=True, style="cyan")
        peaks = {c.key: max((float(r.get(c.key) or 0) for r in rows), default=0.0) for c in columns if c.bar}
        hottest = max((float(r.get(c.key) or 0) for r in rows for c in columns if c.heat), default=0.0)
        for row in rows:
            cells: list[Any] = []
            for column in columns:
                value = row.get(column.key)
                style = shade(float(value or 0), hottest) if column.heat and value is not None else ""
                cells.append(Text(self._cell(value), style=style))
                if column.bar:
                    cells.append(Text(bar(float(row.get(column.key) or 0), peaks[column.key])))
            table.add_row(*cells)
        return table

    def _print(self, renderable: Any) -> None:
        import shutil

        from rich.console import Console

        # Off a terminal (a pipe, cron mail) Rich would assume 80 columns; use COLUMNS or a wide page.
        width = None if self.out.isatty() else shutil.get_terminal_size((160, 24)).columns
        Console(file=self.out, highlight=False, soft_wrap=False, width=width).print(renderable)
