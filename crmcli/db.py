"""Engine factory, session scopes, schema upgrades and backups.

Nothing here runs at import time. SQLite gets WAL, foreign keys and a busy
timeout on every connection; write sessions begin with ``BEGIN IMMEDIATE`` so a
second writer waits for the first instead of failing half-way, and says so
(``on_wait``) when the wait lasts. A new SQLite file is created owner-only, and
SQLite gives its ``-wal`` and ``-shm`` the same permissions.
"""

from __future__ import annotations

import ast
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crmcli.errors import DatabaseError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

BUSY_TIMEOUT_MS = 15_000  # backups and checks; commands use the config's lock_timeout_seconds
DEFAULT_LOCK_TIMEOUT = 60.0
WAIT_NOTICE_AFTER = 1.0  # seconds waiting for the write lock before on_wait is called
DEFAULT_BACKUPS_KEPT = 3
WRITE_OPTION = "crmcli_write"


def migrations_dir() -> Path:
    """The Alembic environment: inside the package when installed, else the repo's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise DatabaseError("the database migrations are missing from this installation")


def head_revision() -> str:
    """The newest migration, read from the files without importing Alembic."""
    return _revisions()[1]


def known_revisions() -> set[str]:
    return _revisions()[0]


def _revisions() -> tuple[set[str], str]:
    versions = migrations_dir() / "versions"
    revisions: set[str] = set()
    parents: set[str | None] = set()
    for file in versions.glob("*.py"):
        scope: dict[str, Any] = {}
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.startswith(("revision", "down_revision")) and "=" in line:
                name, _, value = line.partition("=")
                name = name.split(":")[0].strip()
                scope[name] = ast.literal_eval(value.strip())
        revisions.add(scope["revision"])
        down = scope.get("down_revision")
        parents.update(down if isinstance(down, tuple) else [down])
    heads = revisions - parents
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads; expected one")
    return revisions, heads.pop()


def check_known(revision: str | None) -> None:
    """Refuse a database a newer crmcli has written: its schema is not this one's to touch."""
    if revision is not None and revision not in known_revisions():
        raise DatabaseError(
            f"this database was written by a newer crmcli (revision {revision}); upgrade crmcli",
            subject="newer-database",
            key=revision,
        )


def to_url(target: str) -> tuple[str, Path | None]:
    """A database URL and, for SQLite files, the file path."""
    if "://" in target:
        if target.startswith("sqlite:///"):
            name = target.removeprefix("sqlite:///")
            return target, Path(name) if name and name != ":memory:" else None
        return target, None
    path = Path(target).expanduser()
    if not path.parent.exists():
        raise DatabaseError(
            f"cannot open database {path}: the folder {path.parent} does not exist",
            subject="folder",
        )
    return f"sqlite:///{path}", path


def _sqlite_pragmas(engine: Engine, lock_timeout: float, on_wait: Callable[[], None] | None) -> None:
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(lock_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN")
            return
        if _begin_without_waiting(connection.connection.driver_connection, lock_timeout):
            return
        # SQLite waits for the write lock inside BEGIN IMMEDIATE (the GIL released), so a timer
        # thread can tell the user that this process is waiting, not hanging.
        timer = threading.Timer(WAIT_NOTICE_AFTER, on_wait) if on_wait is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise LockTimeout(lock_timeout) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()


def _begin_without_waiting(raw: sqlite3.Connection, lock_timeout: float) -> bool:
    """Take the write lock if it is free, at once: no timer thread to start and stop when
    nobody else is writing (most transactions; a batch runs a thousand of them). False when
    another process holds it, and nothing has begun."""
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        raw.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return False
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(lock_timeout * 1000)}")


class LockTimeout(DatabaseError):
    """Another process held the write lock for longer than the configured wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"another process kept the database locked for writing beyond the {seconds:g} s limit "
            "(lock_timeout_seconds)",
            subject="lock",
            key=seconds,
        )


def create_private(path: Path) -> None:
    """Create an empty database file owner-only (an empty file is a valid SQLite database).

    SQLite creates ``-wal``, ``-shm`` and ``-journal`` with the database file's permissions,
    so they are owner-only too whatever the umask.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


DEFAULT_STATEMENT_CACHE = 16


class Database:
    """A lazily opened database: engine, schema check, session scopes."""

    def __init__(
        self,
        target: str,
        *,
        migrate: bool = True,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[], None] | None = None,
        backups_kept: int = DEFAULT_BACKUPS_KEPT,
    ) -> None:
        self.url, self.path = to_url(target)
        self._engine: Engine | None = None
        self._writer: tuple[Engine, Engine] | None = None  # (engine, its write-lock options)
        self._migrate = migrate
        self._checked = False  # schema brought up to date (once per process)
        self.audit_command: str | None = None  # set by the CLI: write sessions are then audited
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.backups_kept = backups_kept
        # SQLite statements the driver keeps prepared (per connection), set before the engine is made
        self.statement_cache = DEFAULT_STATEMENT_CACHE
        self._shared: Session | None = None  # the session of an atomic() block, while one runs
        self._shared_depth = 0
        self._shared_transaction: Any = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def engine(self) -> Engine:
        engine = self._raw_engine()
        if self._migrate and not self._checked:
            self.upgrade(only_if_needed=True)
            self._checked = True
        return engine

    def _create_engine(self) -> Engine:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            if self.is_sqlite:
                if self.path is not None:
                    create_private(self.path)
                # Few cached statements: imports run IN-lists of thousands of values, each a distinct
                # statement that would otherwise stay prepared (megabytes each) until 128 pile up.
                # (A batch asks for more: its commands run the same few dozen statements per line.)
                engine = create_engine(
                    self.url, connect_args={"timeout": self.lock_timeout, "cached_statements": self.statement_cache}
                )
                _sqlite_pragmas(engine, self.lock_timeout, self.on_wait)
            else:
                engine = create_engine(self.url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise DatabaseError(f"cannot use database URL {self.url!r}: {exc}") from None
        from crmcli.audit import instrument

        instrument(engine)
        return engine

    @property
    def writer(self) -> Engine:
        """The engine whose connections begin with the write lock (made once per engine)."""
        engine = self.engine
        if self._writer is None or self._writer[0] is not engine:
            self._writer = (engine, engine.execution_options(**{WRITE_OPTION: True}))
        return self._writer[1]

    @contextmanager
    def session(self, *, write: bool = False, connection: Any = None) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error.

        Inside :meth:`atomic` it is the atomic block's session instead, committed with it.
        ``connection`` (not in a transaction) runs it on that connection instead of a pooled
        one: an import stages its rows in TEMP tables, which only their connection sees.
        """
        from sqlmodel import Session

        if self._shared is not None:
            with self._shared_scope(self._shared, write=write) as session:
                yield session
            return
        if connection is not None:
            bind = connection.execution_options(**{WRITE_OPTION: write})
        else:
            bind = self.writer if write else self.engine
        with Session(bind, expire_on_commit=False) as session:
            if write and self.audit_command is not None:
                from crmcli.audit import watch

                watch(session, self.audit_command)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def atomic(self) -> Iterator[Session]:
        """One write transaction around many commands (a batch run all-or-nothing).

        Every :meth:`session` opened inside is this one session, so each command sees what
        the earlier ones wrote; each outermost write scope still records its own audit entry
        (the command it ran); nothing is committed unless the whole block succeeds. A command
        that rolled the transaction back itself (a dry run) makes the block fail: what came
        before it is gone.
        """
        from sqlmodel import Session

        with Session(self.writer, expire_on_commit=False) as session:
            session.connection()  # BEGIN IMMEDIATE now: the write lock is held for the whole block
            self._shared, self._shared_depth = session, 0
            self._shared_transaction = session.get_transaction()
            try:
                yield session
                if not self.atomic_intact():
                    raise DatabaseError("a command rolled back the transaction the whole block shares")
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                self._shared = None

    @contextmanager
    def staging_connection(self) -> Iterator[tuple[Any, bool]]:
        """A connection for work staged before the write lock is taken (an import's TEMP tables),
        and whether the caller commits on it: its own connection (True), or inside :meth:`atomic`
        the block's, whose transaction the block commits (False)."""
        if self._shared is not None:
            yield self._shared.connection(), False
            return
        with self.engine.connect() as conn:
            yield conn, True

    def atomic_intact(self) -> bool:
        """Inside :meth:`atomic`: the block's transaction is still the one it began (no command
        rolled it back)."""
        return self._shared is not None and self._shared.get_transaction() is self._shared_transaction

    @contextmanager
    def _shared_scope(self, session: Session, *, write: bool) -> Iterator[Session]:
        outermost = self._shared_depth == 0
        audited = outermost and write and self.audit_command is not None
        if audited:
            from crmcli.audit import begin_entry

            begin_entry(session, str(self.audit_command))
        self._shared_depth += 1
        # Each command in its own savepoint: one that undoes its own work (a dry run) undoes
        # only that, and the atomic block goes on.
        savepoint = session.begin_nested() if outermost else None
        try:
            try:
                yield session
            except BaseException:
                if savepoint is not None and savepoint.is_active:
                    savepoint.rollback()
                raise
            if savepoint is not None and savepoint.is_active:  # (a command that ended the whole
                savepoint.commit()  # transaction itself is refused by the atomic block)
            if audited:
                from crmcli.audit import end_entry

                end_entry(session)
            if outermost:
                # The next command reads afresh: rules update rows in SQL behind the ORM's back.
                session.flush()
                session.expunge_all()
        finally:
            self._shared_depth -= 1

    def checkpoint(self, *, attempts: int = 20) -> bool:
        """Move the WAL into the database file and empty it (SQLite; True elsewhere), so what
        was overwritten (an erased customer) no longer sits in the ``-wal`` file. A reader
        still holding an old snapshot blocks it: retried for a few seconds; False if it stays
        blocked."""
        import time

        from sqlalchemy import text

        if not self.is_sqlite:
            return True
        for attempt in range(attempts):
            with self.engine.connect() as conn:
                busy = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).first()
            if busy is not None and busy[0] == 0:
                return True
            time.sleep(0.1 * (attempt + 1))
        return False

    def files_holding(self, customer_id: int) -> list[str]:
        """Backups of this SQLite database (``NAME*.bak*`` beside it) that still hold the
        customer's personal data: an erase cannot reach into them."""
        import sqlite3

        if self.path is None:
            return []
        found = []
        for backup in sorted(self.path.parent.glob(f"{self.path.name}*.bak*")):
            try:
                with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as conn:
                    row = conn.execute(
                        "SELECT 1 FROM customer WHERE id = ? AND (email IS NOT NULL OR phone IS NOT NULL "
                        "OR name <> '(erased)')",
                        (customer_id,),
                    ).fetchone()
            except sqlite3.Error:
                continue
            if row:
                found.append(str(backup))
        return found

    # --- schema -------------------------------------------------------------

    def current_revision(self, connection: Any | None = None) -> str | None:
        from sqlalchemy import inspect, text

        def read(conn: Any) -> str | None:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

        if connection is not None:
            return read(connection)
        with self._raw_engine().connect() as conn:
            return read(conn)

    def _raw_engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def upgrade(self, *, only_if_needed: bool = False) -> tuple[str | None, str]:
        """Bring the schema to the newest revision; returns (before, after)."""
        from sqlalchemy.exc import OperationalError

        head = head_revision()
        engine = self._raw_engine()
        try:
            fast = self._fast_revision(engine)
            if only_if_needed and fast == head:
                return head, head
            check_known(fast)
            with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                before = self.current_revision(conn)
                if before == head:
                    return before, head
                check_known(before)
                if before is not None and self.path is not None:
                    self.backup_before_upgrade(before)
                self._run_alembic(conn)
            return before, head
        except OperationalError as exc:
            raise DatabaseError(f"cannot open database {self.path or self.url}: {exc.orig}") from None

    def _fast_revision(self, engine: Engine) -> str | None:
        from sqlalchemy import text
        from sqlalchemy.exc import DatabaseError as SADatabaseError

        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SADatabaseError as exc:
            if "file is not a database" in str(exc.orig):
                raise DatabaseError(f"{self.path} is not a crmcli database (not an SQLite file)") from None
            return None

    def _run_alembic(self, connection: Any) -> None:
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    def backup_before_upgrade(self, revision: str) -> Path:
        """One backup per upgrade attempt: a failed upgrade retried by every later command
        reuses the backup it already took (same revision, same size) instead of piling up copies."""
        assert self.path is not None
        existing = reusable_backup(self.path, revision)
        if existing is not None:
            return existing
        return automatic_backup(self.path, revision, keep=self.backups_kept)

    def revision_for_backup(self) -> str:
        """The revision a backup taken now is of (for its name)."""
        return self.current_revision() or "empty"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def backup_sqlite(source: Path, target: Any) -> Path:
    """A consistent copy through SQLite's online backup API, written safely and owner-only.

    ``target`` is a path or a :class:`crmcli.io.writer.Target` (which says whether an existing
    file may be replaced and which files never may); the database itself is always refused.
    """
    from crmcli.io.writer import Target, atomic_path, protected_database_files, remove_stale_temps

    chosen = target if isinstance(target, Target) else Target(Path(target))
    chosen = Target(chosen.path, force=chosen.force, protected=(*chosen.protected, *protected_database_files(source)))
    final = chosen.check()
    remove_stale_temps(final.parent)
    with atomic_path(chosen) as tmp:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        dst = sqlite3.connect(tmp)
        try:
            with dst:
                src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
            src.close()
    return final


def backup_name(database: Path, revision: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return database.with_name(f"{database.name}.{revision}.{stamp}.bak")


def automatic_backups(database: Path) -> list[Path]:
    """The backups crmcli named itself for this database, oldest first."""
    found = [p for p in database.parent.glob(f"{database.name}.*.bak") if p.is_file()]
    return sorted(found, key=lambda p: (p.name.rsplit(".", 2)[-2], p.name))


def automatic_backup(database: Path, revision: str, *, keep: int = DEFAULT_BACKUPS_KEPT) -> Path:
    """A backup next to the database, named by revision and time; the oldest beyond ``keep`` are removed."""
    target = backup_sqlite(database, backup_name(database, revision))
    for old in automatic_backups(database)[:-keep] if keep > 0 else []:
        if old != target:
            old.unlink(missing_ok=True)
    return target


def reusable_backup(database: Path, revision: str) -> Path | None:
    """The newest automatic backup of ``revision`` holding as many pages as the database now.

    While a database is stuck before an upgrade nothing can write to it (every command
    upgrades first), so such a backup is still a copy of it.
    """
    for backup in reversed(automatic_backups(database)):
        if backup.name.startswith(f"{database.name}.{revision}.") and backup.stat().st_size == _data_size(database):
            return backup
    return None


def _data_size(database: Path) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    return int(pages) * int(size)


def latest_backup(database: Path | None) -> Path | None:
    if database is None:
        return None
    backups = automatic_backups(database)
    return backups[-1] if backups else None


def integrity_check(db: Database) -> list[str]:
    """Problems found by the database's own checker; empty means healthy.

    The file is checked as it is, without upgrading it first, and a file too damaged to be
    read at all is a problem found, not a crash.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError as SADatabaseError

    try:
        with db._raw_engine().connect() as conn:
            if db.is_sqlite:
                rows = [r[0] for r in conn.execute(text("PRAGMA integrity_check"))]
                problems = [] if rows == ["ok"] else rows
                problems += [
                    f"foreign key: {r[0]} row {r[1]} -> {r[2]}" for r in conn.execute(text("PRAGMA foreign_key_check"))
                ]
                return problems
            conn.execute(text("SELECT 1"))
            return []
    except SADatabaseError as exc:
        return [str(exc.orig).splitlines()[0]]
