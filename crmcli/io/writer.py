"""Streaming CSV and JSON writers, with the spreadsheet formula-injection guard."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from crmcli.errors import Invalid
from crmcli.io.reader import FORMULA_START


def neutralise(value: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    if value and (value[0] in FORMULA_START or (value[0] == "'" and value[1:2] in (*FORMULA_START, "'"))):
        return "'" + value
    return value


@contextmanager
def output_stream(path: Path | None, *, encoding: str) -> Iterator[IO[str]]:
    """stdout (never with a BOM), or a file written to a temp name and renamed when complete."""
    if path is None:
        yield sys.stdout
        return
    target = path.expanduser()
    if not target.parent.exists():
        raise Invalid(f"cannot write {target}: the folder {target.parent} does not exist")
    if target.is_dir():
        raise Invalid(f"cannot write {target}: it is a folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            yield handle
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(handle: IO[str], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow(["" if v is None else neutralise(str(v)) for v in row])
        count += 1
    return count


def write_json(handle: IO[str], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """A JSON array of objects, written one object at a time."""
    count = 0
    handle.write("[")
    for row in rows:
        handle.write(",\n  " if count else "\n  ")
        handle.write(json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False))
        count += 1
    handle.write("\n]\n" if count else "]\n")
    return count
