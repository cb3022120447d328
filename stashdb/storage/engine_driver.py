"""The engine's read driver: the shared queries sent through SQLAlchemy.

Stores on PostgreSQL are read this way, and so is a SQLite store opened with a
``sqlite+pysqlite://`` URL (the test suite runs every read path on both
drivers). The queries are `stashdb.storage.queries`, shared with the light
``sqlite3`` driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from stashdb.errors import StoreDamaged
from stashdb.storage.engine import Database
from stashdb.storage.sealing import PLAIN, Plain

__all__ = ["EngineDriver", "EngineSQL"]


class EngineSQL:
    """A SQLAlchemy connection inside a transaction, as `stashdb.storage.queries.SQL`."""

    def __init__(self, conn: Connection, sealer: Plain = PLAIN) -> None:
        self._conn = conn
        self.sealer = sealer

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """The rows of ``query``."""
        return self._conn.execute(text(query), dict(params or {})).fetchall()


class EngineDriver:
    """Read transactions through the store's engine."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def transaction(self) -> Iterator[EngineSQL]:
        """One read transaction (a consistent view of the store).

        Raises:
            StoreDamaged: a query failed on the store's own tables (one is gone, say).
        """
        try:
            with self.database.read() as conn:
                yield EngineSQL(conn)
        except DBAPIError as exc:
            lines = str(exc.orig or exc).strip().splitlines()
            detail = lines[0] if lines else type(exc).__name__
            raise StoreDamaged(f"{self.database.location}: {detail}") from None

    def close(self) -> None:
        """Nothing to release of its own: the engine is the store's."""
