"""Files crmcli writes: one safe way to write them, and the CSV and JSON writers.

Every file (exports, rejected rows, backups) goes through :func:`atomic_path`: it is
written under a temporary name in the target's folder, owner-only (0600), and renamed
over the target only when complete. An existing target is refused unless ``force``;
the database, its ``-wal``/``-shm`` and the input being read are refused always.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from crmcli.errors import Conflict, Invalid
from crmcli.io.reader import FORMULA_START

TEMP_SUFFIX = ".crmcli-tmp"
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Target:
    """A file to write: where, whether an existing file may be replaced, and what never may."""

    path: Path
    force: bool = False
    protected: tuple[Path, ...] = ()

    @classmethod
    def of(cls, value: Path | Target | None) -> Target | None:
        return value if isinstance(value, Target) or value is None else cls(Path(value))

    def check(self) -> Path:
        """The target's path, once it is known safe to write; raises otherwise."""
        target = self.path.expanduser()
        if target.is_dir():
            raise Invalid(f"cannot write {target}: {target} is a folder", subject="target-folder", key=target)
        if not target.parent.exists():
            raise Invalid(f"cannot write {target}: the folder {target.parent} does not exist", subject="missing-folder")
        for kept in self.protected:
            if _same_file(target, kept):
                raise Conflict(
                    f"refusing to write {target}: it is {_describe(kept)}", subject="protected-file", key=kept
                )
        if target.exists() and not self.force:
            raise Conflict(f"{target} already exists", subject="existing-file", key=target, fields=("force",))
        return target


def protected_database_files(database: Path | None) -> tuple[Path, ...]:
    """A SQLite database and the files SQLite keeps beside it."""
    if database is None:
        return ()
    return tuple(database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.expanduser().resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _describe(kept: Path) -> str:
    for suffix in ("-wal", "-shm", "-journal"):
        if kept.name.endswith(suffix):
            return f"a file of the database ({kept.name})"
    if kept.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"the database ({kept})"
    return f"the database or the file being read ({kept})"


@contextmanager
def atomic_path(target: Path | Target) -> Iterator[Path]:
    """A temporary owner-only file beside the target, renamed over it when the block succeeds.

    Whatever goes wrong (an error, Ctrl-C), the temporary file is removed; one left by a
    killed process is removed by :func:`remove_stale_temps`.
    """
    final = (target if isinstance(target, Target) else Target(target)).check()
    tmp = _temp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        yield tmp
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove temporary files that crmcli processes no longer running left in ``folder``."""
    removed = []
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            pid = int(tmp.name.removesuffix(TEMP_SUFFIX).split(".")[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _running(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def customer_cell(ref: str | None, email: str | None, phone: str | None, cid: int | None) -> str | None:
    """A customer named in an export in the explicit form an import reads back to the same customer
    in another database: ``ref:…``, else ``email:…``, else ``phone:…``, else ``id:…``."""
    if ref:
        return f"ref:{ref}"
    if email:
        return f"email:{email}"
    if phone:
        return f"phone:{phone}"
    return f"id:{cid}" if cid is not None else None


def neutralise(value: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    if value and (value[0] in FORMULA_START or (value[0] == "'" and value[1:2] in (*FORMULA_START, "'"))):
        return "'" + value
    return value


@contextmanager
def output_stream(target: Path | Target | None, *, encoding: str) -> Iterator[IO[str]]:
    """stdout (never with a BOM), or a file written safely (see :func:`atomic_path`)."""
    chosen = Target.of(target)
    if chosen is None:
        yield sys.stdout
        return
    with atomic_path(chosen) as tmp, open(tmp, "w", encoding=encoding, newline="") as handle:
        yield handle


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


def write_export(
    db: Any,
    path: Path | Target | None,
    fmt: str,
    bom: bool,
    columns: Sequence[str],
    rows: Callable[..., Iterable[Sequence[Any]]],
    *,
    connections: int = 1,
) -> int:
    """An export: ``rows`` streamed over ``connections`` read connections of their own, written to
    ``path`` (standard output when None) as CSV (with a byte-order mark unless ``bom`` is False,
    for spreadsheets) or JSON. Returns how many rows were written."""
    from crmcli.choices import EXPORT_FORMATS

    if fmt not in EXPORT_FORMATS:
        raise Invalid(f"export format must be csv or json, not {fmt!r}")
    encoding = "utf-8-sig" if fmt == "csv" and bom else "utf-8"
    writer = write_csv if fmt == "csv" else write_json
    with ExitStack() as stack:
        reads = [stack.enter_context(db.engine.connect()) for _ in range(connections)]
        handle = stack.enter_context(output_stream(path, encoding=encoding))
        return writer(handle, columns, rows(*reads))
