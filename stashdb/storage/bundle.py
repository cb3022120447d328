"""Bundles: commits with everything they reach, as one self-contained byte string.

A bundle carries one or more commits, their manifests, and the objects and
chunks those reach, as rows; it never holds a Python object, so writing and
reading one unpickles nothing. `Session.snapshot_state` returns a bundle of
one commit (a *state*); its reader adds the objects and chunks to any store,
skipping what the store has, and commits the manifest anew there. The layout
is specified in docs/format.md ("Bundles").

Reading checks before anything is stored: the magic and version, that the
bytes end where the records say (a truncated bundle is refused), the digest
of the whole (an altered byte is refused), that each object's id is the id
of its chunk layout, that each commit's id is the id of its contents, and
that each chunk's bytes are the bytes its id names (format rule 5), so
nothing in a store ever holds what its id does not say. The digest is
xxh3-128: it catches damage, not an attacker, who could compute it too
(signatures: the trust issue).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import xxhash

from stashdb.errors import BadBundle, StoreDamaged
from stashdb.model import Commit, Entry
from stashdb.storage import chunking, graph, queries
from stashdb.storage.commits import commit_id_holds, entry_row

__all__ = [
    "MAGIC", "VERSION", "Bundle", "BundleObject", "BundleObjects", "export_history",
    "layout_problem", "object_rows", "read_bundle", "stored_times", "write_bundle",
]

#: What every bundle starts with; then one byte: `VERSION`.
MAGIC = b"STASHDB-BUNDLE\n"
VERSION = 1
_RECORD = struct.Struct("<cQ")  # kind, payload length
_CHUNK = struct.Struct("<16sBQ")  # id, codec, raw size (then the stored bytes)
_HEADER, _OBJECTS, _CHUNKS, _END = b"H", b"O", b"C", b"E"


@dataclass(frozen=True)
class BundleObject:
    """One object of a bundle: its row, and where each of its chunks goes."""

    id: bytes
    pickler: str
    parts: int
    raw_size: int
    stored_size: int
    layout: tuple[tuple[int, int, bytes, int], ...]  # (part, seq, chunk id, raw size)


@dataclass
class Bundle:
    """What a bundle holds, checked: commits (with entries), objects, chunks."""

    kind: str  # "state": one commit to be committed anew where it is read
    commits: list[Commit]
    objects: list[BundleObject] = field(default_factory=list)
    #: ``(id, codec, raw size, stored bytes)``, the bytes a view of the bundle.
    chunks: list[tuple[bytes, int, int, memoryview]] = field(default_factory=list)
    #: ``{chunk id: BLAKE3 digest}`` of every chunk, computed as it was checked.
    digests: dict[bytes, bytes] = field(default_factory=dict)
    #: ``{commit id: (key id, signature)}`` of its signed commits, as their store had them.
    signatures: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: A history's refs: ``(name, kind, commit id)``, kind "branch" or "tag".
    refs: list[tuple[str, str, str]] = field(default_factory=list)
    #: A history's commits it builds on but does not hold (``A`` of ``A..B``).
    base: list[str] = field(default_factory=list)
    #: Objects and chunks its commits reach but it does not hold: the base has them.
    needs_objects: set[bytes] = field(default_factory=set)
    needs_chunks: set[bytes] = field(default_factory=set)
    #: ``{commit id: its time as stored}`` (its id covers the exact value).
    times: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Stored bytes of its chunks."""
        return sum(len(data) for *_, data in self.chunks)


class BundleObjects:
    """The objects of a bundle, read from its bytes in memory (as a store's reader reads).

    A state just added to a store is restored from here: its bytes are in
    memory already, and reading them back from the database would cost as much
    again.
    """

    def __init__(self, bundle: Bundle) -> None:
        self._objects = {o.id: o for o in bundle.objects}
        self._chunks = {cid: (codec, data) for cid, codec, _, data in bundle.chunks}

    def read_many(self, object_ids: Iterable[bytes], *, digests: bool = True) -> chunking.Objects:
        """Each object's pickler and parts (checked chunk by chunk), as `Reader.read_many`."""
        ids = list(object_ids)
        found = [self._objects[oid] for oid in ids if oid in self._objects]
        heads = {o.id: (o.pickler, o.parts) for o in found}
        places = [
            chunking.ChunkPlace(o.id, part, seq, cid, size)
            for o in found for part, seq, cid, size in sorted(o.layout)
        ]

        def fetch(chunk_ids: list[bytes]) -> Iterator[tuple[bytes, int, Any]]:
            for cid in chunk_ids:
                if cid in self._chunks:
                    codec, data = self._chunks[cid]
                    yield cid, codec, data

        return chunking.assemble(ids, heads, places, fetch, digests=digests)


def write_bundle(sql: queries.SQL, commit_ids: list[str], *, kind: str = "state") -> bytes:
    """A bundle of ``commit_ids`` and everything their manifests reach, read through ``sql``."""
    # Pieces joined once at the end: a 1 GB state is copied once, not once per chunk.
    return b"".join(list(_encoded(sql, commit_ids, kind=kind)))


def export_history(
    sql: queries.SQL,
    commit_ids: list[str],
    out: BinaryIO,
    *,
    refs: Sequence[tuple[str, str, str]] = (),
    base: Sequence[str] = (),
    counts: list[int] | None = None,
) -> int:
    """Write a history bundle of ``commit_ids`` (parents first) to ``out``; its size in bytes.

    ``base`` are the commits it builds on (``A`` of ``A..B``): the objects and
    chunks they reach are left out, and a store must have them to import it.
    Chunks stream from the store to ``out``: memory stays about one batch.
    ``counts``, if given, gets the number of objects and of chunks written.
    """
    size = 0
    for piece in _encoded(sql, commit_ids, kind="history", refs=refs, base=base, counts=counts):
        out.write(piece)
        size += len(piece)
    return size


def stored_times(sql: queries.SQL, commit_ids: Sequence[str]) -> dict[str, float]:
    """Each commit's time as stored, not as a datetime: a commit's id covers its exact repr."""
    times: dict[str, float] = {}
    for batch in queries.batches(list(commit_ids)):
        cond, params = queries.in_list("id", batch)
        times.update((r.id, r.time) for r in sql.rows(
            f"SELECT id, time FROM commits WHERE {cond}", params))
    return times


def _encoded(
    sql: queries.SQL,
    commit_ids: list[str],
    *,
    kind: str,
    refs: Sequence[tuple[str, str, str]] = (),
    base: Sequence[str] = (),
    counts: list[int] | None = None,
) -> Iterator[bytes | memoryview]:
    """The bytes of a bundle, piece by piece, its digest last."""
    commits = queries.load_commits(sql, commit_ids)
    times = stored_times(sql, commit_ids)
    object_ids = {bytes.fromhex(e.object_id) for c in commits for e in c.entries if e.object_id}
    base_chunks: set[bytes] = set()
    if base:
        with_base = graph.reachable(queries.edges(sql), list(base))
        base_objects = queries.objects_of_commits(sql, with_base)
        object_ids -= base_objects
        base_chunks = queries.chunks_of_objects(sql, sorted(base_objects))
    objects = object_rows(sql, sorted(object_ids))
    signed = queries.signatures(sql, commit_ids)
    header: dict[str, Any] = {
        "bundle": VERSION, "kind": kind,
        "commits": [_commit_json(c, times[c.id], signed.get(c.id)) for c in commits],
    }
    if kind == "history":
        header["refs"] = [list(r) for r in refs]
        header["base"] = list(base)
    digest = xxhash.xxh3_128()

    def hashed(*pieces: bytes | memoryview) -> Iterator[bytes | memoryview]:
        for piece in pieces:
            digest.update(piece)
            yield piece

    yield from hashed(MAGIC, bytes([VERSION]))
    yield from hashed(*_record(_HEADER, json.dumps(header, separators=(",", ":")).encode()))
    yield from hashed(*_record(_OBJECTS, json.dumps([_object_json(o) for o in objects]).encode()))
    chunk_ids = sorted({cid for o in objects for _, _, cid, _ in o.layout} - base_chunks)
    raw_sizes = {cid: size for o in objects for _, _, cid, size in o.layout}
    if counts is not None:
        counts += [len(objects), len(chunk_ids)]
    for cid, codec, data in queries.iter_chunks(sql, chunk_ids):
        yield from hashed(*_record(_CHUNKS, _CHUNK.pack(cid, codec, raw_sizes[cid]), data))
    yield from _record(_END, digest.digest())


def read_bundle(data: bytes | memoryview) -> Bundle:
    """The checked contents of a bundle.

    Raises:
        BadBundle: not a bundle, another version, truncated, altered, or inconsistent.
    """
    try:
        return _read(memoryview(data).cast("B"))
    except BadBundle:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, StopIteration,
            OverflowError, RecursionError, struct.error) as exc:
        # A bundle whose digest holds (anyone can compute one) but whose insides
        # are not what a stashdb writes.
        raise BadBundle(f"its records are not what a stashdb writes ({exc!r})") from None


def _read(view: memoryview) -> Bundle:
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise BadBundle("it does not start like a stashdb bundle")
    if len(view) <= len(MAGIC) or view[len(MAGIC)] != VERSION:
        found = view[len(MAGIC)] if len(view) > len(MAGIC) else None
        raise BadBundle(f"it is bundle version {found}; this stashdb reads version {VERSION}")
    records = list(_records(view, len(MAGIC) + 1))
    if not records:
        raise BadBundle("it is truncated: it has no records")
    kind, end_at, digest = records[-1]
    if kind != _END:
        raise BadBundle("it is truncated: its last record is missing")
    if xxhash.xxh3_128_digest(view[:end_at]) != bytes(digest):
        raise BadBundle("its bytes do not match its digest: it was altered or damaged")
    kinds = [k for k, _, _ in records]
    if (kinds[:2] != [_HEADER, _OBJECTS] or kinds.count(_END) != 1
            or set(kinds[2:-1]) - {_CHUNKS}):
        raise BadBundle("its records are not in the order of a bundle")
    header = _json(records[0][2])
    objects = [_object_of(o) for o in _json(records[1][2])]
    digests: dict[bytes, bytes] = {}
    chunks = [_chunk_of(p, digests) for k, _, p in records if k == _CHUNKS]
    try:
        raw_commits = list(header["commits"])
        times = [float(c["time"]) for c in raw_commits]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBundle(f"its header is not complete ({exc})") from None
    if header.get("bundle") != VERSION or header.get("kind") not in ("state", "history"):
        raise BadBundle(f"its header is not a version {VERSION} state or history")
    commits = [_commit_of(c) for c in raw_commits]
    bundle = Bundle(str(header["kind"]), commits, objects, chunks, digests,
                    _signatures(raw_commits), times=dict(zip([c.id for c in commits], times)))
    if bundle.kind == "history":
        bundle.refs, bundle.base = _refs_of(header)
    _check(bundle, times)
    return bundle


def _refs_of(header: dict[str, Any]) -> tuple[list[tuple[str, str, str]], list[str]]:
    try:
        refs = [(str(n), str(k), str(c)) for n, k, c in header["refs"]]
        base = [str(c) for c in header["base"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBundle(f"its refs are not complete ({exc!r})") from None
    ids = {c for _, _, c in refs}
    if any(k not in ("branch", "tag") for _, k, _ in refs):
        raise BadBundle("it holds a ref that is neither a branch nor a tag")
    if not ids <= {str(c["id"]) for c in header["commits"]} | set(base):
        raise BadBundle("a ref points at a commit the bundle neither holds nor builds on")
    return refs, base


# -- encoding ------------------------------------------------------------------------


def _record(kind: bytes, *payload: bytes | memoryview) -> list[bytes | memoryview]:
    return [_RECORD.pack(kind, sum(len(p) for p in payload)), *payload]


def _records(view: memoryview, start: int) -> Iterator[tuple[bytes, int, memoryview]]:
    """``(kind, offset of the record, payload)`` of each record from ``start``."""
    at = start
    while at < len(view):
        if at + _RECORD.size > len(view):
            raise BadBundle("it is truncated inside a record header")
        kind, length = _RECORD.unpack_from(view, at)
        payload_at = at + _RECORD.size
        if payload_at + length > len(view):
            raise BadBundle("it is truncated inside a record")
        yield kind, at, view[payload_at : payload_at + length]
        at = payload_at + length


def _commit_json(
    commit: Commit, stored_time: float, signature: tuple[str, bytes] | None
) -> dict[str, Any]:
    return {
        "signature": [signature[0], signature[1].hex()] if signature else None,
        "id": commit.id, "time": stored_time, "message": commit.message,
        "branch": commit.branch, "parents": list(commit.parents),
        "workspace": commit.workspace, "user": commit.user, "host": commit.host,
        "python": commit.python, "dill": commit.dill, "packages": commit.packages,
        "chunks_written": commit.chunks_written, "bytes_written": commit.bytes_written,
        "entries": [
            {**entry_row(e), "object_id": e.object_id, "digest": e.digest}
            for e in commit.entries
        ],
    }


def _object_json(obj: BundleObject) -> dict[str, Any]:
    return {
        "id": obj.id.hex(), "pickler": obj.pickler, "parts": obj.parts,
        "raw_size": obj.raw_size, "stored_size": obj.stored_size,
        "layout": [[part, seq, cid.hex(), size] for part, seq, cid, size in obj.layout],
    }


def object_rows(sql: queries.SQL, object_ids: list[bytes]) -> list[BundleObject]:
    """Each object's row and chunk layout (`BundleObject`), in the order of ``object_ids``.

    Raises:
        StoreDamaged: the store lacks one of them.
    """
    rows: dict[bytes, Any] = {}
    layouts: dict[bytes, list[tuple[int, int, bytes, int]]] = {}
    for batch in queries.batches(object_ids):
        cond, params = queries.in_list("id", batch)
        for r in sql.rows(f"SELECT id, pickler, parts, raw_size, stored_size FROM objects "
                          f"WHERE {cond}", params):
            rows[bytes(r.id)] = r
        cond, params = queries.in_list("object_id", batch)
        for r in sql.rows("SELECT object_id, part, seq, chunk_id, raw_size FROM object_chunks "
                          f"WHERE {cond} ORDER BY object_id, part, seq", params):
            layouts.setdefault(bytes(r.object_id), []).append(
                (r.part, r.seq, bytes(r.chunk_id), r.raw_size))
    missing = [oid.hex() for oid in object_ids if oid not in rows]
    if missing:
        raise StoreDamaged(f"it lacks object {missing[0][:16]}")
    return [
        BundleObject(oid, rows[oid].pickler, rows[oid].parts, rows[oid].raw_size,
                     rows[oid].stored_size, tuple(layouts.get(oid, ())))
        for oid in object_ids
    ]


# -- decoding and checks ---------------------------------------------------------------


def _json(payload: memoryview) -> Any:
    try:
        return json.loads(bytes(payload))
    except ValueError as exc:
        raise BadBundle(f"a record is not JSON ({exc})") from None


def _commit_of(data: Any) -> Commit:
    from stashdb.storage.queries import commit_from_row, entries_from_rows

    try:
        rows = [_Row({**e, "commit_id": data["id"],
                      "object_id": bytes.fromhex(e["object_id"]) if e["object_id"] else None,
                      "digest": bytes.fromhex(e["digest"]) if e.get("digest") else None})
                for e in data["entries"]]
        row = _Row({**data, "packages": json.dumps(data["packages"])})
        return commit_from_row(row, data["parents"], entries_from_rows(rows), ())
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBundle(f"a commit record is not complete ({exc})") from None


def _signatures(raw_commits: list[Any]) -> dict[str, tuple[str, bytes]]:
    found = {}
    for data in raw_commits:
        signed = data.get("signature")
        if signed is not None:
            try:
                found[str(data["id"])] = (str(signed[0]), bytes.fromhex(signed[1]))
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise BadBundle(f"a commit's signature is not complete ({exc!r})") from None
    return found


def _object_of(data: Any) -> BundleObject:
    try:
        return BundleObject(
            bytes.fromhex(data["id"]), str(data["pickler"]), int(data["parts"]),
            int(data["raw_size"]), int(data["stored_size"]),
            tuple((int(p), int(s), bytes.fromhex(c), int(n)) for p, s, c, n in data["layout"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBundle(f"an object record is not complete ({exc})") from None


def _chunk_of(
    payload: memoryview, digests: dict[bytes, bytes]
) -> tuple[bytes, int, int, memoryview]:
    if len(payload) < _CHUNK.size:
        raise BadBundle("a chunk record is too short")
    cid, codec, raw_size = _CHUNK.unpack_from(payload)
    if codec not in (chunking.CODEC_RAW, chunking.CODEC_ZSTD) or raw_size > chunking.CHUNK_SIZE:
        raise BadBundle(f"chunk {cid.hex()[:16]} is not a chunk a stashdb writes")
    data = payload[_CHUNK.size :]  # a view of the bundle: not copied
    raw, damage = chunking.verify_chunk(cid, codec, data)
    if damage is not None or len(raw) != raw_size:
        raise BadBundle(f"chunk {cid.hex()[:16]} is not what its id says")
    digests[cid] = chunking.chunk_digest(raw)
    return cid, codec, raw_size, data


class _Row:
    """A dict seen as a row (its keys as attributes), for the row converters."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def layout_problem(obj: BundleObject, raw_sizes: dict[bytes, int]) -> str | None:
    """What is wrong with an object's row and layout (None: its id is the id of its layout).

    Rows as a reader puts them back together: each part's chunks in ``seq``
    order, numbered 0, 1, … with none twice, so the order the id covers is the
    order a restore reads. ``raw_sizes``: the true sizes of the chunks known.
    """
    name = obj.id.hex()[:16]
    # Every part has at least one chunk: more parts than layout rows is a lie,
    # and would allocate for nothing.
    if not 1 <= obj.parts <= len(obj.layout):
        return f"object {name} has {obj.parts} parts in {len(obj.layout)} chunks"
    parts: list[list[bytes]] = [[] for _ in range(obj.parts)]
    sizes = [0] * obj.parts
    for part, seq, cid, size in sorted(obj.layout, key=lambda row: (row[0], row[1])):
        if not 0 <= part < obj.parts:
            return f"object {name} lists a part it does not have"
        if seq != len(parts[part]):
            return f"object {name} numbers the chunks of part {part} out of order"
        if raw_sizes.get(cid, size) != size:
            return f"object {name} gives chunk {cid.hex()[:16]} another size than the chunk has"
        parts[part].append(cid)
        sizes[part] += size
    if chunking.layout_id(obj.pickler, sizes, parts) != obj.id:
        return f"object {name} is not what its id says"
    return None


def _check(bundle: Bundle, times: list[float]) -> None:
    """Every id in the bundle is the id of what it names (no unpickling)."""
    raw_sizes = {cid: raw for cid, _, raw, _ in bundle.chunks}
    for obj in bundle.objects:
        why = layout_problem(obj, raw_sizes)
        if why is not None:
            raise BadBundle(why)
    have_chunks = {cid for cid, *_ in bundle.chunks}
    history = bundle.kind == "history"
    for obj in bundle.objects:
        for _, _, cid, _ in obj.layout:
            if cid not in have_chunks:
                if history:  # its base has it (checked where it is imported)
                    bundle.needs_chunks.add(cid)
                    continue
                raise BadBundle(f"chunk {cid.hex()[:16]} of object {obj.id.hex()[:16]} is missing")
    have_objects = {o.id for o in bundle.objects}
    for commit, stored_time in zip(bundle.commits, times):
        if not commit_id_holds(commit, stored_time):
            raise BadBundle(f"commit {commit.id[:16]} is not what its id says")
        for entry in commit.entries:
            if entry.object_id and bytes.fromhex(entry.object_id) not in have_objects:
                if history:
                    bundle.needs_objects.add(bytes.fromhex(entry.object_id))
                    continue
                raise BadBundle(f"object of {entry.name!r} is missing")


def entries_of(bundle: Bundle) -> Iterable[Entry]:
    """The entries of the bundle's (first) commit."""
    return bundle.commits[0].entries if bundle.commits else ()

