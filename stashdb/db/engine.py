"""Engines for stores: SQLite pragmas, the write lock, format checks, migrations.

Every write transaction holds the store's one write lock: ``BEGIN IMMEDIATE``
on SQLite, a transaction-scoped advisory lock on PostgreSQL. Writers queue
rather than fail, and `gc` cannot interleave with a commit's final
transaction on either backend.

Alembic (≈250 ms to import) is loaded only when a store is created or upgraded,
so opening an existing store stays cheap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, InterfaceError, OperationalError

from stashdb.db.format import FORMAT_VERSION, SCHEMA_REVISIONS
from stashdb.errors import (
    NotAStore,
    StashError,
    StoreUnreachable,
    StoreWriteError,
    UnsupportedFormat,
)

__all__ = [
    "FORMAT_VERSION",
    "open_engine",
    "read_transaction",
    "safe_url",
    "schema_revision",
    "upgrade",
    "write_transaction",
]

#: Seconds a writer waits for another writer's lock before giving up.
BUSY_TIMEOUT_SECONDS = 300

#: 64 KiB pages: a 640 MB first commit takes 0.91 s against 1.03 s with the
#: 4 KiB default (bench/bench_settings.py; docs/performance.md).
SQLITE_PAGE_SIZE = 65536
#: A rollback journal: the same commit takes 0.91 s against 1.58 s with WAL,
#: which also doubles the files until a checkpoint (bench/bench_settings.py).
SQLITE_JOURNAL_MODE = "DELETE"

_WRITE = "stashdb_write"


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute(f"PRAGMA journal_mode = {SQLITE_JOURNAL_MODE}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
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
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))


def _new_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise NotAStore(url, f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
            _configure_sqlite(engine)
            return engine
        engine = create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        extra = " (pip install 'stashdb[postgres]')" if backend == "postgresql" else ""
        raise StashError(
            f"cannot open {safe_url(url)}: its database driver is not installed{extra}: {exc}"
        ) from None
    except ArgumentError as exc:
        raise NotAStore(safe_url(url), str(exc)) from None
    if backend == "postgresql":
        _configure_postgresql(engine)
    elif backend != "sqlite":
        engine.dispose()
        why = f"stashdb stores live in SQLite or PostgreSQL, not {backend}"
        raise NotAStore(safe_url(url), why)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the store's write lock.

    A write the database refuses (disk full, file size limit, I/O error) rolls
    the transaction back and raises `StoreWriteError`.
    """
    try:
        with engine.connect().execution_options(**{_WRITE: True}) as conn, conn.begin():
            yield conn
    except OperationalError as exc:
        location = engine.url.render_as_string(hide_password=True)
        raise StoreWriteError(location, _first_line(exc.orig or exc)) from exc


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a read transaction (a consistent view of the store)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def open_engine(url: str, *, create: bool, upgrade_schema: bool = True) -> Engine:
    """Open the store at ``url``, creating it when ``create`` and it is empty.

    A store at an older schema revision is upgraded (under the write lock)
    unless ``upgrade_schema`` is false.

    Raises:
        StoreUnreachable: the server cannot be reached, or refuses the login.
        NotAStore: the database holds something else, or is not a database at all.
        UnsupportedFormat: the store was written by a newer stashdb.
    """
    engine = _new_engine(url)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnreachable(safe_url(url), _first_line(exc.orig or exc)) from None
        with conn:
            tables = set(inspect(conn).get_table_names())
        if "meta" not in tables:
            if tables:
                raise NotAStore(safe_url(url), "it has tables but no stashdb 'meta' table")
            if not create:
                raise NotAStore(safe_url(url), "the database is empty")
            _create(engine, url)
        found = _format_version(engine, url)
        if found > FORMAT_VERSION:
            raise UnsupportedFormat(safe_url(url), found, FORMAT_VERSION)
        if upgrade_schema and schema_revision(engine) in SCHEMA_REVISIONS[:-1]:
            upgrade(engine)  # a revision we know that is not the newest
    except StashError:
        engine.dispose()
        raise
    except (DatabaseError, OperationalError) as exc:
        engine.dispose()
        raise NotAStore(safe_url(url), _first_line(exc.orig or exc)) from exc
    return engine


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _format_version(engine: Engine, url: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM meta WHERE key = 'format_version'")).scalar()
    if value is None or not str(value).isdigit():
        raise NotAStore(safe_url(url), "its 'meta' table records no format version")
    return int(value)


def _create(engine: Engine, url: str) -> None:
    """Create the tables, unless another process did while we waited for the lock."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # Takes effect only before the first table exists, on this connection;
            # sent to the driver directly so that no transaction begins yet.
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        conn.execution_options(**{_WRITE: True})
        with conn.begin():  # the write lock: one creator at a time
            tables = set(inspect(conn).get_table_names())
            if "meta" in tables:
                return
            if tables:
                raise NotAStore(safe_url(url), "it has tables but no stashdb 'meta' table")
            _migrate(conn, "head")
            conn.execute(
                text("INSERT INTO meta (key, value) VALUES (:k, :v)"),
                [
                    {"k": "store_id", "v": uuid.uuid4().hex},
                    {"k": "created", "v": repr(time.time())},
                    {"k": "HEAD", "v": "main"},
                ],
            )


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the store's schema is at (None if it records none)."""
    with engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrations_dir() -> Path:
    """Where the Alembic scripts are, in a source checkout and an installed package alike."""
    import stashdb.migrations

    return Path(stashdb.migrations.__file__).parent


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine``, holding the write lock."""
    with write_transaction(engine) as conn:
        _migrate(conn, revision)


def _migrate(conn: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
