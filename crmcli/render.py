"""The one renderer: records and reports to a Rich table, JSON, NDJSON, CSV or TSV.

Data goes to stdout; messages and warnings go to stderr. Values are turned into
their wire form in one place: money as decimal strings, times as ISO 8601 with
the business time zone's offset. Tables are for people: dates as dates in the
business time zone, long text cut with an ellipsis, and the least important
columns left out when the terminal is narrow; every other format keeps every value.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import IO, Any
from zoneinfo import ZoneInfo

from crmcli.errors import Invalid

BAR_WIDTH = 30
TEXT_MIN_WIDTH = 8  # a text column is cut no narrower than this before a column is dropped instead
BAR_MIN_WIDTH = 6
GAP = 2  # spaces between table columns


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
    ndjson = "ndjson"
    csv = "csv"
    tsv = "tsv"

    @property
    def structured(self) -> bool:
        """JSON or NDJSON: nested values kept as they are."""
        return self in (Format.json, Format.ndjson)


Record = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    numeric: bool = False
    bar: bool = False  # in tables, draw a bar proportional to the column's largest value
    heat: bool = False  # in tables, shade the cell by its value against the largest of all heat cells
    time: bool = False  # in tables, a timestamp shows its time of day too (else the date only)
    drop: int = 0  # when a table is too wide, columns with the highest drop go first (0: last of all)
    whole: bool = False  # never cut with an ellipsis (a code someone types back)

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


@dataclass(frozen=True)
class Shape:
    """What a script asked of a row set: which fields in which order, the order of the rows,
    and which slice of them."""

    fields: tuple[str, ...] | None = None
    sort: str | None = None
    offset: int = 0
    limit: int | None = None

    @property
    def reorders(self) -> bool:
        return bool(self.sort or self.offset or self.limit is not None)

    def apply(self, rows: Sequence[Record], columns: Sequence[Column]) -> tuple[list[Record], list[Column]]:
        known = list(dict.fromkeys([*(c.key for c in columns), *(rows[0].keys() if rows else ())]))
        chosen = list(rows)
        if self.sort:
            key = self.sort.removeprefix("-")
            _check_field(key, known, what="sort field", given="sort")
            chosen = sort_rows(chosen, key, descending=self.sort.startswith("-"))
        end = None if self.limit is None else self.offset + self.limit
        chosen = chosen[self.offset : end]
        if self.fields is None:
            return chosen, list(columns)
        by_key = {c.key: c for c in columns}
        for name in self.fields:
            _check_field(name, known, what="field", given="fields")
        picked = [by_key.get(name, Column(name)) for name in self.fields]
        return [{name: row.get(name) for name in self.fields} for row in chosen], picked


def _check_field(name: str, known: Sequence[str], *, what: str, given: str) -> None:
    if known and name not in known:  # no rows and no declared columns: nothing to check against
        raise Invalid(f"unknown {what} {name!r}: choose from {', '.join(known)}", fields=(given,))


def sort_rows(rows: Sequence[Record], key: str, *, descending: bool = False) -> list[Record]:
    """Rows by one field; empty values last either way, ties kept in their order."""
    present = [r for r in rows if r.get(key) is not None]
    empty = [r for r in rows if r.get(key) is None]

    def sort_key(row: Record) -> Any:
        value = row[key]
        if isinstance(value, str):
            return value.casefold()
        if isinstance(value, list | tuple):
            return [str(v).casefold() for v in value]
        return value

    try:
        present.sort(key=sort_key, reverse=descending)
    except TypeError:  # mixed kinds of value: sort by their text
        present.sort(key=lambda row: str(row[key]).casefold(), reverse=descending)
    return present + empty


def parse_fields(text: str | None) -> tuple[str, ...] | None:
    """``a,b,c`` -> ("a", "b", "c"); None when no fields were asked for."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise Invalid("no field named: give one or more field names separated by commas", fields=("fields",))
    return names


@dataclass
class Output:
    """Where a command's results go, in the format the user chose."""

    format: Format = Format.table
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    stdout: IO[str] | None = None
    stderr: IO[str] | None = None
    shape: Shape | None = None
    currency: str | None = None  # named under tables and beside money in records
    color: bool = True
    pager: bool = True  # a long table on a terminal goes through the pager
    width: int | None = None  # the table width; default the terminal's (COLUMNS)

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

    def _shown(self, value: Any, column: Column | None = None, *, money_unit: bool = False) -> str:
        # a record's lines have room for the time of day; a table column shows it where it says so
        """A value as a person reads it in a table: a date (and a time where it matters) in
        the business time zone, money with its currency where no caption names it."""
        if isinstance(value, datetime):
            local = value.astimezone(self.tz)
            return local.strftime("%Y-%m-%d %H:%M" if column is None or column.time else "%Y-%m-%d")
        if isinstance(value, Decimal) and money_unit and self.currency:
            return f"{value} {self.currency}"
        return self._cell(value)

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
        if self.shape is not None:
            rows, columns = self.shape.apply(rows, columns)
            if self.shape.fields is not None:
                rows = [dict(row) for row in rows]
        if self.format is Format.json:
            json.dump(self.wire(rows), self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
        elif self.format is Format.ndjson:
            for row in rows:
                self.out.write(json.dumps(self.wire(row), ensure_ascii=False) + "\n")
        elif self.format in (Format.csv, Format.tsv):
            self._delimited(rows, columns)
        elif not rows:
            self.message(empty)
        else:
            self._print(self._table(rows, columns, title))

    def _delimited(self, rows: Sequence[Record], columns: Sequence[Column]) -> None:
        """CSV or TSV, with cells a spreadsheet would run as a formula neutralised."""
        from crmcli.io.writer import neutralise

        tsv = self.format is Format.tsv

        def cell(value: Any) -> str:
            # lists as "a;b", the way imports read tags
            text = self._cell(value, list_separator=";")
            if isinstance(value, str | list):  # text typed by someone; numbers and times are ours
                text = neutralise(text)
            if tsv:  # one line per row, tabs only between cells
                text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            return text

        if tsv:
            self.out.write("\t".join(c.key for c in columns) + "\n")
            for row in rows:
                self.out.write("\t".join(cell(row.get(c.key)) for c in columns) + "\n")
            return
        writer = csv.writer(self.out, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow([cell(row.get(c.key)) for c in columns])

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
        the columns in ``tables`` where given).

        Asked for fields, a record with a row set gives those rows (in every format),
        and one without gives those of its fields; a sort or a slice applies to the row set.
        """
        tables = tables or {}
        if self.shape is not None:
            if self.shape.fields is not None:
                if csv_rows is not None:
                    self.rows(record[csv_rows], tables.get(csv_rows))
                else:
                    self.rows([record], [Column(k) for k in record])
                return
            if csv_rows is not None and self.shape.reorders:
                shaped, _ = self.shape.apply(record[csv_rows], tables.get(csv_rows) or [])
                record = {**record, csv_rows: shaped}
        plain = replace(self, shape=None)
        if self.format.structured:
            indent = None if self.format is Format.ndjson else 2
            json.dump(self.wire(record), self.out, ensure_ascii=False, indent=indent)
            self.out.write("\n")
            return
        scalars = {k: v for k, v in record.items() if not isinstance(v, list | dict)}
        if self.format in (Format.csv, Format.tsv):
            if csv_rows is not None:
                plain.rows(record[csv_rows], tables.get(csv_rows))
            else:
                plain.rows([scalars], [Column(k) for k in scalars])
            return
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        grid = Table(title=title, show_header=False, box=None, title_justify="left")
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for key, value in scalars.items():
            grid.add_row(key.replace("_", " "), Text(self._shown(value, money_unit=True)))
        for key, value in record.items():
            if isinstance(value, dict):
                pairs = ", ".join(f"{k.replace('_', ' ')}: {self._shown(v, money_unit=True)}" for k, v in value.items())
                grid.add_row(key.replace("_", " "), Text(pairs))
        parts.append(grid)
        for key, value in record.items():
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                columns = tables.get(key) or [Column(k) for k in value[0]]
                parts.append(self._table(value, columns, key.replace("_", " ")))
            elif isinstance(value, list):
                parts.append(Text.assemble((key.replace("_", " "), "bold"), f": {self._cell(value) or '-'}"))
        self._print(Group(*parts))

    def tree(self, root: Record, *, children: str, label: Callable[[Record], str]) -> None:
        """A nested record: a Rich tree, nested JSON, or CSV rows with depth and parent."""
        if self.format.structured:
            self.record(root)
            return
        if self.format in (Format.csv, Format.tsv):
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

    def _table_width(self) -> int:
        if self.width is not None:
            return self.width
        import shutil

        # Off a terminal (a pipe, cron mail) assume a wide page unless COLUMNS says otherwise.
        fallback = 80 if self.out.isatty() else 160
        return shutil.get_terminal_size((fallback, 24)).columns

    def _table(self, rows: Sequence[Record], columns: Sequence[Column], title: str | None) -> Any:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        peaks = {c.key: max((float(r.get(c.key) or 0) for r in rows), default=0.0) for c in columns if c.bar}
        hottest = max((float(r.get(c.key) or 0) for r in rows for c in columns if c.heat), default=0.0)
        money = any(isinstance(r.get(c.key), Decimal) for r in rows for c in columns)
        # one entry per table column: (column, is the bar beside it, the cells, may they be cut)
        laid: list[tuple[Column, bool, list[str], bool]] = []
        for column in columns:
            text = not column.whole and any(isinstance(r.get(column.key), str | list) for r in rows)
            laid.append((column, False, [self._shown(r.get(column.key), column) for r in rows], text))
            if column.bar:
                bars = [bar(float(r.get(column.key) or 0), peaks[column.key]) for r in rows]
                laid.append((column, True, bars, True))
        widths = fit_columns(laid, self._table_width())
        for i, (column, is_bar, _, cut) in enumerate(laid):
            if is_bar and widths[i] is not None:  # a bar drawn to the room it was given, not cut
                bars = [bar(float(r.get(column.key) or 0), peaks[column.key], widths[i] or 1) for r in rows]
                laid[i] = (column, True, bars, cut)
        caption = f"amounts in {self.currency}" if money and self.currency else None
        table = Table(
            title=title,
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, GAP - 1, 0, 0),  # with the box's one-space rule between columns: GAP
            caption=caption,
            caption_justify="left",
        )
        kept = [(i, entry) for i, entry in enumerate(laid) if widths[i] is not None]
        for i, (column, is_bar, _, _) in kept:
            values = [r.get(column.key) for r in rows if r.get(column.key) is not None]
            numeric = column.numeric or bool(values) and all(_is_number(v) for v in values)
            table.add_column(
                "" if is_bar else column.title,
                justify="right" if numeric and not is_bar else "left",
                width=widths[i],
                no_wrap=True,
                overflow="ellipsis",
                style="cyan" if is_bar else None,
            )
        for n, row in enumerate(rows):
            cells: list[Any] = []
            for _, (column, is_bar, shown, _) in kept:
                value = row.get(column.key)
                heat = column.heat and not is_bar and value is not None
                cells.append(Text(shown[n], style=shade(float(value or 0), hottest) if heat else ""))
            table.add_row(*cells)
        return table

    def _print(self, renderable: Any) -> None:
        from io import StringIO

        from rich.console import Console

        terminal = self.out.isatty()
        color = terminal and self.color and not os.environ.get("NO_COLOR")
        buffer = StringIO()
        Console(
            file=buffer,
            highlight=False,
            emoji=False,  # a ":name:" in a title or header is text (and Rich's emoji table is not loaded)
            soft_wrap=False,
            width=self._table_width(),
            force_terminal=color,
            no_color=not color,
            color_system="auto" if color else None,
        ).print(renderable)
        text = buffer.getvalue()
        if terminal and self.pager and self.format is Format.table and _too_long(text):
            page(text)
        else:
            self.out.write(text)


def fit_columns(laid: Sequence[tuple[Column, bool, Sequence[str], bool]], width: int) -> list[int | None]:
    """The width of each table column so the table fits ``width`` characters without
    wrapping any value: numbers, dates and codes keep their width, text and bars are cut
    (down to a floor), and when even that does not fit, the columns with the highest
    ``drop`` (the rightmost first among equals) are left out. None marks a dropped column."""
    from rich.cells import cell_len

    natural: list[int] = []
    floor: list[int] = []
    for column, is_bar, cells, cut in laid:
        header = 0 if is_bar else cell_len(column.title)
        longest = max((cell_len(c) for c in cells), default=0)
        natural.append(max(header, longest, 1))
        least = BAR_MIN_WIDTH if is_bar else max(TEXT_MIN_WIDTH, min(header, 12))
        floor.append(min(natural[-1], least) if cut else natural[-1])
    alive = list(range(len(laid)))

    def needed(indexes: Sequence[int]) -> int:
        return sum(floor[i] for i in indexes) + GAP * max(0, len(indexes) - 1)

    def whole_width(indexes: Sequence[int]) -> int:
        return sum(natural[i] for i in indexes) + GAP * max(0, len(indexes) - 1)

    def leave_out(i: int) -> None:
        alive.remove(i)
        if not laid[i][1] and i + 1 < len(laid) and laid[i + 1][1] and i + 1 in alive:
            alive.remove(i + 1)  # a bar goes with its numbers

    # the order to drop in: highest drop first, then from the right
    order = sorted(alive, key=lambda i: (laid[i][0].drop, i), reverse=True)
    # first the optional columns (drop > 0), until the rest fits uncut ...
    for i in order:
        if whole_width(alive) <= width:
            break
        if laid[i][0].drop > 0 and not laid[i][1] and i in alive:
            leave_out(i)
    # ... then, if even cut text does not fit, any column, from the right
    for i in order:
        if needed(alive) <= width or len(alive) == 1:
            break
        if i in alive and not laid[i][1]:
            leave_out(i)
    sizes = {i: floor[i] for i in alive}
    spare = width - needed(alive)
    # share what is left among the cut columns, a character at a time, shortest need first
    while spare > 0:
        wanting = [i for i in alive if sizes[i] < natural[i]]
        if not wanting:
            break
        for i in sorted(wanting, key=lambda i: natural[i] - sizes[i]):
            if spare <= 0:
                break
            sizes[i] += 1
            spare -= 1
    return [sizes.get(i) for i in range(len(laid))]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _too_long(text: str) -> bool:
    import shutil

    return text.count("\n") > shutil.get_terminal_size((80, 24)).lines - 1


def page(text: str) -> None:
    """Show text through the user's pager (CRMCLI_PAGER, then PAGER, else less), as pydoc does."""
    import subprocess

    command = os.environ.get("CRMCLI_PAGER") or os.environ.get("PAGER") or "less -FRX"
    try:
        pager = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, encoding="utf-8", errors="replace")
    except OSError:
        sys.stdout.write(text)
        return
    assert pager.stdin is not None
    try:
        pager.stdin.write(text)
        pager.stdin.close()
    except BrokenPipeError:  # the reader quit the pager early
        pass
    except KeyboardInterrupt:
        pass
    pager.wait()
