"""The read queries of a store, written once for every driver.

Each function here takes `SQL`: a connection inside a transaction, as a driver
hands it out (`stashdb.storage.sqlite_driver` over the standard library's
``sqlite3``, `stashdb.storage.engine_driver` over SQLAlchemy on SQLite and
PostgreSQL, or the connection of a write transaction). The SQL is plain text
that SQLite and PostgreSQL both accept, with ``:name`` parameters, so the
light reader (no SQLAlchemy import: restoring one variable in a fresh process
stays cheap) and the engine read the same way. Column names are known here
and in `stashdb.storage.commits` (the writes), nowhere above the storage layer:
what leaves this module are value objects (`Commit`, `Entry`, `Ref`).

Rows are ordered in Python where order matters: PostgreSQL sorts text by its
collation, which need not be Python's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from stashdb.errors import RefNotFound, RevisionNotFound, StoreDamaged
from stashdb.model import Commit, Entry, Ref, Rev, StoreStats, link_groups
from stashdb.storage import revs
from stashdb.storage.chunking import ChunkPlace, Objects, assemble
from stashdb.storage.refs import DEFAULT_BRANCH
from stashdb.storage.sealing import PLAIN, Plain

__all__ = [
    "BATCH",
    "SQL",
    "Lookup",
    "batches",
    "chunk_facts",
    "damaged",
    "edges",
    "entries_from_rows",
    "find_ref",
    "get_ref",
    "head",
    "in_list",
    "incomplete_objects",
    "iter_chunks",
    "list_refs",
    "load_commits",
    "manifests",
    "object_facts",
    "parents",
    "read_objects",
    "resolve",
    "signatures",
    "stats",
    "trusted_key_rows",
    "value_hashes",
]

#: Bound parameters per ``IN (...)`` list: SQLite allows 32766, PostgreSQL 65535;
#: 500 keeps each statement small while 1000 small values take two queries.
BATCH = 500
#: Chunks fetched per query: at most 64 × 4 MiB of stored bytes in memory at once.
CHUNK_BATCH = 64

_T = TypeVar("_T")


class SQL(Protocol):
    """A connection inside a transaction, as the queries need it."""

    #: How the store keeps its bytes (`stashdb.storage.sealing`): set by the Reader.
    sealer: Plain

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
        """The rows ``query`` returns, each with its columns as attributes (and by index)."""
        ...


def batches(items: Sequence[_T], size: int = BATCH) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size`` (none for an empty sequence)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_list(column: str, values: Sequence[Any], prefix: str = "p") -> tuple[str, dict[str, Any]]:
    """``column IN (:p0, :p1, …)`` and its parameters; ``values`` must not be empty."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    marks = ", ".join(f":{n}" for n in names)
    return f"{column} IN ({marks})", dict(zip(names, values))


# -- rows to value objects ---------------------------------------------------------


def commit_from_row(
    row: Any, parent_ids: Sequence[str], entries: Sequence[Entry], tags: Iterable[str],
    sealer: Plain = PLAIN,
) -> Commit:
    """A `Commit` from a ``commits`` row (its message opened, in an encrypted store).

    Raises:
        StoreDamaged: a column holds what no stashdb writes (a damaged or crafted store).
    """
    where = f"commit {str(row.id)[:16]!r}"
    message = row.message
    if sealer.encrypted:
        from stashdb.storage.sealing import Unsealable

        try:
            message = sealer.open_text(message)
        except Unsealable as exc:
            raise StoreDamaged(f"{where}: its message: {exc}") from None
    return Commit(
        id=_text(row.id, where, "id"),
        message=_text(message, where, "message"),
        parents=tuple(parent_ids),
        time=_time(row.time, where),
        branch=_text(row.branch, where, "branch"),
        workspace=_text(row.workspace, where, "workspace"),
        user=_text(row.user, where, "user"),
        host=_text(row.host, where, "host"),
        python=_text(row.python, where, "python"),
        dill=_text(row.dill, where, "dill"),
        packages=_packages(row.packages, where),
        chunks_written=_number(row.chunks_written, where, "chunks_written"),
        bytes_written=_number(row.bytes_written, where, "bytes_written"),
        entries=tuple(entries),
        tags=tuple(sorted(tags)),
    )


def entries_from_rows(rows: Iterable[Any], sealer: Plain = PLAIN) -> list[Entry]:
    """The entries of one commit's ``entries`` rows, sorted by name, group members linked.

    Raises:
        StoreDamaged: a column holds what no stashdb writes (a seal that does not hold).
    """
    entries = []
    for r in rows:
        where = f"entry {str(r.name)[:40]!r} of commit {str(r.commit_id)[:16]!r}"
        if sealer.encrypted:
            r = _opened(r, sealer, where)
        object_id = r.object_id
        if object_id is not None and not isinstance(object_id, (bytes, bytearray, memoryview)):
            raise StoreDamaged(f"{where}: its object_id is {object_id!r}, not bytes")
        entries.append(Entry(
            name=_text(r.name, where, "name"),
            kind=_one_of(r.kind, ("value", "module", "skipped"), where, "kind"),
            status=_one_of(r.status, ("stored", "reused", "skipped"), where, "status"),
            type_name=_text(r.type_name, where, "type_name"),
            size=_number(r.size, where, "size"),
            stored_size=_number(r.stored_size, where, "stored_size"),
            seconds=float(_number(r.seconds, where, "seconds", real=True)),
            preview=_text(r.preview, where, "preview"),
            shape=_text(r.shape, where, "shape", optional=True),
            literal=_text(r.literal, where, "literal", optional=True),
            reason=_text(r.reason, where, "reason", optional=True),
            module=_text(r.module, where, "module", optional=True),
            version=_text(r.version, where, "version", optional=True),
            object_id=bytes(object_id).hex() if object_id is not None else None,
            slot=_number(r.slot, where, "slot") if r.slot is not None else None,
            value_hash=_text(r.value_hash, where, "value_hash", optional=True),
            digest=_digest(getattr(r, "digest", None), where),
        ))
    return link_groups(sorted(entries, key=lambda e: e.name))


class _OpenedRow:
    """A manifest row whose sealed descriptions are opened (attribute access only)."""

    def __init__(self, row: Any, opened: dict[str, Any]) -> None:
        self._row, self._opened = row, opened

    def __getattr__(self, name: str) -> Any:
        if name in self._opened:
            return self._opened[name]
        return getattr(self._row, name)


def _opened(row: Any, sealer: Plain, where: str) -> Any:
    from stashdb.storage.sealing import SEALED_COLUMNS, Unsealable

    try:
        return _OpenedRow(row, {c: sealer.open_text(getattr(row, c)) for c in SEALED_COLUMNS})
    except Unsealable as exc:
        raise StoreDamaged(f"{where}: {exc}") from None


def _digest(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise StoreDamaged(f"{where}: its digest is {_shown(value)}, not 32 bytes")
    return bytes(value).hex()


def _text(value: Any, where: str, column: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StoreDamaged(f"{where}: its {column} is {_shown(value)}, not text")
    return value


def _number(value: Any, where: str, column: str, *, real: bool = False) -> Any:
    kinds = (int, float) if real else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise StoreDamaged(f"{where}: its {column} is {_shown(value)}, not a number")
    return value


def _one_of(value: Any, allowed: tuple[str, ...], where: str, column: str) -> str:
    if value not in allowed:
        raise StoreDamaged(f"{where}: its {column} is {_shown(value)}, not one of {allowed}")
    return str(value)


def _time(value: Any, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(_number(value, where, "time", real=True), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise StoreDamaged(f"{where}: its time is {_shown(value)}, not a date") from None


def _packages(value: Any, where: str) -> dict[str, str]:
    try:
        packages = json.loads(_text(value, where, "packages"))
    except ValueError:
        packages = None
    if not isinstance(packages, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in packages.items()
    ):
        raise StoreDamaged(f"{where}: its packages are {_shown(value)}, not a JSON object")
    return packages


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _ref(row: Any, sealer: Plain = PLAIN) -> Ref:
    from stashdb.storage.sealing import Unsealable

    try:
        message = sealer.open_text(row.message)
    except Unsealable:
        message = "(a sealed message this key does not open)"
    return Ref(row.name, row.kind, row.commit_id, message, row.time)


# -- refs and revs -------------------------------------------------------------------


def head(sql: SQL) -> str:
    """The current branch."""
    found = sql.rows("SELECT value FROM meta WHERE key = 'HEAD'")
    return found[0].value if found else DEFAULT_BRANCH


def notes(sql: SQL, prefix: str) -> dict[str, str]:
    """The settings whose keys start with ``prefix`` (not ``HEAD``, ``format_version`` …)."""
    rows = sql.rows("SELECT key, value FROM meta WHERE key LIKE :p", {"p": prefix + "%"})
    return {str(r.key): str(r.value) for r in rows if str(r.key).startswith(prefix)}


def find_ref(sql: SQL, name: str) -> Ref | None:
    """The branch or tag called ``name``, or None."""
    found = sql.rows("SELECT * FROM refs WHERE name = :name", {"name": name})
    return _ref(found[0], sql.sealer) if found else None


def get_ref(sql: SQL, name: str, kind: str) -> Ref:
    """The ref ``name`` of this ``kind`` ("branch" or "tag").

    Raises:
        RefNotFound: there is none.
    """
    ref = find_ref(sql, name)
    if ref is None or ref.kind != kind:
        raise RefNotFound(kind, name)
    return ref


def list_refs(sql: SQL, kind: str | None = None) -> list[Ref]:
    """Every ref (or every ref of one ``kind``), sorted by name."""
    if kind is None:
        found = sql.rows("SELECT * FROM refs")
    else:
        found = sql.rows("SELECT * FROM refs WHERE kind = :kind", {"kind": kind})
    return sorted((_ref(r, sql.sealer) for r in found), key=lambda ref: ref.name)


def parents(sql: SQL, commit_id: str) -> list[str]:
    """The parents of one commit, first parent first."""
    found = sql.rows(
        "SELECT parent_id FROM commit_parents WHERE commit_id = :id ORDER BY position",
        {"id": commit_id},
    )
    return [r.parent_id for r in found]


def edges(sql: SQL) -> dict[str, list[str]]:
    """Every commit's parents, first parent first (one query for the whole graph)."""
    graph: dict[str, list[str]] = {}
    for r in sql.rows(
        "SELECT commit_id, parent_id FROM commit_parents ORDER BY commit_id, position"
    ):
        graph.setdefault(r.commit_id, []).append(r.parent_id)
    return graph


class Lookup:
    """What `revs.resolve` asks, answered on one connection."""

    def __init__(self, sql: SQL) -> None:
        self._sql = sql

    def head(self) -> str:
        """The current branch."""
        return head(self._sql)

    def ref_target(self, name: str) -> tuple[str, str] | None:
        """``(kind, commit id)`` of the ref ``name``, or None."""
        ref = find_ref(self._sql, name)
        return (ref.kind, ref.commit_id) if ref is not None else None

    def parents(self, commit_id: str) -> list[str]:
        """The commit's parents, first parent first."""
        return parents(self._sql, commit_id)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` commit ids starting with ``prefix``, sorted."""
        found = self._sql.rows(
            "SELECT id FROM commits WHERE id LIKE :prefix ORDER BY id LIMIT :limit",
            {"prefix": prefix + "%", "limit": limit},
        )
        return [r.id for r in found]


def resolve(sql: SQL, rev: Rev) -> str:
    """The full id of the commit ``rev`` names (see `stashdb.storage.revs`)."""
    return revs.resolve(rev, Lookup(sql))


# -- commits and manifests ---------------------------------------------------------


def load_commits(sql: SQL, ids: Sequence[str], *, entries: bool = True) -> list[Commit]:
    """The commits ``ids``, in that order, with their manifests when ``entries``.

    Raises:
        RevisionNotFound: one of them is not in the store.
    """
    rows: dict[str, Any] = {}
    parent_ids: dict[str, list[str]] = {}
    tags: dict[str, list[str]] = {}
    unique = list(dict.fromkeys(ids))
    for batch in batches(unique):
        cond, params = in_list("id", batch)
        rows.update((r.id, r) for r in sql.rows(f"SELECT * FROM commits WHERE {cond}", params))
        cond, params = in_list("commit_id", batch)
        for r in sql.rows(
            f"SELECT commit_id, parent_id FROM commit_parents WHERE {cond} "
            "ORDER BY commit_id, position",
            params,
        ):
            parent_ids.setdefault(r.commit_id, []).append(r.parent_id)
        query = f"SELECT name, commit_id FROM refs WHERE kind = 'tag' AND {cond}"
        for r in sql.rows(query, params):
            tags.setdefault(r.commit_id, []).append(r.name)
    missing = [i for i in unique if i not in rows]
    if missing:
        raise RevisionNotFound(missing[0], "no such commit in this store")
    found = manifests(sql, unique) if entries else {}
    return [
        commit_from_row(rows[i], parent_ids.get(i, []), found.get(i, []), tags.get(i, []),
                        sql.sealer)
        for i in ids
    ]


def commit_times(sql: SQL) -> dict[str, float]:
    """Every commit's time (seconds since the epoch): enough to order a log before loading it.

    Raises:
        StoreDamaged: a time is not a number (as `commit_from_row` would say).
    """
    rows = sql.rows("SELECT id, time FROM commits")
    return {r.id: float(_number(r.time, f"commit {r.id}", "time", real=True)) for r in rows}


def manifests(sql: SQL, ids: Sequence[str]) -> dict[str, list[Entry]]:
    """The entries of each commit in ``ids`` (commits with none are left out)."""
    raw: dict[str, list[Any]] = {}
    for batch in batches(list(dict.fromkeys(ids))):
        cond, params = in_list("commit_id", batch)
        for r in sql.rows(f"SELECT * FROM entries WHERE {cond}", params):
            raw.setdefault(r.commit_id, []).append(r)
    return {commit_id: entries_from_rows(rows, sql.sealer) for commit_id, rows in raw.items()}


def entries_named(sql: SQL, name: str, commit_ids: Sequence[str]) -> dict[str, Entry]:
    """``{commit id: entry}`` of the variable ``name`` in the commits that have it."""
    found: dict[str, Entry] = {}
    for batch in batches(commit_ids):
        cond, params = in_list("commit_id", batch)
        params["name"] = name
        for row in sql.rows(f"SELECT * FROM entries WHERE name = :name AND {cond}", params):
            found[row.commit_id] = entries_from_rows([row], sql.sealer)[0]
    return found


def value_hashes(sql: SQL, object_id: bytes) -> dict[int, str]:
    """Slot -> value hash recorded for the members of a group object, if any."""
    found = sql.rows(
        "SELECT DISTINCT slot, value_hash FROM entries WHERE object_id = :id "
        "AND slot IS NOT NULL AND value_hash IS NOT NULL",
        {"id": object_id},
    )
    return {r.slot: r.value_hash for r in found}


# -- objects and chunks ------------------------------------------------------------


def read_objects(sql: SQL, object_ids: Iterable[bytes], *, digests: bool = True) -> Objects:
    """Objects put back together from their chunks, every chunk checked (format rule 5).

    Returns:
        For each object id, its pickler name and parts (writable buffers), or
        the `CorruptChunk` that reading it ran into; a damaged object does
        not stop the others.
    """
    ids = list(dict.fromkeys(object_ids))
    heads: dict[bytes, tuple[str, int]] = {}
    places: list[ChunkPlace] = []
    for batch in batches(ids):
        cond, params = in_list("id", batch)
        for r in sql.rows(f"SELECT id, pickler, parts FROM objects WHERE {cond}", params):
            if isinstance(r.pickler, str):  # else: damaged, as if absent
                heads[bytes(r.id)] = (r.pickler, r.parts)
        cond, params = in_list("object_id", batch)
        places += [
            ChunkPlace(bytes(r.object_id), r.part, r.seq, bytes(r.chunk_id), r.raw_size)
            for r in sql.rows(
                "SELECT object_id, part, seq, chunk_id, raw_size FROM object_chunks "
                f"WHERE {cond} ORDER BY object_id, part, seq",
                params,
            )
            if isinstance(r.chunk_id, (bytes, bytearray, memoryview))
        ]
    return assemble(ids, heads, places, lambda chunk_ids: iter_chunks(sql, chunk_ids), sql.sealer,
                    digests=digests)


def iter_chunks(sql: SQL, chunk_ids: Sequence[bytes]) -> Iterator[tuple[bytes, int, Any]]:
    """``(chunk id, codec, stored bytes)`` of the chunks found among ``chunk_ids``."""
    for batch in batches(chunk_ids, CHUNK_BATCH):
        cond, params = in_list("id", batch)
        for r in sql.rows(f"SELECT id, codec, data FROM chunks WHERE {cond}", params):
            if isinstance(r.data, (bytes, bytearray, memoryview)):  # else: as if missing
                yield bytes(r.id), r.codec, r.data


def object_facts(sql: SQL, object_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
    """``{object id: (stored size, digest)}`` of the objects the store has among ``object_ids``."""
    return _facts(sql, "SELECT id, stored_size AS size, digest FROM objects", object_ids)


def chunk_facts(sql: SQL, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
    """``{chunk id: (stored bytes, digest)}`` of the chunks the store has among ``chunk_ids``."""
    return _facts(sql, "SELECT id, LENGTH(data) AS size, digest FROM chunks", chunk_ids)


def _facts(sql: SQL, select: str, ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
    found: dict[bytes, tuple[int, bytes | None]] = {}
    for batch in batches(list(ids)):
        cond, params = in_list("id", batch)
        found.update(
            (bytes(r.id), (r.size, bytes(r.digest) if r.digest is not None else None))
            for r in sql.rows(f"{select} WHERE {cond}", params)
        )
    return found


def damaged(sql: SQL) -> tuple[set[bytes], set[bytes]]:
    """Chunk ids and object ids found damaged, and not written again since (revision 0004)."""
    chunks: set[bytes] = set()
    objects: set[bytes] = set()
    for r in sql.rows("SELECT id, kind FROM damaged"):
        (chunks if r.kind == "chunk" else objects).add(bytes(r.id))
    return chunks, objects


def objects_of_commits(sql: SQL, commit_ids: Sequence[str]) -> set[bytes]:
    """The ids of the objects the manifests of ``commit_ids`` name."""
    found: set[bytes] = set()
    for batch in batches(list(commit_ids)):
        cond, params = in_list("commit_id", batch)
        found.update(bytes(r.object_id) for r in sql.rows(
            f"SELECT DISTINCT object_id FROM entries WHERE {cond} AND object_id IS NOT NULL",
            params))
    return found


def referenced_objects(sql: SQL) -> set[bytes]:
    """The ids of the objects any manifest names."""
    return {bytes(r.object_id) for r in sql.rows(
        "SELECT DISTINCT object_id FROM entries WHERE object_id IS NOT NULL")}


def ids_in(sql: SQL, table: str, ids: Sequence[_T]) -> set[_T]:
    """The ids among ``ids`` that ``table`` (commits, objects or chunks) holds, asked in batches.

    Reads ids only, never a chunk's bytes: what a transfer asks the other side.
    """
    found: set[Any] = set()
    for batch in batches(list(ids)):
        cond, params = in_list("id", batch)
        found.update(r.id if isinstance(r.id, str) else bytes(r.id)
                     for r in sql.rows(f"SELECT id FROM {table} WHERE {cond}", params))
    return found


def chunks_of_objects(sql: SQL, object_ids: Sequence[bytes]) -> set[bytes]:
    """The ids of the chunks the layouts of ``object_ids`` name."""
    found: set[bytes] = set()
    for batch in batches(list(object_ids)):
        cond, params = in_list("object_id", batch)
        found.update(bytes(r.chunk_id) for r in sql.rows(
            f"SELECT chunk_id FROM object_chunks WHERE {cond}", params))
    return found


def incomplete_objects(sql: SQL, object_ids: Iterable[bytes]) -> set[bytes]:
    """The objects among ``object_ids`` that are missing, or miss one of their chunks."""
    incomplete: set[bytes] = set()
    for batch in batches(list(object_ids)):
        cond, params = in_list("id", batch)
        present = {bytes(r.id) for r in sql.rows(f"SELECT id FROM objects WHERE {cond}", params)}
        incomplete.update(set(batch) - present)
        cond, params = in_list("oc.object_id", batch)
        incomplete.update(bytes(r.object_id) for r in sql.rows(
            "SELECT DISTINCT oc.object_id FROM object_chunks AS oc "
            f"LEFT JOIN chunks AS c ON c.id = oc.chunk_id WHERE {cond} AND c.id IS NULL",
            params,
        ))
    return incomplete


# -- the whole store -------------------------------------------------------------------


def stats(sql: SQL) -> StoreStats:
    """Counts and sizes of the whole store (metadata and row sizes only)."""

    def count(table: str) -> int:
        return int(sql.rows(f"SELECT COUNT(*) AS n FROM {table}")[0].n)

    sizes = sql.rows(
        "SELECT COALESCE(SUM(raw_size), 0) AS raw, COALESCE(SUM(LENGTH(data)), 0) AS stored "
        "FROM chunks"
    )[0]
    logical = sql.rows(
        "SELECT COALESCE(SUM(o.raw_size), 0) AS logical FROM "
        "(SELECT DISTINCT commit_id, object_id FROM entries WHERE object_id IS NOT NULL) AS e "
        "JOIN objects AS o ON o.id = e.object_id"
    )[0].logical
    refs = list_refs(sql)
    return StoreStats(
        commits=count("commits"),
        branches=sum(r.kind == "branch" for r in refs),
        tags=sum(r.kind == "tag" for r in refs),
        objects=count("objects"),
        chunks=count("chunks"),
        raw_bytes=int(sizes.raw),
        stored_bytes=int(sizes.stored),
        logical_bytes=int(logical),
    )


def signatures(sql: SQL, commit_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """``{commit id: (key id, signature)}`` of the signed commits among ``commit_ids``."""
    found: dict[str, tuple[str, bytes]] = {}
    for batch in batches(list(commit_ids)):
        cond, params = in_list("commit_id", batch)
        for r in sql.rows(f"SELECT commit_id, key_id, signature FROM signatures WHERE {cond}",
                          params):
            if isinstance(r.signature, (bytes, bytearray, memoryview)):  # else: unsigned
                found[r.commit_id] = (str(r.key_id), bytes(r.signature))
    return found


def trusted_key_rows(sql: SQL) -> list[Any]:
    """The rows of the store's trusted keys (each checked by the caller against its signer)."""
    return list(sql.rows(
        "SELECT key_id, public_key, name, added, revoked, signer, signature FROM trusted_keys "
        "ORDER BY key_id", {}))
