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
                raise Invalid(f"bad --map {item!r}: use CSVCOL=FIELD")
            pairs[source.strip().lower()] = target.strip().lower()
        return cls(encoding=encoding, delimiter=delimiter, mapping=pairs)


def detect_encoding(head: bytes) -> str:
    """UTF-8 with BOM, UTF-8, or GB18030 (what Chinese Excel saves as "CSV")."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if exc.start < len(head) - 4:
            return "gb18030"
    return "utf-8"


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
        required: Sequence[str],
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
        self.encoding = options.encoding or detect_encoding(head)

    def _open(self) -> IO[str]:
        return self.path.open("r", encoding=self.encoding, newline="", errors="strict")

    def header(self, reader: Iterator[list[str]]) -> list[str | None]:
        """The field for each column, or errors naming unknown and missing columns."""
        try:
            raw = next(reader)
        except StopIteration:
            raise Invalid(f"{self.path} is empty: expected a header row and data rows") from None
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
                f"known columns are {', '.join(self.fields)} (rename with --map CSVCOL=FIELD)"
            )
        missing = [f for f in self.required if f not in seen]
        if missing:
            raise Invalid(f"{self.path}: missing required column(s) {', '.join(missing)}")
        return columns

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, {field: text}) for each data row; blank lines are skipped."""
        handle = self._open()
        line = 1
        try:
            first = handle.readline()
            handle.seek(0)
            delimiter = self.options.delimiter or detect_delimiter(first)
            # strict: an unclosed quote is an error, not the rest of the file swallowed into one cell
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            columns = self.header(reader)
            count = 0
            for values in reader:
                line = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                if len(values) > len(columns) and any(v.strip() for v in values[len(columns) :]):
                    count += 1
                    yield line, {"__error__": f"{len(values)} cells but the header has {len(columns)}"}
                    continue
                row = {col: unneutralise(value) for col, value in zip(columns, values, strict=False) if col is not None}
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(handle.buffer.tell() if hasattr(handle, "buffer") else 0)
                yield line, row
            if count == 0:
                raise Invalid(f"{self.path} has a header but no data rows")
        except UnicodeDecodeError:
            raise Invalid(
                f"{self.path} line {line + 1}: not valid {self.encoding}; pass --encoding "
                "(for example gb18030 or utf-8)"
            ) from None
        except csv.Error as exc:
            raise Invalid(f"{self.path} line {line + 1}: {exc}") from None
        finally:
            handle.close()
