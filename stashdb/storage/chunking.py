"""Cutting parts into chunks, naming them, and putting them back together.

Pure byte logic, shared by the writer (`stashdb.storage.objects`) and the read
side (`stashdb.storage.queries`, whichever driver runs it); it imports no
database library.

An *object* is one pickled value (or group of values): a pickle stream plus its
out-of-band buffers, each called a *part*. Each part is cut into chunks of at
most 4 MiB addressed by the xxh3-128 of their uncompressed bytes, so a value
that did not change costs its hashing and nothing else, and a small change
inside a large buffer rewrites only the chunks it touches (docs/format.md).
A two-dimensional buffer with large rows (a pandas block: one row per column)
is cut row by row, so a column keeps its chunks when its block is re-split.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import xxhash

from stashdb.errors import CorruptChunk
from stashdb.storage.sealing import PLAIN, SEALED, Plain

__all__ = [
    "CHUNK_SIZE",
    "CODEC_RAW",
    "CODEC_ZSTD",
    "Assembled",
    "ChunkPlace",
    "assemble",
    "chunk_digest",
    "chunk_id",
    "layout_id",
    "object_digest",
    "object_id_of",
    "verify_chunk",
]

#: Largest chunk. A few MiB keeps every row far below the ~1 GB value limit of
#: SQLite and PostgreSQL while keeping per-row overhead small (DESIGN.md rule 4).
#: Measured (bench/bench_settings.py): 1 MiB and 4 MiB commit 640 MB equally
#: fast; 1 MiB rewrites 5.2 MB for a 1 % in-place change against 8.4 MB, at
#: four times the rows; 16 MiB is slower to check out and rewrites 16.8 MB.
CHUNK_SIZE = 4 * 1024 * 1024

CODEC_RAW = 0
CODEC_ZSTD = 1

#: Rows of a 2-D buffer at least this large start chunks of their own. pandas
#: keeps the columns of one dtype in one block (a row each) and re-splits the
#: block when a column is replaced: the other columns' bytes shift, and plain
#: fixed-size chunks would all change. Smaller rows are not worth the extra chunks.
ROW_ALIGN_MIN = 1024 * 1024


def chunk_id(data: Any) -> bytes:
    """The 16-byte id of a chunk: xxh3-128 of its uncompressed bytes."""
    return xxhash.xxh3_128_digest(data)


def chunk_digest(data: Any) -> bytes:
    """The 32-byte BLAKE3 digest of a chunk's uncompressed bytes (what a signature covers).

    xxh3 ids are the dedup address: fast, but anyone can make two byte strings
    with one id. BLAKE3 is collision-resistant and the fastest such hash here
    (5.5 GB/s on one core against 0.9 for BLAKE2b and 1.1 for SHA-256:
    docs/security.md). It releases the GIL, so a read-ahead thread hashes
    while the caller unpickles.
    """
    return PLAIN.digest(data)


def object_digest(pickler: str, rows: Iterable[tuple[int, int, int, bytes]]) -> bytes:
    """An object's digest: BLAKE3 over its pickler and each ``(part, seq, size, chunk digest)``.

    A tree: an object that shares chunks with another needs only its new
    chunks hashed (the others' digests are in the store).
    """
    import blake3

    hasher = blake3.blake3(b"stashdb-object-v1\0" + pickler.encode() + b"\0")
    for part, seq, size, digest in sorted(rows):
        hasher.update(part.to_bytes(4, "little") + seq.to_bytes(4, "little")
                      + size.to_bytes(8, "little") + digest)
    return hasher.digest()


def object_id_of(pickler: str, parts: Sequence[Any], sealer: Plain = PLAIN) -> bytes:
    """The id an object made of ``parts`` has (or would have) in the store."""
    views = flat_views(parts)
    return object_id(pickler, views, layout(parts, views, sealer))


def flat_views(parts: Sequence[Any]) -> list[memoryview]:
    """Each part as a flat byte view (no copy)."""
    return [memoryview(p).cast("B") for p in parts]


def layout(
    parts: Sequence[Any], views: list[memoryview], sealer: Plain = PLAIN
) -> list[list[tuple[bytes, memoryview]]]:
    """For each part, its chunks as (chunk id, bytes) in order (ids keyed in a sealed store)."""
    ids = sealer.chunk_id
    return [[(ids(c), c) for c in _split(v, _row_bytes(p))] for p, v in zip(parts, views)]


def object_id(
    pickler: str, views: list[memoryview], parts: list[list[tuple[bytes, memoryview]]]
) -> bytes:
    """The id of an object with this layout (docs/format.md, "Ids")."""
    return layout_id(pickler, [v.nbytes for v in views], [[cid for cid, _ in p] for p in parts])


def layout_id(
    pickler: str, part_sizes: Sequence[int], chunk_ids: Sequence[Sequence[bytes]]
) -> bytes:
    """The id of an object from who pickled it, each part's size and its chunk ids in order."""
    # The id covers who pickled it and the exact chunk layout of every part.
    h = xxhash.xxh3_128()
    h.update(pickler.encode())
    for size, part in zip(part_sizes, chunk_ids):
        h.update(size.to_bytes(8, "little"))
        for cid in part:
            h.update(cid)
    return h.digest()


def _row_bytes(part: Any) -> int:
    """The row size to align chunks on, or 0 (a flat buffer, or rows too small)."""
    shaped = memoryview(part)
    if shaped.ndim < 2 or shaped.shape is None or shaped.shape[0] < 2:
        return 0
    row = shaped.nbytes // shaped.shape[0]
    return row if row >= ROW_ALIGN_MIN else 0


def _split(part: memoryview, row: int = 0) -> Iterator[memoryview]:
    if part.nbytes == 0:
        yield part
        return
    step = row or part.nbytes
    for row_start in range(0, part.nbytes, step):
        row_end = min(row_start + step, part.nbytes)
        for start in range(row_start, row_end, CHUNK_SIZE):
            yield part[start : min(start + CHUNK_SIZE, row_end)]


def compressor() -> Any:
    import zstandard  # only a commit that compresses pays its import

    return zstandard.ZstdCompressor(level=1)


class _Oversized(Exception):
    """A compressed chunk that would decompress to more than a chunk holds."""


def _decompress(data: bytes | memoryview) -> bytes:
    """A chunk's bytes; never more than a chunk holds (a crafted frame may claim gigabytes)."""
    import zstandard

    declared = zstandard.frame_content_size(data)
    if declared > CHUNK_SIZE:
        raise _Oversized(f"a compressed chunk claims {declared:,} bytes")
    if declared >= 0:
        return zstandard.ZstdDecompressor().decompress(data)
    raw = zstandard.ZstdDecompressor().stream_reader(data).read(CHUNK_SIZE + 1)
    if len(raw) > CHUNK_SIZE:
        raise _Oversized("a compressed chunk holds more than a chunk")
    return raw


def verify_chunk(
    cid: bytes, codec: int, data: bytes | memoryview, sealer: Plain = PLAIN
) -> tuple[bytes | memoryview, CorruptChunk | None]:
    """The chunk's uncompressed bytes, or the damage found in them (format rule 5).

    A sealed chunk (an encrypted store) is opened first: a seal that does not
    hold is damage like any other.
    """
    try:
        if codec == SEALED:
            codec, data = sealer.open(cid, data)
        raw = _decompress(data) if codec == CODEC_ZSTD else data
    except Exception:  # damaged compressed bytes, a broken seal: report them as damage
        return b"", CorruptChunk(cid.hex(), chunk_id(data).hex())
    got = sealer.chunk_id(raw)
    if got != cid:
        return b"", CorruptChunk(cid.hex(), got.hex())
    return raw, None


#: Parts at least this large are read into anonymous memory maps, not bytearrays.
_MAP_MIN = 1024 * 1024


def _buffer(size: int) -> bytearray | mmap.mmap:
    """Writable memory for one part, preallocated so chunks are copied in once.

    ``bytearray(n)`` writes n zero bytes first; a private anonymous map gets
    zeroed pages from the kernel only as they are touched (measured: 70 ms
    less for 200 MB of arrays). Private, so a forked child that writes to a
    restored array does not write into its parent's.
    """
    if size < _MAP_MIN:
        return bytearray(size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)


class ChunkPlace(NamedTuple):
    """One ``object_chunks`` row: where a chunk goes in an object."""

    object_id: bytes
    part: int
    seq: int
    chunk_id: bytes
    raw_size: int


class Assembled(NamedTuple):
    """An object put back together: its pickler, its parts, and its digest as read."""

    pickler: str
    parts: list[Any]
    digest: bytes  # `object_digest` of the bytes read: compared with the signed one


Objects = dict[bytes, "Assembled | CorruptChunk"]


def assemble(
    ids: Sequence[bytes],
    heads: dict[bytes, tuple[str, int]],
    places: Sequence[ChunkPlace],
    fetch: Callable[[list[bytes]], Iterable[tuple[bytes, int, bytes]]],
    sealer: Plain = PLAIN,
    *,
    digests: bool = True,
) -> Objects:
    """Put objects back together from their chunks, checking every chunk.

    Args:
        ids: the objects wanted.
        heads: ``{object id: (pickler, number of parts)}`` for those found.
        places: their ``object_chunks`` rows, ordered by object, part, seq.
        fetch: yields ``(chunk id, codec, stored bytes)`` for the chunk ids given.

    Returns:
        For each object id, its pickler name, parts (writable buffers) and
        digest as read (`Assembled`), or the `CorruptChunk` that reading it ran into.
    """
    results: Objects = {}
    heads = dict(heads)
    for oid in ids:
        if oid not in heads:
            results[oid] = CorruptChunk(None, None, object_id=oid.hex())
    # Rows that no stashdb writes (a damaged or crafted store) make their object
    # damaged before anything is allocated for it: parts that have no chunk, a
    # part out of range, a chunk larger than a chunk can be.
    rows_of: dict[bytes, list[ChunkPlace]] = {}
    for p in places:
        rows_of.setdefault(p.object_id, []).append(p)
    for oid, (_, parts) in list(heads.items()):
        mine = rows_of.get(oid, [])
        if not isinstance(parts, int) or not 1 <= parts <= max(len(mine), 1) or any(
            not isinstance(p.part, int) or not 0 <= p.part < parts
            or not isinstance(p.raw_size, int) or not 0 <= p.raw_size <= CHUNK_SIZE
            for p in mine
        ):
            del heads[oid]
            results[oid] = CorruptChunk(None, None, object_id=oid.hex())
    # Layout rows of a missing object (damage) are no use to anyone.
    places = [p for p in places if p.object_id in heads]
    # One preallocated buffer per part: a fresh bytes per chunk costs page faults.
    sizes = {oid: [0] * parts for oid, (_, parts) in heads.items()}
    for p in places:
        sizes[p.object_id][p.part] += p.raw_size
    buffers = {oid: [_buffer(n) for n in part_sizes] for oid, part_sizes in sizes.items()}
    targets: dict[bytes, list[tuple[bytes, int, int]]] = {}
    offsets = {oid: [0] * len(part_sizes) for oid, part_sizes in sizes.items()}
    for p in places:
        offset = offsets[p.object_id][p.part]
        targets.setdefault(p.chunk_id, []).append((p.object_id, p.part, offset))
        offsets[p.object_id][p.part] = offset + p.raw_size
    seen = set()
    chunk_digests: dict[bytes, bytes] = {}
    for cid, codec, data in fetch(list(targets)):
        seen.add(cid)
        raw, damage = verify_chunk(cid, codec, data, sealer)
        if damage is None and digests:
            chunk_digests[cid] = sealer.digest(raw)
        for oid, part, offset in targets[cid]:
            if damage is not None:
                results.setdefault(oid, CorruptChunk(cid.hex(), damage.got, object_id=oid.hex()))
            else:
                buffers[oid][part][offset : offset + len(raw)] = raw
    for cid, users in targets.items():
        if cid not in seen:
            for oid, _, _ in users:
                results.setdefault(oid, CorruptChunk(cid.hex(), None, object_id=oid.hex()))
    rows: dict[bytes, list[tuple[int, int, int, bytes]]] = {}
    for p in places:
        if p.chunk_id in chunk_digests:
            rows.setdefault(p.object_id, []).append((p.part, p.seq, p.raw_size,
                                                     chunk_digests[p.chunk_id]))
    for oid, (pickler, _) in heads.items():
        if oid not in results:
            digest = object_digest(pickler, rows.get(oid, [])) if digests else b""
            results[oid] = Assembled(pickler, buffers[oid], digest)
    return results
