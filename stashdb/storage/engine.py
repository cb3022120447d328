"""Engines for stores: SQLite pragmas, the write lock, format checks, migrations.

Every write transaction holds the store's one write lock: ``BEGIN IMMEDIATE``
on SQLite, a transaction-scoped advisory lock on PostgreSQL. Writers queue
rather than fail, for at most the store's ``lock_timeout``; then `StoreLocked`
says so. `gc` cannot interleave with a commit's final transaction on either
backend.

Alembic (≈250 ms to import) is loaded only when a store is created or upgraded,
so opening an existing store stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)

from stashdb.errors import (
    DriverMissing,
    NotAStore,
    StashError,
    StoreLocked,
    StoreUnreachable,
    StoreWriteError,
    UnsupportedFormat,
)
from stashdb.storage.format import DEFAULT_LOCK_TIMEOUT, FORMAT_VERSION, SCHEMA_REVISIONS
from stashdb.storage.sqlite_driver import is_lock_timeout

__all__ = [
    "Database",
    "connect",
    "open_database",
    "safe_url",
    "schema_revision",
    "upgrade",
]

#: Pages of new stores. Every page a commit touches is written twice (journal,
#: then database): a small commit touches ~20 (one per table and index), so
#: smaller pages make it cheaper, while big chunks overflow into pages of any
#: size at the same speed (bench/bench_settings.py; docs/performance.md).
SQLITE_PAGE_SIZE = 16384
#: A rollback journal, kept between transactions (its header zeroed) rather
#: than made and deleted for each: big chunks go in 2-3x faster than with WAL,
#: which also writes them twice (bench/bench_settings.py).
SQLITE_JOURNAL_MODE = "PERSIST"
#: Bytes of the kept journal left after a transaction that needed more (gc).
SQLITE_JOURNAL_LIMIT = 64 * 1024 * 1024

_WRITE = "stashdb_write"
_LOCK_TIMEOUT = "stashdb_lock_timeout"
#: PostgreSQL's SQLSTATE for "lock_timeout expired".
_PG_LOCK_NOT_AVAILABLE = "55P03"
#: PostgreSQL's SQLSTATEs for a login that may read but not write: "insufficient
#: privilege", "read-only transaction" (a replica).
_NOT_ALLOWED = ("42501", "25006")


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _timeout_of(conn: Connection) -> float:
    return float(conn.get_execution_options().get(_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT))


def _configure_sqlite(engine: Engine, lock_timeout: Callable[[], float]) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # First: setting the journal mode waits for a lock too (pysqlite's own
        # wait is 5 s, whatever the store's lock_timeout says).
        cursor.execute(f"PRAGMA busy_timeout = {int(lock_timeout() * 1000)}")
        cursor.execute(f"PRAGMA journal_mode = {SQLITE_JOURNAL_MODE}")
        cursor.execute(f"PRAGMA journal_size_limit = {SQLITE_JOURNAL_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Set when it changes, not at every transaction: a small commit is ~2 ms.
        wait = int(_timeout_of(conn) * 1000)
        info = conn.connection.info
        if info.get("stashdb_busy_timeout") != wait:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {wait}")
            info["stashdb_busy_timeout"] = wait
        # Writers take the write lock up front (BEGIN IMMEDIATE) so that two
        # writers queue on busy_timeout instead of failing with "database is locked"
        # when both try to upgrade a read lock.
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # The store's write lock, released at commit or rollback. Keyed by schema
        # so that stores in different schemas of one database do not queue.
        if conn.get_execution_options().get(_WRITE, False):
            wait = max(1, int(_timeout_of(conn) * 1000))
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {wait}")
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))


def _new_engine(url: str, lock_timeout: Callable[[], float]) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise NotAStore(url, f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    try:
        engine = create_engine(url) if backend == "sqlite" else create_engine(
            url, pool_pre_ping=True
        )
    except ImportError as exc:
        extra = "postgres" if backend == "postgresql" else None
        raise DriverMissing(safe_url(url), extra, str(exc)) from None
    except ArgumentError as exc:
        raise NotAStore(safe_url(url), str(exc)) from None
    if backend == "sqlite":
        _configure_sqlite(engine, lock_timeout)
    elif backend == "postgresql":
        _configure_postgresql(engine)
    else:
        engine.dispose()
        why = f"stashdb stores live in SQLite or PostgreSQL, not {backend}"
        raise NotAStore(safe_url(url), why)
    return engine


class _RolledBack(Exception):
    """Leaves a transaction that was only a trial, rolling it back."""


def _is_lock_timeout(exc: OperationalError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE:
        return True
    return orig is not None and is_lock_timeout(orig)


@dataclass
class Database:
    """A store's engine with its settings: where it is (for messages) and how long to wait.

    ``lock_timeout`` may be changed at any time; the next transaction uses it.
    Made by `open_database`; re-made after ``fork()`` (see `Database.engine`).
    """

    url: str
    location: str
    lock_timeout: float
    _engine: Engine
    _pid: int = field(default_factory=os.getpid)

    @property
    def engine(self) -> Engine:
        """The engine; after ``fork()`` its pool is the parent's, so it starts a new one."""
        if self._pid != os.getpid():
            self._engine.dispose(close=False)  # the parent's connections stay the parent's
            self._pid = os.getpid()
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a transaction that holds the store's write lock.

        Raises:
            StoreLocked: another process held the lock for longer than ``lock_timeout``.
            StoreWriteError: the database refused the write (disk full, file size
                limit, I/O error); the transaction was rolled back.
        """
        started = time.monotonic()
        options = {_WRITE: True, _LOCK_TIMEOUT: self.lock_timeout}
        try:
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise StoreLocked(self.location, time.monotonic() - started) from None
            raise StoreWriteError(self.location, _first_line(exc.orig or exc)) from exc
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _NOT_ALLOWED:
                raise
            raise StoreWriteError(self.location, _first_line(exc.orig or exc)) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside a read transaction (a consistent view of the store).

        Raises:
            StoreLocked: on SQLite, a writer held the file locked past ``lock_timeout``.
        """
        started = time.monotonic()
        try:
            with self.engine.connect().execution_options(
                **{_LOCK_TIMEOUT: self.lock_timeout}
            ) as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            if _is_lock_timeout(exc):
                raise StoreLocked(self.location, time.monotonic() - started) from None
            raise

    def check_writable(self) -> None:
        """Raise unless a write can be made now: its lock had, the store written.

        Makes a change that changes nothing, and rolls it back: a read-only
        file or directory, or a lock held too long, fails here, before a caller
        spends time on work it could not store.

        Raises:
            StoreLocked, StoreWriteError: as a write would.
        """
        with contextlib.suppress(_RolledBack), self.write() as conn:
            conn.execute(text("UPDATE meta SET value = value WHERE key = 'HEAD'"))
            raise _RolledBack

    def dispose(self) -> None:
        """Close the engine's connections (in this process)."""
        if self._pid == os.getpid():
            self._engine.dispose()


def connect(
    url: str, *, location: str | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> Database:
    """A `Database` for ``url`` with the store's pragmas and lock, checking nothing else.

    `open_database` is what opens a store; this is for tools that prepare a
    database themselves (tests building an old store, migrations by hand).

    Raises:
        NotAStore: ``url`` is not a SQLite or PostgreSQL URL.
        DriverMissing: its database driver is not installed.
    """
    database: Database
    engine = _new_engine(url, lambda: database.lock_timeout)
    database = Database(url, location or safe_url(url), lock_timeout, engine)
    return database


def open_database(
    url: str,
    *,
    create: bool,
    location: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    upgrade_schema: bool = True,
) -> Database:
    """Open the store at ``url``, creating it when ``create`` and it is empty.

    A store at an older schema revision is upgraded (under the write lock)
    unless ``upgrade_schema`` is false.

    Raises:
        StoreUnreachable: the server cannot be reached, or refuses the login.
        NotAStore: the database holds something else, or is not a database at all.
        UnsupportedFormat: the store was written by a newer stashdb.
        DriverMissing: the URL's database driver is not installed.
    """
    missing = _missing_sqlite_file(url)
    if missing is not None and not create:
        # Opening it would create an empty file where the user perhaps mistyped a path.
        raise NotAStore(location or missing, "no such file")
    database = connect(url, location=location, lock_timeout=lock_timeout)
    engine = database.engine
    try:
        started = time.monotonic()
        try:
            conn = engine.connect()
        except (OperationalError, InterfaceError) as exc:
            if isinstance(exc, OperationalError) and _is_lock_timeout(exc):
                raise StoreLocked(database.location, time.monotonic() - started) from None
            raise StoreUnreachable(safe_url(url), _first_line(exc.orig or exc)) from None
        with conn:
            tables = set(inspect(conn).get_table_names())
        if "meta" not in tables:
            if tables:
                raise NotAStore(safe_url(url), "it has tables but no stashdb 'meta' table")
            if not create:
                raise NotAStore(safe_url(url), "the database is empty")
            _create(database)
        found = _format_version(engine, url)
        if found > FORMAT_VERSION:
            raise UnsupportedFormat(safe_url(url), found, FORMAT_VERSION)
        revision = schema_revision(database) if upgrade_schema else None
        if revision in SCHEMA_REVISIONS[:-1]:
            upgrade(database)  # a revision we know that is not the newest
            if revision is not None and revision < "0005":
                _say_commits_are_unsigned(database)
    except StashError:
        engine.dispose()
        raise
    except (DatabaseError, OperationalError) as exc:
        engine.dispose()
        if isinstance(exc, OperationalError) and _is_lock_timeout(exc):
            raise StoreLocked(database.location, database.lock_timeout) from None
        raise NotAStore(safe_url(url), _first_line(exc.orig or exc)) from exc
    return database


def _say_commits_are_unsigned(database: Database) -> None:
    """Once, as the store is upgraded to signed commits: its earlier ones are not signed."""
    with database.read() as conn:
        count = conn.execute(text("SELECT COUNT(*) FROM commits")).scalar_one()
    if count:
        print(
            f"stashdb: {database.location} now signs its commits; its {count} earlier "
            "commits are unsigned: checking them out needs trust (trust=True, or --trust) "
            "until you sign them after review (`stashdb keys sign --all`, or "
            "Repo.sign_all(); docs/security.md). Browsing works as before.",
            file=sys.stderr,
        )


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite URL's file when that file does not exist; None otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None  # a URI filename: sqlite decides
    return None if Path(database).exists() else database


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _format_version(engine: Engine, url: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM meta WHERE key = 'format_version'")).scalar()
    if value is None or not str(value).isdigit():
        raise NotAStore(safe_url(url), "its 'meta' table records no format version")
    return int(value)


def _create(database: Database) -> None:
    """Create the tables, unless another process did while we waited for the lock."""
    with database.engine.connect() as conn:
        if database.dialect == "sqlite":
            # Takes effect only before the first table exists, on this connection;
            # sent to the driver directly so that no transaction begins yet.
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        conn.execution_options(**{_WRITE: True, _LOCK_TIMEOUT: database.lock_timeout})
        with conn.begin():  # the write lock: one creator at a time
            tables = set(inspect(conn).get_table_names())
            if "meta" in tables:
                return
            if tables:
                raise NotAStore(database.location, "it has tables but no stashdb 'meta' table")
            _migrate(conn, "head")
            conn.execute(
                text("INSERT INTO meta (key, value) VALUES (:k, :v)"),
                [
                    {"k": "store_id", "v": uuid.uuid4().hex},
                    {"k": "created", "v": repr(time.time())},
                    {"k": "HEAD", "v": "main"},
                ],
            )


def schema_revision(database: Database) -> str | None:
    """The Alembic revision the store's schema is at (None if it records none)."""
    with database.engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrations_dir() -> Path:
    """Where the Alembic scripts are, in a source checkout and an installed package alike."""
    # Found, not imported: the migrations are data to this layer (and importing
    # them here would make storage depend on the package above it).
    spec = importlib.util.find_spec("stashdb.migrations")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def upgrade(database: Database, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision``, holding the write lock."""
    with database.write() as conn:
        _migrate(conn, revision)


def _migrate(conn: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
