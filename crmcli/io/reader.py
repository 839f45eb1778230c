"""Reading import files: CSV with encoding and delimiter detection, workbooks, stdin, column mapping.

Every source yields the same thing, ``(line number, {field: text})``, so the importers
do not care whether the rows came from a CSV file, an ``.xlsx`` workbook or a pipe.
"""

from __future__ import annotations

import codecs
import csv
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crmcli.errors import Invalid

SNIFF_BYTES = 1 << 20
DETECT_BYTES = 256 << 10  # what the encoding detector looks at: plenty, and fast
DELIMITERS = ",;\t|"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The legacy encodings a shop's files come in: Chinese Excel (GB18030 covers GBK and GB2312),
# Taiwan and Hong Kong (Big5), Japan (Shift-JIS) and Western Windows (cp1252). UTF-8 and
# UTF-16 are recognised by their bytes before any of these is considered.
LEGACY_ENCODINGS = ("gb18030", "big5", "shift_jis", "cp1252")
# Codecs Python knows that are not the encoding of a text file.
NOT_FILE_ENCODINGS = frozenset({"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape"})
# The rejected-rows file's own columns: ignored, so that file imports back once fixed.
REJECT_COLUMNS = ("line", "error")
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"
STDIN = "-"


@dataclass(frozen=True)
class CsvOptions:
    encoding: str | None = None
    delimiter: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)  # file column -> field; "" ignores the column
    sheet: str | None = None

    @classmethod
    def build(
        cls, *, encoding: str | None, delimiter: str | None, mapping: Sequence[str], sheet: str | None = None
    ) -> CsvOptions:
        if encoding is not None:
            encoding = text_encoding(encoding)
        if delimiter is not None:
            delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
            if len(delimiter) != 1:
                raise Invalid(f"the delimiter must be one character, not {delimiter!r}")
            if delimiter in '"\r\n':
                raise Invalid("the delimiter cannot be a quote or a line break")
        pairs: dict[str, str] = {}
        for item in mapping:
            source, sep, target = item.partition("=")
            if not sep or not source.strip():
                raise Invalid(f"bad column mapping {item!r}: use CSVCOL=FIELD", fields=("mapping",))
            pairs[source.strip().lower()] = target.strip().lower()
        return cls(encoding=encoding, delimiter=delimiter, mapping=pairs, sheet=sheet)


def text_encoding(name: str) -> str:
    """The codec name for ``--encoding``, refusing codecs that are not text encodings (rot13, zlib, uu)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        raise Invalid(f"unknown encoding {name!r}: try utf-8, utf-16, gb18030, big5, shift_jis or cp1252") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in NOT_FILE_ENCODINGS:
        raise Invalid(f"{name!r} is not a text encoding: try utf-8, gb18030 or cp1252")
    return info.name


def _decodes(sample: bytes, encoding: str, *, complete: bool) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _common_share(text: str, encoding: str) -> float:
    """The share of the non-ASCII characters that are everyday ones in ``encoding``'s script.

    A misread file decodes to characters that exist but nobody writes: GBK bytes read as
    cp1252 give runs of symbols and accents (``¿Í»§``); cp1252 read as GB18030 gives rare
    ideographs glued to Latin letters (``G黱ter``). The "everyday" sets are the encodings'
    own frequent ranges: GB2312 level 1, Big5's frequent characters, JIS level 1 with
    kana, and Latin letters standing alone or in pairs.
    """
    common = total = 0
    run = 0
    for index, ch in enumerate(text):
        if ch < "\x80":
            run = 0
            continue
        total += 1
        run += 1
        common += _everyday(ch, encoding, text, index, run)
    return common / total if total else 1.0


def _everyday(ch: str, encoding: str, text: str, index: int, run: int) -> bool:
    if encoding == "cp1252":
        # Accented letters come alone or in pairs inside words (Müller, Núñez), not in runs.
        nxt = text[index + 1 : index + 2]
        return ch.isalpha() and run <= 2 and not (nxt >= "\x80" and run == 2) or ch in "€‘’“”–—«»°"
    try:
        raw = ch.encode(encoding)
    except UnicodeEncodeError:
        return False
    if encoding == "shift_jis" and "\uff61" <= ch <= "\uff9f":
        return True  # half-width katakana, as older Japanese systems write names
    if len(raw) != 2:
        return False
    lead, _ = raw
    if encoding == "gb18030":
        return 0xB0 <= lead <= 0xD7 or lead in (0xA1, 0xA3)  # level-1 hanzi, punctuation, full-width forms
    if encoding == "big5":
        return 0xA4 <= lead <= 0xC6 or lead == 0xA1  # frequently used hanzi, punctuation
    if encoding == "shift_jis":
        kana = "\u3040" <= ch <= "\u30ff"
        return kana or 0x88 <= lead <= 0x98 or lead == 0x81  # kana, level-1 kanji, punctuation
    return False


def detect_encoding(head: bytes, *, complete: bool = False, label: str = "the file") -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or one of :data:`LEGACY_ENCODINGS`.

    ``head`` is the start of the file, or all of it when ``complete``: only then is a
    character cut short at its end an error rather than the edge of the sample. Among the
    legacy encodings that decode the sample, charset-normalizer drops those that read as
    noise; of the rest, one must be clearly the most plausible, or the file is refused with
    the encodings that fit and how to choose one.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _decodes(head, "utf-8", complete=complete):
        return "utf-8"
    sample = head[:DETECT_BYTES]
    whole = complete and len(sample) == len(head)
    if not whole and b"\n" in sample:
        sample, whole = sample[: sample.rindex(b"\n") + 1], True
    fits = [enc for enc in LEGACY_ENCODINGS if _decodes(sample, enc, complete=whole)]
    if not fits:
        raise Invalid(
            f"{label} is not UTF-8 and no encoding crmcli knows reads it ({', '.join(LEGACY_ENCODINGS)})",
            subject="encoding",
        )
    plausible = fits
    if len(fits) > 1:
        from charset_normalizer import from_bytes

        readable = {codecs.lookup(m.encoding).name for m in from_bytes(sample, cp_isolation=fits)}
        plausible = [enc for enc in fits if codecs.lookup(enc).name in readable]
    # Most plausible first; on a tie, the order of LEGACY_ENCODINGS
    ranked = [(_common_share(sample.decode(enc, "replace"), enc), enc) for enc in plausible]
    ranked.sort(key=lambda r: -r[0])
    # Even a single candidate must read as text: cp1252 decodes almost any bytes (Russian cp1251 too).
    if ranked and ranked[0][0] >= 0.8 and (len(ranked) == 1 or ranked[1][0] <= ranked[0][0] - 0.3):
        return ranked[0][1]
    if len(fits) == 1:
        raise Invalid(f"{label} is not UTF-8 and reads as {fits[0]} only as gibberish", subject="encoding")
    likely = f"; most likely {ranked[0][1]}" if ranked and ranked[0][0] >= 0.5 else ""
    raise Invalid(f"{label}: the encoding is unclear: it reads as {' or '.join(fits)}{likely}", subject="encoding")


def first_undecodable_line(path: Path, encoding: str) -> int | None:
    """The line holding the first bytes that ``encoding`` cannot decode, or None.

    Text is decoded in large chunks, so the CSV reader's position says little about
    where a decoding error is; this second pass, run only after one, finds it.
    """
    if codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        return _first_undecodable_wide_line(path, encoding)
    decoder = codecs.getincrementaldecoder(encoding)()
    number = 0
    with path.open("rb") as raw:
        for number, line in enumerate(raw, 1):  # noqa: B007 - the last number is used below
            try:
                decoder.decode(line)
            except UnicodeError:
                return number
        try:
            decoder.decode(b"", final=True)
        except UnicodeError:
            return max(number, 1)
    return None


def _first_undecodable_wide_line(path: Path, encoding: str) -> int | None:
    """As :func:`first_undecodable_line` for UTF-16 and UTF-32, where a newline is not one byte.

    Chunks are decoded whole; the one that fails is decoded again from the state before
    it, a code unit at a time, counting the newlines up to the bad bytes.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    with path.open("rb") as raw:
        while True:
            chunk = raw.read(1 << 16)
            state = decoder.getstate()
            try:
                lines += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeError:
                again = codecs.getincrementaldecoder(encoding)()
                again.setstate(state)
                try:
                    for start in range(0, len(chunk), 2):
                        lines += again.decode(chunk[start : start + 2]).count("\n")
                    again.decode(b"", final=True)
                except UnicodeError:
                    pass
                return lines
            if not chunk:
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


class TableSource:
    """Rows of a file with a header row, as dicts of field -> text, with their line numbers.

    Subclasses yield the raw cells of each line with :meth:`records`; this class maps the
    header to fields and checks rows. ``label`` names the file in messages.
    """

    def __init__(
        self,
        path: Path,
        options: CsvOptions,
        *,
        fields: Sequence[str],
        required: Sequence[str | tuple[str, ...]],
        label: str | None,
    ) -> None:
        self.path = path
        self.label = label or str(path)
        self.options = options
        self.fields = tuple(fields)
        self.required = tuple(required)
        self.spooled: Path | None = None  # the private copy of standard input, removed by close()

    def records(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[str]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Remove what the source made for itself (the copy of standard input)."""
        if self.spooled is not None:
            self.spooled.unlink(missing_ok=True)

    def header(self, raw: list[str]) -> list[str | None]:
        """The field for each column, or errors naming unknown and missing columns."""
        columns: list[str | None] = []
        unknown, seen = [], set()
        for name in raw:
            key = name.strip().lower()
            key = self.options.mapping.get(key, key)
            if not key or (key in REJECT_COLUMNS and key not in self.fields):
                columns.append(None)  # unnamed, mapped away, or the rejected-rows file's line/error
                continue
            if key not in self.fields:
                unknown.append(name.strip())
            if key in seen:
                raise Invalid(f"{self.label}: column {key!r} appears twice")
            seen.add(key)
            columns.append(key)
        if unknown:
            shown = ", ".join(repr(u[:40]) for u in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
            raise Invalid(
                f"{self.label}: unknown column(s) {shown}; known columns are {', '.join(self.fields)}",
                subject="columns",
            )
        # A tuple is a choice: one of its columns is enough.
        choices = [(f,) if isinstance(f, str) else f for f in self.required]
        missing = [" or ".join(choice) for choice in choices if seen.isdisjoint(choice)]
        if missing:
            raise Invalid(f"{self.label}: missing required column(s) {', '.join(missing)}")
        return columns

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, {field: text}) for each data row; blank lines are skipped.

        A file with a header and no rows is an empty batch. A row with more non-empty cells
        than the header keeps its known cells (for the rejected-rows file) and gets an
        ``__error__``; so does a row with a NUL character, which no database stores as text.
        """
        columns: list[str | None] | None = None
        width = 0
        for line, values in self.records(progress):
            if not any(v.strip() for v in values):
                continue
            if columns is None:
                if any("\x00" in v for v in values):
                    raise Invalid(f"{self.label} line {line}: the header holds a NUL character: is this a text file?")
                columns = self.header(values)
                width = len(columns)
                continue
            # (unneutralise only a cell that starts with a quote: most cells of a big file don't)
            row = {
                col: unneutralise(value) if value[:1] == "'" else value
                for col, value in zip(columns, values, strict=False)
                if col is not None
            }
            if len(values) > width and any(v.strip() for v in values[width:]):
                row["__error__"] = f"{len(values)} cells but the header has {width}"
            elif "\x00" in "".join(values):
                row = {k: v.replace("\x00", "") for k, v in row.items()}
                row["__error__"] = "a cell holds a NUL character"
            yield line, row
        if columns is None:
            raise Invalid(f"{self.label} has no header row: expected a header row and data rows")


class CsvSource(TableSource):
    """A delimited text file in a detected or given encoding."""

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
            with path.open("rb") as raw:
                head = raw.read(SNIFF_BYTES)
        except OSError as exc:
            raise Invalid(f"cannot read {self.label}: {exc.strerror}") from None
        if not head:
            raise Invalid(f"{self.label} is empty (0 bytes): expected a header row")
        if not head.strip(b"\xef\xbb\xbf\xff\xfe \r\n\t\x00"):
            raise Invalid(f"{self.label} is empty (only blank lines): expected a header row")
        encoding = options.encoding or detect_encoding(head, complete=len(head) < SNIFF_BYTES, label=self.label)
        if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"  # --encoding utf-8 on Excel's "CSV UTF-8": the BOM is not a header cell
        self.encoding = encoding

    def _open(self) -> IO[str]:
        return self.path.open("r", encoding=self.encoding, newline="", errors="strict")

    def records(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[str]]]:
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
            count = 0
            while True:
                start = reader.line_num + 1
                values = next(reader, None)
                if values is None:
                    break
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress(handle.buffer.tell() if hasattr(handle, "buffer") else 0)
                yield start, values
        except UnicodeError:
            line = first_undecodable_line(self.path, self.encoding) or start
            raise Invalid(f"{self.label} line {line}: not valid {self.encoding}", subject="encoding") from None
        except csv.Error as exc:
            text = str(exc)
            if "field larger than field limit" in text:
                text = f"a cell is longer than {csv.field_size_limit()} characters"
            elif "unexpected end of data" in text:
                text = "a quoted cell is never closed (the file ends inside it)"
            raise Invalid(f"{self.label} line {start}: {text}") from None
        finally:
            handle.close()


def open_source(
    path: Path, options: CsvOptions, *, fields: Sequence[str], required: Sequence[str | tuple[str, ...]]
) -> TableSource:
    """The right reader for ``path``: a workbook by its name or content, else CSV; ``-`` is stdin.

    Standard input is copied to a private temporary file first, as the import reads the
    file twice (to detect its encoding, and for the rejected rows); memory stays flat.
    """
    label = None
    spooled: Path | None = None
    if str(path) == STDIN:
        spooled, label = _spool_stdin(), "standard input"
        if _starts_like_a_workbook(spooled, label):
            spooled = spooled.rename(spooled.with_suffix(".xlsx"))  # openpyxl goes by the name
        path = spooled
    try:
        suffix = path.suffix.lower()
        if suffix == ".xls":
            raise Invalid(f"{path}: old .xls workbooks are not read; save it as .xlsx or CSV")
        if suffix in WORKBOOK_SUFFIXES or options.sheet is not None or _starts_like_a_workbook(path, label):
            from crmcli.io.xlsx import XlsxSource

            source: TableSource = XlsxSource(path, options, fields=fields, required=required, label=label)
        else:
            source = CsvSource(path, options, fields=fields, required=required, label=label)
    except BaseException:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
        raise
    source.spooled = spooled
    return source


def _starts_like_a_workbook(path: Path, label: str | None) -> bool:
    try:
        with path.open("rb") as raw:
            return raw.read(4) == ZIP_MAGIC
    except OSError as exc:
        raise Invalid(f"cannot read {label or path}: {exc.strerror}") from None


def _spool_stdin() -> Path:
    fd, name = tempfile.mkstemp(prefix="crmcli-stdin-")  # mode 0600
    with os.fdopen(fd, "wb") as out:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            shutil.copyfileobj(stream, out)
        else:  # a text stream without bytes underneath (some test harnesses)
            out.write(sys.stdin.read().encode("utf-8"))
    return Path(name)
