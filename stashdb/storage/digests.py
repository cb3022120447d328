"""Giving rows written before revision 0005 their digests, so their commits can be signed.

Reads each undigested object's chunks (checked as every read is), hashes
them once, and fills ``chunks.digest``, ``objects.digest`` and the
``entries.digest`` of every manifest row naming the object. Ids never
change. An object with a missing or damaged chunk keeps no digest: the
commits holding it stay unsigned (`verify` names them).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update

from stashdb.storage import chunking, queries, schema
from stashdb.storage.engine import Database
from stashdb.storage.engine_driver import EngineSQL
from stashdb.storage.objects import fill_missing_digests
from stashdb.storage.sealing import PLAIN, Plain

__all__ = ["DigestReport", "fill_digests"]

#: Objects digested per write transaction (their chunks are read in it).
_OBJECTS_PER_TRANSACTION = 64


@dataclass(frozen=True)
class DigestReport:
    """What `fill_digests` did."""

    objects: int  # objects given a digest
    chunks: int  # chunks hashed
    unreadable: list[str]  # hex ids of objects left without one (a chunk missing or damaged)
    #: ``{commit id: names}`` of manifest rows that got digests (signed before: see sign_all)
    commits: dict[str, set[str]]


def fill_digests(database: Database, signer: str, sealer: Plain = PLAIN) -> DigestReport:
    """Digest every object that has no digest yet (and its chunks and manifest rows).

    Manifest rows of commits someone other than ``signer`` (a key id) signed
    keep what was signed: filling them would break that signature.
    """
    with database.read() as conn:
        todo = [bytes(r.id) for r in EngineSQL(conn).rows(
            "SELECT id FROM objects WHERE digest IS NULL ORDER BY id")]
    objects = chunks = 0
    unreadable: list[str] = []
    touched: dict[str, set[str]] = {}
    for batch in queries.batches(todo, _OBJECTS_PER_TRANSACTION):
        with database.write() as conn:
            done, hashed, bad = _digest_batch(conn, list(batch), signer, touched, sealer)
        objects, chunks = objects + done, chunks + hashed
        unreadable += bad
    return DigestReport(objects, chunks, unreadable, touched)


def _digest_batch(
    conn: Connection, batch: list[bytes], signer: str, touched: dict[str, set[str]],
    sealer: Plain,
) -> tuple[int, int, list[str]]:
    sql = EngineSQL(conn, sealer)
    cond, params = queries.in_list("id", batch)
    picklers = {bytes(r.id): r.pickler for r in sql.rows(
        f"SELECT id, pickler FROM objects WHERE {cond}", params)}
    cond, params = queries.in_list("object_id", batch)
    layout: dict[bytes, list[tuple[int, int, bytes, int]]] = {}
    for r in sql.rows(f"SELECT object_id, part, seq, chunk_id, raw_size FROM object_chunks "
                      f"WHERE {cond}", params):
        layout.setdefault(bytes(r.object_id), []).append(
            (r.part, r.seq, bytes(r.chunk_id), r.raw_size))
    needed = sorted({cid for rows in layout.values() for _, _, cid, _ in rows})
    digests = {cid: d for cid, (_, d) in queries.chunk_facts(sql, needed).items() if d}
    fresh: dict[bytes, bytes] = {}
    for cid, codec, data in queries.iter_chunks(sql, [c for c in needed if c not in digests]):
        raw, damage = chunking.verify_chunk(cid, codec, data, sealer)
        if damage is None:
            fresh[cid] = digests[cid] = sealer.digest(raw)
    made: dict[bytes, bytes] = {}
    bad: list[str] = []
    for oid in batch:
        rows = layout.get(oid, [])
        if oid not in picklers or any(cid not in digests for _, _, cid, _ in rows):
            bad.append(oid.hex())
            continue
        made[oid] = chunking.object_digest(
            picklers[oid], [(p, s, n, digests[c]) for p, s, c, n in rows])
    en, sg = schema.entries, schema.signatures
    fill_missing_digests(conn, schema.chunks, fresh)
    if made:
        values = [{"key": k, "value": v} for k, v in made.items()]
        cond, params = queries.in_list("object_id", list(made))
        for r in sql.rows(
                f"SELECT commit_id, name FROM entries WHERE {cond} AND digest IS NULL", params):
            touched.setdefault(str(r.commit_id), set()).add(str(r.name))
        fill_missing_digests(conn, schema.objects, dict(made))
        conn.execute(
            update(en).where(
                en.c.object_id == bindparam("key"), en.c.digest.is_(None),
                en.c.commit_id.not_in(select(sg.c.commit_id).where(sg.c.key_id != signer)),
            ).values(digest=bindparam("value")), values)
    return len(made), len(fresh), bad
