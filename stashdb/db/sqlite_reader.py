"""Reading a SQLite store through the standard library's `sqlite3`, without SQLAlchemy.

Restoring one variable in a fresh process should cost that variable, not the
~120 ms it takes to import SQLAlchemy (docs/performance.md). So a `Repo` opened
on a SQLite file reads commits and objects here, with plain SQL; everything
else (writes, browsing, upkeep) goes through the engine (`stashdb.db.engine`),
created when first needed. The queries mirror those of `stashdb.store` and
`stashdb.chunks`; `docs/format.md` is what both follow. Only SELECTs are sent,
but the connection is read-write: a reader must be able to roll back the hot
journal a crashed writer left, as any SQLite reader does.

`SQLiteReader.open` returns None for anything it is not sure about (not a
file, another format or schema revision, not a store): the engine path then
opens the store and says what is wrong, or upgrades it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from stashdb import revs
from stashdb.chunking import ChunkPlace, Objects, assemble
from stashdb.db.format import FORMAT_VERSION, SCHEMA_REVISIONS
from stashdb.errors import RevisionNotFound
from stashdb.model import Commit, Ref, Rev, commit_from_row, entries_from_rows

__all__ = ["SQLiteReader", "sqlite_path"]

#: Bound parameters per IN (...) query (SQLite allows 32766).
_BATCH = 500
#: How long a read waits for a writer's lock before giving up, as the engine does.
_BUSY_TIMEOUT_MS = 300_000


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL; None for anything else."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix) :]
    return Path(path) if path and path != ":memory:" else None


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> SimpleNamespace:
    return SimpleNamespace(**{d[0]: v for d, v in zip(cursor.description, values)})


class SQLiteReader:
    """Read-only access to the commits, refs and objects of one SQLite store."""

    def __init__(self, path: Path, conn: sqlite3.Connection | None = None) -> None:
        self._path = path
        self._conn = conn
        self._lock = threading.Lock()  # one connection, used from any thread in turn
        self.chunks = self  # the Loader reads objects from ``.chunks``, as from a Store

    @classmethod
    def open(cls, url: str) -> SQLiteReader | None:
        """A reader for the store at ``url``, or None (not a current SQLite store)."""
        path = sqlite_path(url)
        if path is None or not path.is_file():
            return None
        try:
            conn = _connect(path)
        except sqlite3.Error:
            return None
        try:
            found = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            conn.close()
            return None
        current = (str(FORMAT_VERSION), SCHEMA_REVISIONS[-1])
        if found is None or revision is None or (found.value, revision.version_num) != current:
            conn.close()
            return None
        return cls(path, conn)

    def close(self) -> None:
        """Release the connection; the next read opens a new one (as an engine's pool does)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # One read transaction: a consistent view while gc or a commit runs.
        with self._lock:
            if self._conn is None:
                self._conn = _connect(self._path)
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    # -- commits ---------------------------------------------------------------

    def resolve(self, rev: Rev) -> str:
        with self._transaction() as conn:
            return revs.resolve(rev, _Lookup(conn))

    def get_commit(self, commit_id: str) -> Commit:
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM commits WHERE id = ?", (commit_id,)).fetchone()
            if row is None:
                raise RevisionNotFound(commit_id, "no such commit in this store")
            parents = _Lookup(conn).parents(commit_id)
            tags = [
                r.name for r in conn.execute(
                    "SELECT name FROM refs WHERE kind = 'tag' AND commit_id = ?", (commit_id,)
                )
            ]
            entries = conn.execute(
                "SELECT * FROM entries WHERE commit_id = ? ORDER BY name", (commit_id,)
            ).fetchall()
        return commit_from_row(row, parents, entries_from_rows(entries), tags)

    def list_refs(self, kind: str) -> list[Ref]:
        with self._transaction() as conn:
            rows = conn.execute("SELECT * FROM refs WHERE kind = ? ORDER BY name", (kind,))
            return [Ref(r.name, r.kind, r.commit_id, r.message, r.time) for r in rows]

    # -- objects ---------------------------------------------------------------

    def read_many(self, object_ids: Iterable[bytes]) -> Objects:
        ids = list(dict.fromkeys(object_ids))
        with self._transaction() as conn:
            heads: dict[bytes, tuple[str, int]] = {}
            places: list[ChunkPlace] = []
            for batch in _batches(ids):
                marks = ",".join("?" * len(batch))
                for r in conn.execute(
                    f"SELECT id, pickler, parts FROM objects WHERE id IN ({marks})", batch
                ):
                    heads[bytes(r.id)] = (r.pickler, r.parts)
                places += [
                    ChunkPlace(bytes(r.object_id), r.part, r.seq, bytes(r.chunk_id), r.raw_size)
                    for r in conn.execute(
                        "SELECT object_id, part, seq, chunk_id, raw_size FROM object_chunks "
                        f"WHERE object_id IN ({marks}) ORDER BY object_id, part, seq",
                        batch,
                    )
                ]
            return assemble(ids, heads, places, lambda cids: _fetch(conn, cids))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.row_factory = _row
    return conn


def _batches(ids: Sequence[bytes], size: int = _BATCH) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _fetch(conn: sqlite3.Connection, ids: list[bytes]) -> Iterator[tuple[bytes, int, bytes]]:
    for batch in _batches(ids, 64):
        marks = ",".join("?" * len(batch))
        for r in conn.execute(f"SELECT id, codec, data FROM chunks WHERE id IN ({marks})", batch):
            yield bytes(r.id), r.codec, r.data


class _Lookup:
    """What `revs.resolve` asks, answered on a connection inside a read transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def head(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'HEAD'").fetchone()
        return row.value if row is not None else revs.DEFAULT_BRANCH

    def ref_target(self, name: str) -> tuple[str, str] | None:
        row = self._conn.execute("SELECT kind, commit_id FROM refs WHERE name = ?", (name,))
        found = row.fetchone()
        return (found.kind, found.commit_id) if found is not None else None

    def parents(self, commit_id: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT parent_id FROM commit_parents WHERE commit_id = ? ORDER BY position",
            (commit_id,),
        )
        return [r.parent_id for r in rows]

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM commits WHERE id LIKE ? ORDER BY id LIMIT ?", (prefix + "%", limit)
        )
        return [r.id for r in rows]
