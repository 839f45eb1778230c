"""Streaming CSV reading with encoding and delimiter detection and column mapping."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crmcli.errors import Invalid

SNIFF_BYTES = 1 << 20
DELIMITERS = ",;\t|"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class CsvOptions:
    encoding: str | None = None
    delimiter: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, *, encoding: str | None, delimiter: str | None, mapping: Sequence[str]) -> CsvOptions:
        if encoding is not None:
            try:
                encoding = codecs.lookup(encoding).name
            except LookupError:
                raise Invalid(f"unknown encoding {encoding!r}: try utf-8, utf-8-sig or gb18030") from None
        if delimiter is not None:
            delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
            if len(delimiter) != 1:
                raise Invalid(f"the delimiter must be one character, not {delimiter!r}")
        pairs: dict[str, str] = {}
        for item in mapping:
            source, sep, target = item.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise Invalid(f"bad column mapping {item!r}: use CSVCOL=FIELD", fields=("mapping",))
            pairs[source.strip().lower()] = target.strip().lower()
        return cls(encoding=encoding, delimiter=delimiter, mapping=pairs)


def detect_encoding(head: bytes, *, complete: bool = False) -> str:
    """UTF-8 with BOM, UTF-8, or GB18030 (what Chinese Excel saves as "CSV").

    ``head`` is the start of the file, or all of it when ``complete``: only then is a
    character cut short at its end an error rather than the edge of the sample.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def first_undecodable_line(path: Path, encoding: str) -> int | None:
    """The line holding the first bytes that ``encoding`` cannot decode, or None.

    Text is decoded in large chunks, so the CSV reader's position says little about
    where a decoding error is; this second pass, run only after one, finds it.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    with path.open("rb") as raw:
        for number, line in enumerate(raw, 1):  # noqa: B007 - the last number is used below
            try:
                decoder.decode(line)
            except UnicodeDecodeError:
                return number
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return max(number, 1)
    return None


def detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def unneutralise(value: str) -> str:
    """Undo :func:`crmcli.io.writer.neutralise` so an export imports back unchanged."""
    if len(value) > 1 and value[0] == "'" and value[1] in (*FORMULA_START, "'"):
        return value[1:]
    return value


class CsvSource:
    """Rows of a CSV file as dicts of field -> text, with their line numbers."""

    def __init__(
        self,
        path: Path,
        options: CsvOptions,
        *,
        fields: Sequence[str],
        required: Sequence[str | tuple[str, ...]],
    ) -> None:
        self.path = path
        self.options = options
        self.fields = tuple(fields)
        self.required = tuple(required)
        try:
            self.size = path.stat().st_size
            with path.open("rb") as raw:
                head = raw.read(SNIFF_BYTES)
        except OSError as exc:
            raise Invalid(f"cannot read {path}: {exc.strerror}") from None
        if not head.strip(b"\xef\xbb\xbf \r\n\t"):
            raise Invalid(f"{path} is empty: expected a header row and data rows")
        encoding = options.encoding or detect_encoding(head, complete=len(head) < SNIFF_BYTES)
        if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"  # --encoding utf-8 on Excel's "CSV UTF-8": the BOM is not a header cell
        self.encoding = encoding

    def _open(self) -> IO[str]:
        return self.path.open("r", encoding=self.encoding, newline="", errors="strict")

    def header(self, reader: Iterator[list[str]]) -> list[str | None]:
        """The field for each column, or errors naming unknown and missing columns."""
        raw = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if raw is None:
            raise Invalid(f"{self.path} is empty: expected a header row and data rows")
        columns: list[str | None] = []
        unknown, seen = [], set()
        for name in raw:
            key = name.strip().lower()
            key = self.options.mapping.get(key, key)
            if not key:
                columns.append(None)  # an unnamed trailing column, as spreadsheets write
                continue
            if key not in self.fields:
                unknown.append(name.strip())
            if key in seen:
                raise Invalid(f"{self.path}: column {key!r} appears twice")
            seen.add(key)
            columns.append(key)
        if unknown:
            raise Invalid(
                f"{self.path}: unknown column(s) {', '.join(map(repr, unknown))}; "
                f"known columns are {', '.join(self.fields)}",
                subject="columns",
            )
        # A tuple is a choice: one of its columns is enough.
        missing = [
            " or ".join((f,) if isinstance(f, str) else f)
            for f in self.required
            if seen.isdisjoint((f,) if isinstance(f, str) else f)
        ]
        if missing:
            raise Invalid(f"{self.path}: missing required column(s) {', '.join(missing)}")
        return columns

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, {field: text}) for each data row; blank lines are skipped.

        A row's line number is the line it starts on, though a quoted cell may run over
        several. A row with more non-empty cells than the header keeps its known cells
        (for the rejected-rows file) and gets an ``__error__``.
        """
        handle = self._open()
        start = 1
        try:
            first = handle.readline()
            while first and not first.strip():
                first = handle.readline()
            handle.seek(0)
            delimiter = self.options.delimiter or detect_delimiter(first)
            # strict: an unclosed quote is an error, not the rest of the file swallowed into one cell
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            columns = self.header(reader)
            width = len(columns)
            count = 0
            while True:
                start = reader.line_num + 1
                values = next(reader, None)
                if values is None:
                    break
                if not any(v.strip() for v in values):
                    continue
                row = {col: unneutralise(value) for col, value in zip(columns, values, strict=False) if col is not None}
                if len(values) > width and any(v.strip() for v in values[width:]):
                    row["__error__"] = f"{len(values)} cells but the header has {width}"
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(handle.buffer.tell() if hasattr(handle, "buffer") else 0)
                yield start, row
            if count == 0:
                raise Invalid(f"{self.path} has a header but no data rows")
        except UnicodeDecodeError:
            line = first_undecodable_line(self.path, self.encoding) or start
            raise Invalid(f"{self.path} line {line}: not valid {self.encoding}", subject="encoding") from None
        except csv.Error as exc:
            hint = " (a quoted cell is never closed)" if "unexpected end of data" in str(exc) else ""
            raise Invalid(f"{self.path} line {start}: {exc}{hint}") from None
        finally:
            handle.close()
