"""The import loop both CSV imports share: validate, write in batches, all or nothing."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlmodel import Session

from crmcli.choices import DUPLICATE_MODES
from crmcli.config import Config
from crmcli.db import Database
from crmcli.errors import ImportFailed, Invalid
from crmcli.io.reader import TableSource
from crmcli.io.writer import Target, neutralise, output_stream

Item = TypeVar("Item")


TWICE = "; if it happened twice, tell the two apart by their time"
Written = tuple[int, dict[str, str], dict[str, Any]]  # a row to write: its line, its cells, its values


@dataclass
class ImportRun:
    """Counts and problems of one import."""

    config: Config
    on_duplicate: str
    now: datetime
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    duplicates: int = 0  # rows refused for naming a record the database has (on_duplicate "error")
    recorded: dict[tuple[Any, ...], int] = field(default_factory=dict)  # see refuse_repeats

    def refuse_repeats(self, conn: Any, table: Any, keys: tuple[str, ...], rows: list[Written]) -> list[Written]:
        """The rows (line, cells, values) that record something new: a row whose ``keys`` (the
        customer and the time first) are those of an earlier row of the file, or of a record
        ``table`` already holds (the same file imported twice), is refused, never written twice."""
        if not rows:
            return []
        who, when = table.c[keys[0]], table.c[keys[1]]
        held: set[tuple[Any, ...]] = set()
        for start in range(0, len(rows), 450):  # two IN-lists under SQLite's old 999-variable limit
            part = [values for _, _, values in rows[start : start + 450]]
            customers, moments = {v[keys[0]] for v in part}, {v[keys[1]] for v in part}
            query = select(*(table.c[k] for k in keys)).where(who.in_(customers), when.in_(moments))
            held.update(tuple(found) for found in conn.execute(query))
        kept = []
        for line, raw, values in rows:
            key = tuple(values[k] for k in keys)
            if key in self.recorded:
                self.reject(line, raw, f"the same entry as line {self.recorded[key]} of this file{TWICE}")
            elif key in held:
                again = f"customer {key[0]} already has this entry (was the file imported before?)"
                self.reject(line, raw, again + TWICE)
            else:
                self.recorded[key] = line
                kept.append((line, raw, values))
        return kept

    def reject(self, line: int, raw: dict[str, str], reason: str) -> None:
        self.problems.append((line, reason))
        self.rejected.append((line, raw, reason))

    def duplicate(self, line: int, raw: dict[str, str], what: str) -> None:
        """Refuse a row that names a record the database already has (``what`` says which)."""
        self.duplicates += 1
        self.reject(line, raw, f"{what} (a duplicate: skip it or update it)")

    def failed(self, label: str) -> ImportFailed:
        """The error of an import refused for its bad rows: every one listed, in line order."""
        return ImportFailed(
            f"{len(self.problems)} bad row(s) in {label}; nothing was imported",
            sorted(self.problems),
            subject="duplicates" if self.duplicates else None,
        )

    def counts(self, dry_run: bool) -> dict[str, Any]:
        return {
            "rows": self.inserted + self.updated + self.skipped + len(self.rejected),
            "inserted": self.inserted,
            "updated": self.updated,
            "skipped": self.skipped,
            "rejected": len(self.rejected),
            "dry_run": dry_run,
        }


def check_options(on_duplicate: str, reject_file: Path | Target | None) -> None:
    """Refuse bad options before anything is read or written, the rejected-rows file included."""
    if on_duplicate not in DUPLICATE_MODES:
        raise Invalid(f"unknown duplicate mode {on_duplicate!r}: use one of {', '.join(DUPLICATE_MODES)}")
    target = Target.of(reject_file)
    if target is not None:
        target.check()


def run_import(
    *,
    db: Database,
    source: TableSource,
    run: ImportRun,
    validate: Callable[[int, dict[str, str]], Item],
    write_batch: Callable[[Session, list[Item]], None],
    finish: Callable[[Session], None] | None = None,
    batch_size: int,
    dry_run: bool,
    reject_file: Path | Target | None,
    progress: Callable[[int], None] | None = None,
    pack: Callable[[Item], Any] | None = None,
    unpack: Callable[[Any], Item] | None = None,
) -> dict[str, int]:
    """Stream the file through ``validate`` and ``write_batch`` in one write transaction, and
    close it; returns the run's counts.

    Memory stays flat: only a batch or two is held. Rows keep being written after a bad one so
    that duplicates later in the file are still found; then, unless ``reject_file`` is
    given, any problem rolls everything back and raises :class:`ImportFailed` listing
    every bad row. ``dry_run`` always rolls back. ``pack``/``unpack``: see
    :func:`crmcli.io.parallel.validated_batches`.
    """
    from crmcli.io.parallel import validated_batches

    with closing(source), db.session(write=True) as session:
        # (a large file is read and validated by a second process while this one writes)
        batches = validated_batches(
            source, validate, size=batch_size, reject=run.reject, progress=progress, pack=pack, unpack=unpack
        )
        for batch in batches:
            write_batch(session, batch)
        if run.problems and reject_file is None:
            session.rollback()
            raise run.failed(source.label)
        if finish is not None:
            finish(session)  # (the rules at the end may refuse rows too)
            if run.problems and reject_file is None:
                session.rollback()
                raise run.failed(source.label)
        from crmcli.audit import note

        note(session, file=source.label, **run.counts(dry_run))  # one audit entry per import, with counts
        if dry_run:
            session.rollback()
    if reject_file is not None and run.rejected and not dry_run:
        write_rejects(reject_file, source.fields, run.rejected)
    return run.counts(dry_run)


BULK_CACHE_KB = 32 * 1024


def bulk_cache(session: Session, kib: int = BULK_CACHE_KB) -> None:
    """A larger SQLite page cache for this connection while an import writes: the indexes of the
    tables it fills no longer fit SQLite's default 2 MB, and each page read back from the OS
    costs more than keeping it. (The cache only grows as pages are used, up to this limit, so
    the memory stays flat whatever the file's size.)"""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA cache_size = -{kib}")


# A bulk insert at least this large, and at least as large as the table it fills, writes the
# table's secondary indexes afterwards instead of row by row.
REBUILD_MIN_ROWS = 100_000
SORT_CACHE_KB = 4 * 1024


@contextmanager
def indexes_built_after(session: Session, tables: Sequence[str], *, rows: int, held: int) -> Iterator[None]:
    """Insert ``rows`` new rows into ``tables`` (which hold about ``held``) with their secondary
    indexes built once afterwards, on SQLite, when the insert is large.

    Each row of a large insert would otherwise write a page of every index at a random place,
    and once the indexes outgrow the page cache each such write reads its page back from the
    OS. Building an index is one sort of its keys. The indexes are dropped and created again
    from the SQL SQLite stored for them, inside the caller's transaction: other connections
    go on reading the last committed state with its indexes, a failure rolls the drop back,
    and the schema afterwards is the same, byte for byte. The unique constraints stay (they
    check the rows as they go in); PostgreSQL keeps its indexes (dropping them there would
    lock readers out until the commit).
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite" or rows < max(REBUILD_MIN_ROWS, held):
        yield
        return
    marks = ", ".join("?" for _ in tables)
    indexes = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({marks})"
        " ORDER BY name",
        tuple(tables),
    ).all()
    for name, _ in indexes:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    # Each index is built by a sort that may use the second core, in buffers the size of the page
    # cache, one per thread: a small cache keeps the memory flat and, measured, sorts faster too.
    kept = [conn.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in ("cache_size", "threads")]
    conn.exec_driver_sql(f"PRAGMA cache_size = -{SORT_CACHE_KB}")
    conn.exec_driver_sql("PRAGMA threads = 2")
    try:
        for _, sql in indexes:
            conn.exec_driver_sql(sql)
    finally:
        for name, value in zip(("cache_size", "threads"), kept, strict=True):
            conn.exec_driver_sql(f"PRAGMA {name} = {int(value)}")


def write_rejects(path: Path | Target, fields: Sequence[str], rejected: list[tuple[int, dict[str, str], str]]) -> None:
    """The rejected rows as CSV, with their line number and reason first.

    Cells are guarded against formula injection as exports are (the import removes the
    guard again), and the ``line`` and ``error`` columns are ignored by the import, so the
    file imports back once fixed.
    """
    with output_stream(path, encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["line", "error", *fields])
        for line, raw, reason in sorted(rejected, key=lambda item: item[0]):
            writer.writerow([line, neutralise(reason), *(neutralise(raw.get(f, "")) for f in fields)])
