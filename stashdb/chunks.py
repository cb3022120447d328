"""Chunks and objects: splitting, hashing, compressing, and storing them.

An *object* is one pickled value (or group of values): a pickle stream plus its
out-of-band buffers, each called a *part*. Each part is cut into fixed-size
chunks addressed by the xxh3-128 of their uncompressed bytes, so a value that
did not change costs its hashing and nothing else, and a small change inside a
large buffer rewrites only the chunks it touches (docs/format.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash
from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from stashdb.db import schema
from stashdb.db.engine import read_transaction, write_transaction
from stashdb.errors import CorruptChunk

__all__ = [
    "CHUNK_SIZE",
    "ChunkStore",
    "ObjectWriter",
    "StoredObject",
    "chunk_id",
    "object_id_of",
]

#: Largest chunk. A few MiB keeps every row far below the ~1 GB value limit of
#: SQLite and PostgreSQL while keeping per-row overhead small (DESIGN.md rule 4).
CHUNK_SIZE = 4 * 1024 * 1024

CODEC_RAW = 0
CODEC_ZSTD = 1

#: Parts smaller than this are stored raw: compressing them saves nothing worth the time.
_MIN_COMPRESS = 512
#: Bytes of a part compressed as a sample to decide whether the rest is worth it.
_SAMPLE = 64 * 1024
#: Store compressed only when it saves at least this fraction (random floats do not compress).
_MAX_RATIO = 0.9
#: Pending chunk bytes that trigger a write transaction.
_FLUSH_BYTES = 64 * 1024 * 1024
#: Bound parameters per IN (...) query; SQLite's limit is 32766, PostgreSQL's 65535.
_BATCH = 500


def chunk_id(data: Any) -> bytes:
    """The 16-byte id of a chunk: xxh3-128 of its uncompressed bytes."""
    return xxhash.xxh3_128_digest(data)


def object_id_of(pickler: str, parts: Sequence[Any]) -> bytes:
    """The id an object made of ``parts`` has (or would have) in the store."""
    views = _views(parts)
    return _object_id(pickler, views, _layout(views))


def _views(parts: Sequence[Any]) -> list[memoryview]:
    return [memoryview(p).cast("B") for p in parts]


def _layout(views: list[memoryview]) -> list[list[tuple[bytes, memoryview]]]:
    return [[(chunk_id(c), c) for c in _split(v)] for v in views]


def _compressor() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=1)


def _decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def insert_if_absent(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose primary key exists (format rule 1)."""
    if not rows:
        return
    name = conn.dialect.name
    if name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    elif name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - other backends come with their own issue
        raise NotImplementedError(f"backend {name!r} is not supported")


@dataclass(frozen=True)
class StoredObject:
    """What writing one object did."""

    object_id: bytes
    raw_size: int
    stored_size: int
    reused: bool  # it was already in the store: nothing written
    chunks_written: int
    bytes_written: int


@dataclass
class _Pending:
    chunks: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    object_chunks: list[dict[str, Any]] = field(default_factory=list)
    stored_sizes: dict[bytes, int] = field(default_factory=dict)  # object id -> stored size
    nbytes: int = 0


def _split(part: memoryview) -> Iterator[memoryview]:
    if part.nbytes == 0:
        yield part
        return
    for start in range(0, part.nbytes, CHUNK_SIZE):
        yield part[start : start + CHUNK_SIZE]


class ObjectWriter:
    """Writes the objects of one commit, batching chunk inserts.

    Chunks and objects are flushed in write transactions of about 64 MiB, each
    chunk before the object that uses it, so a crash leaves at most unreachable
    rows (format rule 2). Call `flush` before writing anything that refers to
    the objects.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending = _Pending()
        self._compressor: Any = None

    def put(self, pickler: str, parts: Sequence[Any]) -> StoredObject:
        """Store one object made of ``parts`` (the pickle stream, then its buffers)."""
        views = _views(parts)
        layout = _layout(views)
        object_id = _object_id(pickler, views, layout)
        raw_size = sum(v.nbytes for v in views)

        known = self._pending.stored_sizes.get(object_id)
        if known is None:
            known = self._find_object(object_id)
        if known is not None:
            return StoredObject(object_id, raw_size, known, True, 0, 0)

        ids = {cid for part in layout for cid, _ in part}
        existing = self._existing_chunks(ids)
        written = 0
        new_chunks = 0
        stored_size = 0
        for part_no, (view, part) in enumerate(zip(views, layout)):
            compress = self._worth_compressing(view)
            for seq, (cid, data) in enumerate(part):
                self._pending.object_chunks.append(
                    {"object_id": object_id, "part": part_no, "seq": seq,
                     "chunk_id": cid, "raw_size": data.nbytes}
                )
                if cid in existing:
                    stored_size += existing[cid]
                    continue
                row = self._encode(cid, data, compress)
                existing[cid] = len(row["data"])
                self._pending.chunks[cid] = row
                stored_size += existing[cid]
                written += existing[cid]
                new_chunks += 1
                self._pending.nbytes += existing[cid]
        self._pending.objects.append(
            {"id": object_id, "pickler": pickler, "parts": len(views),
             "raw_size": raw_size, "stored_size": stored_size}
        )
        self._pending.stored_sizes[object_id] = stored_size
        if self._pending.nbytes >= _FLUSH_BYTES:
            self.flush()
        return StoredObject(object_id, raw_size, stored_size, False, new_chunks, written)

    def flush(self) -> None:
        """Write every pending chunk and object in one transaction."""
        pending = self._pending
        if not pending.objects and not pending.chunks:
            return
        with write_transaction(self._engine) as conn:
            rows = list(pending.chunks.values())
            for start in range(0, len(rows), 64):
                insert_if_absent(conn, schema.chunks, rows[start : start + 64])
            insert_if_absent(conn, schema.objects, pending.objects)
            insert_if_absent(conn, schema.object_chunks, pending.object_chunks)
        self._pending = _Pending()

    def _find_object(self, object_id: bytes) -> int | None:
        with self._engine.connect() as conn:
            return conn.execute(
                select(schema.objects.c.stored_size).where(schema.objects.c.id == object_id)
            ).scalar()

    def _existing_chunks(self, ids: set[bytes]) -> dict[bytes, int]:
        """Stored sizes of the chunks among ``ids`` that the store (or this batch) has."""
        found = {cid: len(self._pending.chunks[cid]["data"])
                 for cid in ids if cid in self._pending.chunks}
        todo = [cid for cid in ids if cid not in found]
        if not todo:
            return found
        c = schema.chunks.c
        with self._engine.connect() as conn:
            for start in range(0, len(todo), _BATCH):
                batch = todo[start : start + _BATCH]
                query = select(c.id, func.length(c.data)).where(c.id.in_(batch))
                found.update({bytes(cid): size for cid, size in conn.execute(query)})
        return found

    def _worth_compressing(self, view: memoryview) -> bool:
        if view.nbytes < _MIN_COMPRESS:
            return False
        if self._compressor is None:
            self._compressor = _compressor()
        sample = view[:_SAMPLE]
        return len(self._compressor.compress(sample)) <= _MAX_RATIO * sample.nbytes

    def _encode(self, cid: bytes, data: memoryview, compress: bool) -> dict[str, Any]:
        if compress:
            packed = self._compressor.compress(data)
            if len(packed) < data.nbytes:
                return {"id": cid, "raw_size": data.nbytes, "codec": CODEC_ZSTD, "data": packed}
        return {"id": cid, "raw_size": data.nbytes, "codec": CODEC_RAW, "data": bytes(data)}


def _object_id(
    pickler: str, views: list[memoryview], layout: list[list[tuple[bytes, memoryview]]]
) -> bytes:
    # The id covers who pickled it and the exact chunk layout of every part.
    h = xxhash.xxh3_128()
    h.update(pickler.encode())
    for view, part in zip(views, layout):
        h.update(view.nbytes.to_bytes(8, "little"))
        for cid, _ in part:
            h.update(cid)
    return h.digest()


class ChunkStore:
    """Reads objects back, checking every chunk against its hash (format rule 5)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def writer(self) -> ObjectWriter:
        return ObjectWriter(self._engine)

    def read(self, object_id: bytes) -> tuple[str, list[Any]]:
        """The pickler name and the parts of an object (stream first, then buffers).

        Raises:
            CorruptChunk: a chunk is missing or does not match its hash.
        """
        oc, ob = schema.object_chunks.c, schema.objects.c
        with read_transaction(self._engine) as conn:
            head = conn.execute(select(ob.pickler, ob.parts).where(ob.id == object_id)).first()
            if head is None:
                raise CorruptChunk(object_id.hex(), None)
            layout = conn.execute(
                select(oc.part, oc.seq, oc.chunk_id, oc.raw_size)
                .where(oc.object_id == object_id)
                .order_by(oc.part, oc.seq)
            ).all()
            sizes = [0] * head.parts
            for row in layout:
                sizes[row.part] += row.raw_size
            # One preallocated buffer per part: a fresh bytes per chunk costs page faults.
            parts: list[Any] = [bytearray(n) for n in sizes]
            offsets = [0] * head.parts
            by_id: dict[bytes, list[tuple[int, int]]] = {}
            for row in layout:
                by_id.setdefault(bytes(row.chunk_id), []).append((row.part, offsets[row.part]))
                offsets[row.part] += row.raw_size
            seen = set()
            for cid, codec, data in self._fetch(conn, list(by_id)):
                seen.add(cid)
                try:
                    raw = _decompress(data) if codec == CODEC_ZSTD else data
                except Exception:  # damaged compressed bytes: report them as damage
                    raise CorruptChunk(cid.hex(), chunk_id(data).hex()) from None
                got = chunk_id(raw)
                if got != cid:
                    raise CorruptChunk(cid.hex(), got.hex())
                for part, offset in by_id[cid]:
                    parts[part][offset : offset + len(raw)] = raw
            missing = [cid for cid in by_id if cid not in seen]
            if missing:
                raise CorruptChunk(missing[0].hex(), None)
        return head.pickler, parts

    def _fetch(self, conn: Connection, ids: Iterable[bytes]) -> Iterator[tuple[bytes, int, bytes]]:
        ch = schema.chunks.c
        todo = list(ids)
        for start in range(0, len(todo), 64):
            batch = todo[start : start + 64]
            for cid, codec, data in conn.execute(
                select(ch.id, ch.codec, ch.data).where(ch.id.in_(batch))
            ):
                yield bytes(cid), codec, data
