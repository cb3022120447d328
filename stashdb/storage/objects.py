"""Writing objects as chunks, in batched write transactions.

How parts are cut, named and put back together is `stashdb.storage.chunking`;
what the store already has is asked through the read side
(`stashdb.storage.reader`), so an unchanged value costs its hashing and one
batched lookup, and nothing is written twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Table, bindparam, update

from stashdb.errors import InvalidArguments, StoreDamaged
from stashdb.storage import chunking, schema
from stashdb.storage.chunking import CODEC_RAW, CODEC_ZSTD
from stashdb.storage.engine import Database
from stashdb.storage.sealing import PLAIN, Plain

if TYPE_CHECKING:
    from stashdb.storage.bundle import BundleObject

__all__ = ["Lookups", "ObjectWriter", "StoredObject", "fill_missing_digests", "insert_if_absent"]

#: Parts smaller than this are stored raw: compressing them saves nothing worth the time.
_MIN_COMPRESS = 512
#: Bytes of a part compressed as a sample to decide whether the rest is worth it.
_SAMPLE = 64 * 1024
#: Store compressed only when it saves at least this fraction (random floats do not compress).
_MAX_RATIO = 0.9
#: Pending chunk bytes that trigger a write transaction.
_FLUSH_BYTES = 64 * 1024 * 1024
#: Chunk rows per INSERT statement (bench/bench_settings.py: 16, 64 and 256 measure alike).
_INSERT_ROWS = 64


class Lookups(Protocol):
    """What a writer asks the store about: which objects and chunks it has already."""

    def object_facts(self, object_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
        """``{object id: (stored size, digest)}`` of those the store has."""
        ...

    def chunk_facts(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
        """``{chunk id: (stored bytes, digest)}`` of those the store has."""
        ...

    def damaged(self) -> tuple[set[bytes], set[bytes]]:
        """Chunk ids and object ids found damaged: not to be reused."""
        ...


def insert_if_absent(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose primary key exists (format rule 1)."""
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(), rows)


def replace_damaged(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, writing over those whose primary key exists: chunks known damaged.

    The one exception to format rule 1: a chunk found damaged is useless, and
    the next commit of its bytes writes them again (revision 0004).
    """
    if not rows:
        return
    statement = _insert(conn, table)
    keys = [c.name for c in table.primary_key.columns]
    update = {c: statement.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=update), rows)


def fill_missing_digests(conn: Connection, table: Table, digests: dict[bytes, bytes]) -> None:
    """Give rows written before revision 0005 (``digest`` NULL) the digests just computed."""
    if digests:
        conn.execute(
            update(table).where(table.c.id == bindparam("key"), table.c.digest.is_(None))
            .values(digest=bindparam("value")),
            [{"key": k, "value": v} for k, v in digests.items()],
        )
        digests.clear()


def _unmark(conn: Connection, ids: list[bytes]) -> None:
    """Drop the damage marks of ``ids``, written again (in the writing transaction)."""
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        conn.execute(schema.damaged.delete().where(schema.damaged.c.id.in_(batch)))


def _insert(conn: Connection, table: Table) -> Any:
    # Dialect modules load on first use: PostgreSQL's costs ~20 ms to import.
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    raise NotImplementedError(f"backend {name!r} is not supported")  # pragma: no cover


@dataclass(frozen=True)
class StoredObject:
    """What writing one object did."""

    object_id: bytes
    raw_size: int
    stored_size: int
    reused: bool  # it was already in the store: nothing written
    chunks_written: int
    bytes_written: int
    digest: bytes  # `chunking.object_digest`: what a signature covers


@dataclass
class _Pending:
    chunks: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    object_chunks: list[dict[str, Any]] = field(default_factory=list)
    #: object id -> (stored size, digest)
    stored_sizes: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)
    nbytes: int = 0


class ObjectWriter:
    """Writes the objects of one commit, batching chunk inserts.

    Chunks and objects are flushed in write transactions of about 64 MiB, each
    chunk before the object that uses it, so a crash leaves at most unreachable
    rows (format rule 2). Call `flush` before writing anything that refers to
    the objects.
    """

    def __init__(
        self, database: Database, lookups: Lookups, *, compress: bool = True,
        sealer: Plain = PLAIN,
    ) -> None:
        self._database = database
        self._lookups = lookups
        self._sealer = sealer  # an encrypted store: keyed ids, sealed chunks
        self._compress = compress  # False: every chunk raw (same ids, same values)
        self._pending = _Pending()
        self._written: dict[bytes, int] = {}  # chunks flushed ahead of their objects
        #: BLAKE3 of every chunk this writer met (written or found); hashed once.
        self._digests: dict[bytes, bytes] = {}
        #: Rows written before revision 0005 met again: their digests, to fill in.
        self._fill_chunks: dict[bytes, bytes] = {}
        self._fill_objects: dict[bytes, bytes] = {}
        self._undigested: set[bytes] = set()  # chunks in the store without a digest
        #: Digests the store claims for chunks it has: compared, never trusted.
        self._claimed: dict[bytes, bytes] = {}
        #: Objects whose rows are not the bytes committed: replaced when written.
        self._replace_objects: set[bytes] = set()
        self._compressor: Any = None
        #: Seconds spent hashing (ids and digests) and writing (compressing, inserting).
        self.seconds = {"hashing": 0.0, "writing": 0.0}
        # Found damaged (a read, verify): never reused; written again, then unmarked.
        self._bad_chunks, self._bad_objects = lookups.damaged()

    def object_id_of(self, pickler: str, parts: Sequence[Any]) -> bytes:
        """The id an object made of ``parts`` has in this store (keyed if it is encrypted)."""
        return chunking.object_id_of(pickler, parts, self._sealer)

    def put(self, pickler: str, parts: Sequence[Any]) -> StoredObject:
        """Store one object made of ``parts`` (the pickle stream, then its buffers)."""
        return self.put_many([(pickler, parts)])[0]

    def put_many(self, objects: Sequence[tuple[str, Sequence[Any]]]) -> list[StoredObject]:
        """Store several objects, asking the store about all of them in one query each.

        A namespace of many small values is dominated by per-query cost, not
        by bytes: batching makes 1000 unchanged values one lookup, not 1000.
        """
        started = time.perf_counter()
        hashing = 0.0
        prepared = []
        for pickler, parts in objects:
            views = chunking.flat_views(parts)
            chunked = chunking.layout(parts, views, self._sealer)
            prepared.append((pickler, views, chunked, chunking.object_id(pickler, views, chunked)))
        hashing += time.perf_counter() - started
        known = self._known_objects({object_id for *_, object_id in prepared})
        missing = {
            cid
            for *_, layout, object_id in prepared
            if object_id not in known
            for part in layout
            for cid, _ in part
        }
        existing = self._existing_chunks(missing)
        results = []
        for pickler, views, layout, object_id in prepared:
            raw_size = sum(v.nbytes for v in views)
            # From the bytes being committed, always: a digest in the store is only a
            # claim (anyone who can write the database can write one), and this is
            # what the commit's signature will vouch for.
            digest_started = time.perf_counter()
            ours = self._digest_of(pickler, layout)
            hashing += time.perf_counter() - digest_started
            if object_id in known and known[object_id][1] not in (None, ours):
                # The store's object is not these bytes (changed behind our back):
                # not reused; written anew, its rows replaced.
                del known[object_id]
                self._replace_objects.add(object_id)
                existing.update(self._existing_chunks(
                    {cid for part in layout for cid, _ in part} - existing.keys()))
            if object_id in known:
                size, digest = known[object_id]
                if digest is None:  # stored before revision 0005: digest it once, now
                    self._fill_objects[object_id] = ours
                    known[object_id] = (size, ours)
                results.append(StoredObject(object_id, raw_size, size, True, 0, 0, ours))
            else:
                stored = self._add(pickler, views, layout, object_id, existing)
                known[object_id] = (stored.stored_size, stored.digest)
                results.append(stored)
        if self._pending.nbytes >= _FLUSH_BYTES:
            self.flush()
        self.seconds["hashing"] += hashing
        self.seconds["writing"] += time.perf_counter() - started - hashing
        return results

    def _add(
        self,
        pickler: str,
        views: list[memoryview],
        layout: list[list[tuple[bytes, memoryview]]],
        object_id: bytes,
        existing: dict[bytes, int],
    ) -> StoredObject:
        written = new_chunks = stored_size = 0
        for part_no, (view, part) in enumerate(zip(views, layout)):
            compress = self._compress and self._worth_compressing(view)
            for seq, (cid, data) in enumerate(part):
                self._pending.object_chunks.append(
                    {"object_id": object_id, "part": part_no, "seq": seq,
                     "chunk_id": cid, "raw_size": data.nbytes}
                )
                digest = self._chunk_digest(cid, data)
                if cid in existing and self._claimed.get(cid, digest) != digest:
                    # Stored bytes with this id that are not these (an xxh3 collision
                    # someone made): written again over them, like a damaged chunk.
                    del existing[cid]
                    self._bad_chunks.add(cid)
                if cid not in existing:
                    row = self._encode(cid, data, compress)
                    row["digest"] = digest
                    existing[cid] = len(row["data"])
                    self._pending.chunks[cid] = row
                    self._pending.nbytes += existing[cid]
                    written += existing[cid]
                    new_chunks += 1
                    if self._pending.nbytes >= _FLUSH_BYTES:
                        # Chunks may go before their object: memory stays bounded
                        # however big one value is (the object row comes later).
                        self._flush_chunks()
                stored_size += existing[cid]
        raw_size = sum(v.nbytes for v in views)
        digest = self._digest_of(pickler, layout)
        self._pending.objects.append(
            {"id": object_id, "pickler": pickler, "parts": len(views),
             "raw_size": raw_size, "stored_size": stored_size, "created": time.time(),
             "digest": digest}
        )
        self._pending.stored_sizes[object_id] = (stored_size, digest)
        return StoredObject(object_id, raw_size, stored_size, False, new_chunks, written, digest)

    def _digest_of(self, pickler: str, layout: list[list[tuple[bytes, memoryview]]]) -> bytes:
        """The object's digest: from the chunks' digests, each hashed at most once."""
        rows = [
            (part_no, seq, data.nbytes, self._chunk_digest(cid, data))
            for part_no, part in enumerate(layout)
            for seq, (cid, data) in enumerate(part)
        ]
        return chunking.object_digest(pickler, rows)

    def _chunk_digest(self, cid: bytes, data: Any) -> bytes:
        """A chunk's digest: known (this writer, the store) or hashed now, once."""
        digest = self._digests.get(cid)
        if digest is None:
            digest = self._sealer.digest(data)
            self._digests[cid] = digest
            if cid in self._undigested:  # in the store from before revision 0005
                self._fill_chunks[cid] = digest
        return digest

    def put_stored(
        self, objects: Sequence[BundleObject], chunks: dict[bytes, tuple[int, int, Any, bytes]]
    ) -> tuple[int, int, set[bytes]]:
        """Add objects already cut into chunks (a bundle's), skipping what the store has.

        Args:
            objects: the objects, each with its chunk layout.
            chunks: ``{chunk id: (codec, raw size, stored bytes, digest)}``, checked by the
                caller; chunks the store has may be left out (a transfer sends only
                what the store lacks). Their digests are the store's own.

        Returns:
            Chunks and bytes written, and the ids of the objects added.
        """
        if self._sealer.encrypted:
            raise InvalidArguments(
                "a state cannot be added to an encrypted store yet: its chunk ids and bytes "
                "would have to be sealed anew under the store's key"
            )
        known = self._known_objects({o.id for o in objects})
        wanted = [o for o in objects if o.id not in known]
        existing = self._existing_chunks({cid for o in wanted for _, _, cid, _ in o.layout})
        written = new_chunks = 0
        for obj in wanted:
            for part, seq, cid, size in obj.layout:
                self._pending.object_chunks.append(
                    {"object_id": obj.id, "part": part, "seq": seq, "chunk_id": cid,
                     "raw_size": size}
                )
                if cid not in chunks:
                    if cid not in existing:
                        raise StoreDamaged(f"chunk {cid.hex()[:16]} of object {obj.id.hex()[:16]} "
                                           "was not sent, and this store lacks it")
                    continue
                codec, raw_size, data, digest = chunks[cid]
                self._digests[cid] = digest
                if cid in self._undigested:
                    self._fill_chunks[cid] = digest
                if cid in existing:
                    continue
                self._pending.chunks[cid] = {
                    "id": cid, "raw_size": raw_size, "codec": codec, "data": data,
                    "digest": digest,
                }
                existing[cid] = len(data)
                self._pending.nbytes += len(data)
                written += len(data)
                new_chunks += 1
                if self._pending.nbytes >= _FLUSH_BYTES:
                    self._flush_chunks()
            digests = [self._digests.get(cid) or self._claimed.get(cid)
                       for _, _, cid, _ in obj.layout]
            # A chunk from before revision 0005 has no digest yet: nor has its object
            # (NULL, as then; filled when a commit meets it again).
            whole: bytes | None = None if None in digests else chunking.object_digest(obj.pickler, [
                (part, seq, size, chunk_digest)
                for (part, seq, _, size), chunk_digest in zip(obj.layout, digests)
                if chunk_digest is not None
            ])
            self._pending.objects.append(
                {"id": obj.id, "pickler": obj.pickler, "parts": obj.parts,
                 "raw_size": obj.raw_size, "stored_size": obj.stored_size,
                 "created": time.time(), "digest": whole}
            )
            self._pending.stored_sizes[obj.id] = (obj.stored_size, whole)
            known[obj.id] = (obj.stored_size, whole)
        return new_chunks, written, {o.id for o in wanted}

    def flush(self) -> None:
        """Write every pending chunk and object in one transaction."""
        pending = self._pending
        if not pending.objects and not pending.chunks:
            return
        with self._database.write() as conn:
            self.write_pending(conn)
        self.forget_pending()

    def write_pending(self, conn: Connection) -> None:
        """Insert the pending chunks and objects in the caller's write transaction.

        A commit writes its last objects in the transaction that writes the
        commit itself: one transaction (one fsync) for a small commit, not two.
        The rows stay pending until `forget_pending`, in case that transaction
        rolls back and is retried.
        """
        pending = self._pending
        self._insert_chunks(conn)
        replaced = [o["id"] for o in pending.objects if o["id"] in self._replace_objects]
        for start in range(0, len(replaced), 500):
            batch = replaced[start : start + 500]
            conn.execute(schema.object_chunks.delete().where(
                schema.object_chunks.c.object_id.in_(batch)))
            conn.execute(schema.objects.delete().where(schema.objects.c.id.in_(batch)))
        insert_if_absent(conn, schema.objects, pending.objects)
        insert_if_absent(conn, schema.object_chunks, pending.object_chunks)
        fill_missing_digests(conn, schema.chunks, self._fill_chunks)
        fill_missing_digests(conn, schema.objects, self._fill_objects)
        # An object found damaged is whole again: its chunks are in (now or before).
        _unmark(conn, [o["id"] for o in pending.objects if o["id"] in self._bad_objects])

    def written_whole(self) -> set[bytes]:
        """Pending objects whose every chunk is pending too: complete once written.

        A commit need not check those in the store (no gc can have taken a
        chunk written in the commit's own transaction).
        """
        chunks = self._pending.chunks
        partial = {
            row["object_id"] for row in self._pending.object_chunks if row["chunk_id"] not in chunks
        }
        return {o["id"] for o in self._pending.objects} - partial

    def detach(self) -> None:
        """Copy pending chunk bytes that are still views of live buffers."""
        for row in self._pending.chunks.values():
            if isinstance(row["data"], memoryview):
                row["data"] = bytes(row["data"])

    def forget_pending(self) -> None:
        """The pending rows are in the store: drop them (after `write_pending` committed)."""
        self._pending = _Pending()

    def _flush_chunks(self) -> None:
        """Write the pending chunks only (their object rows follow in a later flush)."""
        with self._database.write() as conn:
            self._insert_chunks(conn)
        # Their sizes stay known to this writer: later objects may reuse them.
        self._written.update({cid: len(row["data"]) for cid, row in self._pending.chunks.items()})
        self._pending.chunks.clear()
        self._pending.nbytes = 0

    def _insert_chunks(self, conn: Connection) -> None:
        rows = list(self._pending.chunks.values())
        fresh = [r for r in rows if r["id"] not in self._bad_chunks]
        for start in range(0, len(fresh), _INSERT_ROWS):
            insert_if_absent(conn, schema.chunks, fresh[start : start + _INSERT_ROWS])
        again = [r for r in rows if r["id"] in self._bad_chunks]
        for row in again:
            replace_damaged(conn, schema.chunks, [row])
        _unmark(conn, [r["id"] for r in again])

    def _known_objects(self, ids: set[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
        """Stored sizes and digests of the objects among ``ids`` the store (or this batch) has."""
        pending = self._pending.stored_sizes
        found: dict[bytes, tuple[int, bytes | None]] = {
            oid: pending[oid] for oid in ids if oid in pending
        }
        rest = ids - found.keys() - self._bad_objects
        if rest:
            found.update(self._lookups.object_facts(rest))
        return found

    def _existing_chunks(self, ids: set[bytes]) -> dict[bytes, int]:
        """Stored sizes of the chunks among ``ids`` that the store (or this batch) has.

        Their digests are noted on the way: a chunk found needs no hashing.
        """
        pending = self._pending.chunks
        found = {cid: len(pending[cid]["data"]) for cid in ids if cid in pending}
        found.update({cid: self._written[cid] for cid in ids if cid in self._written})
        rest = ids - found.keys() - self._bad_chunks
        if rest:
            for cid, (size, digest) in self._lookups.chunk_facts(rest).items():
                found[cid] = size
                if digest is None:
                    self._undigested.add(cid)
                else:
                    self._claimed[cid] = bytes(digest)
        return found

    def _worth_compressing(self, view: memoryview) -> bool:
        if view.nbytes < _MIN_COMPRESS:
            return False
        if self._compressor is None:
            self._compressor = chunking.compressor()
        sample = view[:_SAMPLE]
        return len(self._compressor.compress(sample)) <= _MAX_RATIO * sample.nbytes

    def _encode(self, cid: bytes, data: memoryview, compress: bool) -> dict[str, Any]:
        codec, stored = CODEC_RAW, data  # the view itself: the driver reads it in place
        if compress:
            packed = self._compressor.compress(data)
            if len(packed) < data.nbytes:
                codec, stored = CODEC_ZSTD, packed
        codec, stored = self._sealer.seal(cid, codec, stored)
        return {"id": cid, "raw_size": data.nbytes, "codec": codec, "data": stored}
