"""Sending history from one store to another: only what the receiving store lacks.

Content addresses make "what is missing" a set difference: commit ids, then
object ids, then chunk ids, each asked of the receiving store in batches of
ids (its chunks are never read). What is missing is written bottom up —
chunks, then objects with their layouts, then commits, parents first — each
batch in its own transaction, so a transfer killed at any point leaves the
receiving store sound: a commit lands only once everything it reaches is
there, and refs move last (by compare-and-swap: `CommitWriter.move_ref`).
Running it again sends only what is still missing.

Every chunk is checked against its id as it is read, and every commit's id
against its contents, so a damaged or hostile sender cannot put in the
store what its ids do not say (format rule 5). Signatures travel with their
commits; whether a commit is trusted is decided where it is checked out.
Nothing here unpickles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stashdb.errors import StoreDamaged, TransferRefused
from stashdb.model import Transfer
from stashdb.storage import chunking, graph, queries
from stashdb.storage.bundle import BundleObject, layout_problem, object_rows, stored_times
from stashdb.storage.commits import commit_id_holds
from stashdb.storage.store import ENCRYPTION_NOTE, Store

__all__ = [
    "Progress", "check_pair", "missing_commits", "parents_first", "refuse_encrypted", "send",
    "send_objects",
]

#: ``(bytes done, bytes in all)``, called as chunks land.
Progress = Callable[[int, int], None]

#: Commits written per transaction: a killed transfer keeps what landed before.
_COMMIT_BATCH = 200
#: Stored bytes of chunks read from the sender per write transaction.
_CHUNK_BYTES = 64 * 1024 * 1024


def check_pair(source: Store, target: Store) -> None:
    """Raise unless history can move from ``source`` to ``target``.

    Raises:
        TransferRefused: one of them is encrypted (its ids are keyed), or both are one store.
    """
    refuse_encrypted(source, "the sending store")
    refuse_encrypted(target, "the receiving store")
    with source.reader.transaction() as a, target.reader.transaction() as b:
        if queries.notes(a, "store_id") == queries.notes(b, "store_id") != {}:
            raise TransferRefused("both are the same store")


def refuse_encrypted(store: Store, which: str) -> None:
    """Raise unless ``store`` is a plain one (read without its key: the setting says).

    Raises:
        TransferRefused: it is encrypted.
    """
    if store.reader.notes(ENCRYPTION_NOTE):
        raise TransferRefused(
            f"{which} is encrypted: its ids and bytes are keyed and sealed under its own "
            "key, so they cannot move to another store yet")


def missing_commits(source: Store, target: Store, tips: Iterable[str]) -> list[str]:
    """The commits ``tips`` reach in ``source`` that ``target`` lacks, parents first."""
    with source.reader.transaction() as sql:
        parents = queries.edges(sql)
    reached = graph.reachable(parents, list(dict.fromkeys(tips)))
    with target.reader.transaction() as sql:
        have = queries.ids_in(sql, "commits", reached)
    missing = {c for c in reached if c not in have}
    return parents_first(missing, parents)


def send(
    source: Store, target: Store, commit_ids: Sequence[str], *, data: bool = True,
    progress: Progress | None = None,
) -> Transfer:
    """Add ``commit_ids`` (parents first, as `missing_commits` gives them) to ``target``.

    With ``data``, first the objects and chunks they reach that ``target``
    lacks; without (a lazy clone), the commits and manifests only.

    Raises:
        StoreDamaged: the sender holds a commit or chunk that is not what its id says.
    """
    sent = Transfer()
    objects: set[bytes] = set()
    if data:  # every object first, so the bytes to send are known (the progress total)
        with source.reader.transaction() as sql:
            objects = queries.objects_of_commits(sql, commit_ids)
        sent.add(send_objects(source, target, objects, progress=progress))
    for batch in queries.batches(list(commit_ids), _COMMIT_BATCH):
        with source.reader.transaction() as sql:
            commits = queries.load_commits(sql, batch)
            times = stored_times(sql, batch)
            signatures = queries.signatures(sql, batch)
        for commit in commits:
            if not commit_id_holds(commit, times[commit.id]):
                raise StoreDamaged(f"the sending store's commit {commit.id[:12]} is not what "
                                   "its id says; run verify there")
        sent.commits += target.commits.put_commits(
            [(c, times[c.id]) for c in commits], signatures)
    return sent


def send_objects(
    source: Store, target: Store, object_ids: Iterable[bytes], *,
    progress: Progress | None = None,
) -> Transfer:
    """Add to ``target`` the objects among ``object_ids`` it lacks, with the chunks it lacks.

    Raises:
        StoreDamaged: the sender lacks one of them, or holds a damaged chunk or row.
    """
    sent = Transfer()
    ids = sorted(set(object_ids))
    with target.reader.transaction() as sql:
        have = queries.ids_in(sql, "objects", ids)
        have -= queries.incomplete_objects(sql, have)
    wanted = [oid for oid in ids if oid not in have]
    if not wanted:
        return sent
    with source.reader.transaction() as sql:
        found = object_rows(sql, wanted)
        chunk_ids = sorted({cid for o in found for _, _, cid, _ in o.layout})
        sizes = {cid: size for cid, (size, _) in queries.chunk_facts(sql, chunk_ids).items()}
    for obj in found:  # the sender's rows, checked as a bundle's are
        why = layout_problem(obj, {})
        if why is not None:
            raise StoreDamaged(f"the sending store's {why}; run verify there")
    lacking = [cid for cid in chunk_ids if cid not in sizes]
    if lacking:
        raise StoreDamaged(f"the sending store lacks chunk {lacking[0].hex()[:16]} "
                           f"(and {len(lacking) - 1} more)")
    with target.reader.transaction() as sql:
        there = queries.ids_in(sql, "chunks", chunk_ids)
    total = sum(size for cid, size in sizes.items() if cid not in there)
    writer = target.object_writer()

    def read(to_read: list[bytes]) -> dict[bytes, tuple[int, int, Any, bytes]]:
        with source.reader.transaction() as sql:
            return dict(_checked_chunks(sql, to_read))

    # The next batch is read, checked and hashed on a thread while this one is
    # written: the receiving database's inserts are the bottleneck (perf docs).
    with ThreadPoolExecutor(1, thread_name_prefix="stashdb-send") as reader:
        batches = list(_batches(found, there, sizes))
        ahead = reader.submit(read, batches[0][1]) if batches else None
        for i, (batch, _) in enumerate(batches):
            assert ahead is not None
            chunks = ahead.result()
            ahead = reader.submit(read, batches[i + 1][1]) if i + 1 < len(batches) else None
            for obj in batch:
                for _, _, cid, size in obj.layout:
                    if cid in chunks and chunks[cid][1] != size:
                        raise StoreDamaged(f"the sending store's object {obj.id.hex()[:16]} "
                                           "gives a chunk another size than it has")
            count, written, _ = writer.put_stored(batch, chunks)
            writer.flush()
            sent.objects += len(batch)
            sent.chunks += count
            sent.bytes += written
            if progress is not None:
                progress(sent.bytes, total)
    return sent


def _batches(
    objects: list[BundleObject], there: set[bytes], sizes: dict[bytes, int]
) -> Iterator[tuple[list[BundleObject], list[bytes]]]:
    """Objects in groups of about `_CHUNK_BYTES` of chunks to send, with those chunks."""
    batch: list[BundleObject] = []
    to_read: dict[bytes, None] = {}
    nbytes = 0
    for obj in objects:
        for _, _, cid, _ in obj.layout:
            if cid not in there and cid not in to_read:
                to_read[cid] = None
                nbytes += sizes[cid]
        batch.append(obj)
        if nbytes >= _CHUNK_BYTES:
            yield batch, list(to_read)
            there = there | set(to_read)
            batch, to_read, nbytes = [], {}, 0
    if batch:
        yield batch, list(to_read)


def _checked_chunks(
    sql: queries.SQL, chunk_ids: list[bytes]
) -> Iterator[tuple[bytes, tuple[int, int, Any, bytes]]]:
    """``(id, (codec, raw size, stored bytes, digest))`` of each chunk, checked against its id."""
    seen = 0
    for cid, codec, data in queries.iter_chunks(sql, chunk_ids):
        raw, damage = chunking.verify_chunk(cid, codec, data)
        if damage is not None:
            raise StoreDamaged(f"the sending store's chunk {cid.hex()[:16]} is not what its id "
                               "says; run verify there")
        seen += 1
        yield cid, (codec, len(raw), bytes(data), chunking.chunk_digest(raw))
    if seen != len(chunk_ids):
        raise StoreDamaged("the sending store lost chunks while they were being sent")


def parents_first(commits: set[str], parents: graph.Graph) -> list[str]:
    """``commits`` ordered so that each comes after its parents among them."""
    order: list[str] = []
    started: set[str] = set()  # a loop in a hostile history ends here too
    for start in sorted(commits):
        stack = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node in started:
                continue
            started.add(node)
            stack.append((node, True))
            stack.extend((p, False) for p in parents.get(node, ()) if p in commits
                         and p not in started)
    return order

