"""The light read driver: a SQLite store read through the standard library's ``sqlite3``.

Restoring one variable in a fresh process should cost that variable, not the
~120 ms it takes to import SQLAlchemy (docs/performance.md). So a store in a
SQLite file is read here; writes, migrations and upkeep go through the engine
(`stashdb.storage.engine`), made on first need. The queries themselves are
`stashdb.storage.queries`, shared with the engine's driver. Only SELECTs are
sent, but the connection is read-write: a reader must be able to roll back the
hot journal a crashed writer left, as any SQLite reader does.

`SQLiteDriver.open` returns None for anything it is not sure about (not a
file, another format or schema revision, not a store): the engine then opens
the store and says what is wrong, or upgrades it.
"""

from __future__ import annotations

import collections
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from stashdb.errors import StoreDamaged, StoreLocked
from stashdb.storage.format import FORMAT_VERSION, SCHEMA_REVISIONS
from stashdb.storage.sealing import PLAIN, Plain

__all__ = ["SQLiteDriver", "sqlite_path", "sqlite_url"]

_PREFIX = "sqlite:///"


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file ``path`` (absolute), quoted so that any character survives.

    ``?``, ``#`` and ``%`` in a directory name would otherwise read as a URL's
    query, fragment or escapes, and the store would land somewhere else.
    """
    return _PREFIX + quote(str(path.resolve()), safe="/")


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL (unquoted); None for anything else."""
    if not url.startswith(_PREFIX) or "?" in url:
        return None
    path = unquote(url[len(_PREFIX) :])
    return Path(path) if path and path != ":memory:" else None


@functools.lru_cache(maxsize=256)
def _row_type(columns: tuple[str, ...]) -> Any:
    return collections.namedtuple("Row", columns, rename=True)


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    return _row_type(tuple(d[0] for d in cursor.description))(*values)


class _Connection:
    """A sqlite3 connection inside a transaction, as `stashdb.storage.queries.SQL`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.sealer: Plain = PLAIN  # set by the Reader for an encrypted store

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """The rows of ``query``."""
        return self._conn.execute(query, params or {}).fetchall()


#: SQLITE_BUSY and SQLITE_LOCKED (named in the sqlite3 module from Python 3.11 on).
_LOCK_ERRORS = (5, 6)


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether a sqlite3 error means another connection held the lock past our wait."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code in _LOCK_ERRORS
    return "database is locked" in str(exc)


class SQLiteDriver:
    """Read transactions on one SQLite store, through one connection used by one thread at a time.

    Args:
        path: the database file.
        lock_timeout: seconds a read waits while a writer holds the file locked.
    """

    def __init__(self, path: Path, *, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, lock_timeout: float) -> SQLiteDriver | None:
        """A driver for the store in ``path``, or None (not a store at the current revision)."""
        if not path.is_file():
            return None
        driver = cls(path, lock_timeout=lock_timeout)
        try:
            with driver.transaction() as sql:
                found = sql.rows("SELECT value FROM meta WHERE key = 'format_version'")
                revision = sql.rows("SELECT version_num FROM alembic_version")
        except (sqlite3.Error, StoreLocked, StoreDamaged):
            driver.close()  # not for this driver to judge: the engine says what it is
            return None
        current = (str(FORMAT_VERSION), SCHEMA_REVISIONS[-1])
        if not found or not revision or (found[0].value, revision[0].version_num) != current:
            driver.close()
            return None
        return driver

    def close(self) -> None:
        """Release the connection; the next transaction opens a new one."""
        self._after_fork()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[_Connection]:
        """One read transaction: a consistent view while gc or a commit runs.

        Raises:
            StoreLocked: a writer held the file locked for longer than ``lock_timeout``.
        """
        self._after_fork()
        with self._lock:
            conn = self._connection()
            started = time.monotonic()
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
                conn.execute("BEGIN")
            except sqlite3.OperationalError as exc:
                if is_lock_timeout(exc):
                    raise StoreLocked(str(self.path), time.monotonic() - started) from None
                raise
            try:
                yield _Connection(conn)
            except sqlite3.OperationalError as exc:
                if is_lock_timeout(exc):
                    raise StoreLocked(str(self.path), time.monotonic() - started) from None
                raise StoreDamaged(f"{self.path}: {exc}") from None  # a table gone, say
            except sqlite3.DatabaseError as exc:
                raise StoreDamaged(f"{self.path}: {exc}") from None
            finally:
                conn.execute("COMMIT")

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            # A connection made before fork() belongs to the parent: leave it to the
            # parent (closing it here could disturb the parent's locks) and open ours.
            # The lock too: a parent thread may have held it at the fork.
            self._conn, self._pid, self._lock = None, os.getpid(), threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=rw", uri=True, isolation_level=None,
                check_same_thread=False,
            )
            self._conn.row_factory = _row
        return self._conn
