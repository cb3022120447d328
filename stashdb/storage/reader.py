"""The read side of a store: every read, over whichever driver the store is read through.

A `Reader` is built from a `Driver` (something that hands out read
transactions): `stashdb.storage.sqlite_driver.SQLiteDriver` for SQLite files
(no SQLAlchemy import), `stashdb.storage.engine_driver.EngineDriver` for
everything else. Each method is one transaction over the shared queries of
`stashdb.storage.queries`, so both drivers read alike, and the chunk checks
(format rule 5) are written once, in `stashdb.storage.chunking.assemble`.
Nothing here unpickles anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from stashdb.errors import RefNotFound
from stashdb.model import (
    Change,
    ChangeCounts,
    Commit,
    Diff,
    Entry,
    Ref,
    Rev,
    StoreStats,
    Version,
)
from stashdb.storage import counts, graph, queries
from stashdb.storage.chunking import Objects
from stashdb.storage.sealing import PLAIN, Plain

__all__ = ["Driver", "Reader"]


class Driver(Protocol):
    """Read transactions on one store."""

    def transaction(self) -> AbstractContextManager[queries.SQL]:
        """A read transaction: a consistent view of the store."""
        ...

    def close(self) -> None:
        """Release what the driver holds (its connection)."""
        ...


class Reader:
    """Commits, manifests, refs, revs and objects of one store, read-only."""

    def __init__(self, driver: Driver, sealer: Plain = PLAIN) -> None:
        self.driver = driver
        #: How the store keeps its bytes (`stashdb.storage.sealing`; set by `Store`).
        self.sealer = sealer

    @contextmanager
    def transaction(self) -> Iterator[queries.SQL]:
        """A read transaction, for reads made of several queries (`verify`)."""
        with self.driver.transaction() as sql:
            sql.sealer = self.sealer
            yield sql

    def close(self) -> None:
        """Release the driver's connection; the next read opens another."""
        self.driver.close()

    # -- refs and revs -------------------------------------------------------------

    def head(self) -> str:
        """The current branch."""
        with self.transaction() as sql:
            return queries.head(sql)

    def resolve(self, rev: Rev) -> str:
        """The full id of the commit ``rev`` names.

        Raises:
            RevisionNotFound: nothing matches.
            AmbiguousRevision: a short id matches several commits.
        """
        with self.transaction() as sql:
            return queries.resolve(sql, rev)

    def find_ref(self, name: str) -> Ref | None:
        """The branch or tag ``name``, or None."""
        with self.transaction() as sql:
            return queries.find_ref(sql, name)

    def notes(self, prefix: str) -> dict[str, str]:
        """The store's settings whose keys start with ``prefix``."""
        with self.transaction() as sql:
            return queries.notes(sql, prefix)

    def commit_ids(self) -> list[str]:
        """The id of every commit in the store, oldest first."""
        with self.transaction() as sql:
            return [r.id for r in sql.rows("SELECT id FROM commits ORDER BY time, id")]

    def signatures(self, commit_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """``{commit id: (key id, signature)}`` of the signed commits among ``commit_ids``."""
        with self.transaction() as sql:
            return queries.signatures(sql, commit_ids)

    def trusted_key_rows(self) -> list[Any]:
        """The store's own list of trusted keys, as rows (revision 0005)."""
        with self.transaction() as sql:
            return queries.trusted_key_rows(sql)

    def list_refs(self, kind: str | None = None) -> list[Ref]:
        """Every ref, or every ref of one ``kind`` (``branch`` or ``tag``), sorted by name."""
        with self.transaction() as sql:
            return queries.list_refs(sql, kind)

    # -- commits -------------------------------------------------------------------

    def get_commit(self, commit_id: str, *, entries: bool = True) -> Commit:
        """One commit, with its manifest unless ``entries`` is false.

        Raises:
            RevisionNotFound: no such commit.
        """
        with self.transaction() as sql:
            return queries.load_commits(sql, [commit_id], entries=entries)[0]

    def commits(self, ids: Sequence[str]) -> list[Commit]:
        """The commits ``ids``, in that order, without their entries, in one transaction.

        Raises:
            RevisionNotFound: one of them is not in the store.
        """
        with self.transaction() as sql:
            return queries.load_commits(sql, ids, entries=False)

    def show(self, rev: Rev) -> Commit:
        """The commit ``rev`` names, with its manifest, in one transaction."""
        with self.transaction() as sql:
            return queries.load_commits(sql, [queries.resolve(sql, rev)])[0]

    def log(
        self,
        *,
        branch: str | None = None,
        limit: int | None = None,
        all: bool = False,
        revs: str | None = None,
        offset: int = 0,
    ) -> list[Commit]:
        """Commits reachable from a branch (default: HEAD's) or every ref; newest first.

        ``revs``: ``A..B`` (what B has that A has not), or one rev (what it reaches).
        ``offset`` and ``limit`` take a page of that list; only the page is loaded.

        Raises:
            RefNotFound: ``branch`` is not a branch.
            RevisionNotFound, AmbiguousRevision: a rev of ``revs`` names no single commit.
        """
        with self.transaction() as sql:
            ordered, _ = _lineage(sql, branch, all, revs)
            end = None if limit is None else offset + limit
            return queries.load_commits(sql, ordered[offset:end], entries=False)

    def lineage(
        self, *, branch: str | None = None, all: bool = False, revs: str | None = None
    ) -> tuple[list[str], dict[str, list[str]]]:
        """What `log` would list, as ids only (newest first), and every commit's parents.

        Enough to draw the graph of a long history and page through it
        without loading a commit row.
        """
        with self.transaction() as sql:
            return _lineage(sql, branch, all, revs)

    def touching(self, name: str, commit_ids: Sequence[str]) -> list[str]:
        """Those of ``commit_ids`` that added, changed or removed ``name`` against their
        first parent (in the order given)."""
        with self.transaction() as sql:
            edges = queries.edges(sql)
            firsts = {c: edges[c][0] for c in commit_ids if edges.get(c)}
            found = queries.entries_named(sql, name, list({*commit_ids, *firsts.values()}))
        touched = []
        for commit_id in commit_ids:
            entry = found.get(commit_id)
            parent = found.get(firsts[commit_id]) if commit_id in firsts else None
            if entry is None and parent is None:
                continue
            if entry is None or parent is None or not entry.same_value(parent):
                touched.append(commit_id)
        return touched

    def first_parent_chain(self, tip: str) -> list[str]:
        """The commits from ``tip`` back along first parents, newest first."""
        with self.transaction() as sql:
            return graph.first_parents(queries.edges(sql), tip)

    def value_hashes(self, object_id: bytes) -> dict[int, str]:
        """Slot -> value hash recorded for the members of a group object, if any."""
        with self.transaction() as sql:
            return queries.value_hashes(sql, object_id)

    # -- comparing -----------------------------------------------------------------

    def change_counts(self, commits: Sequence[Commit]) -> dict[str, ChangeCounts]:
        """Names added, changed and removed by each commit against its first parent."""
        if not self.sealer.encrypted:
            with self.transaction() as sql:
                counted = counts.change_counts(sql, [c.id for c in commits])
            return {i: ChangeCounts(*abc) for i, abc in counted.items()}
        # A sealed store: descriptions compare only once opened, so in Python.
        wanted = {c.id for c in commits} | {c.parents[0] for c in commits if c.parents}
        with self.transaction() as sql:
            manifests = queries.manifests(sql, sorted(wanted))
        found = {}
        for commit in commits:
            after = {e.name: e for e in manifests.get(commit.id, [])}
            before_list = manifests.get(commit.parents[0], []) if commit.parents else []
            before = {e.name: e for e in before_list}
            found[commit.id] = ChangeCounts(
                added=len(after.keys() - before.keys()),
                changed=sum(
                    1 for n in after.keys() & before.keys() if not after[n].same_value(before[n])
                ),
                removed=len(before.keys() - after.keys()),
            )
        return found

    def diff(self, a: Rev, b: Rev) -> Diff:
        """How snapshot ``b`` differs from ``a`` (both revs)."""
        with self.transaction() as sql:
            old, new = queries.load_commits(
                sql, [queries.resolve(sql, a), queries.resolve(sql, b)]
            )
        before = {e.name: e for e in old.entries}
        after = {e.name: e for e in new.entries}
        changes = []
        for name in sorted(before.keys() | after.keys()):
            o, n = before.get(name), after.get(name)
            if o is None:
                status = "added"
            elif n is None:
                status = "removed"
            else:
                status = "unchanged" if o.same_value(n) else "changed"
            changes.append(Change(name, status, o, n))
        return Diff(old, new, tuple(changes))

    def history(self, name: str, *, branch: str | None = None) -> list[Version]:
        """The versions of one name along a branch's first parents, newest first.

        Raises:
            RefNotFound: ``branch`` is not a branch.
        """
        with self.transaction() as sql:
            tip = _tip(sql, branch)
            if tip is None:
                return []
            chain = list(reversed(graph.first_parents(queries.edges(sql), tip)))
            commits = {c.id: c for c in queries.load_commits(sql, chain, entries=False)}
            found = queries.entries_named(sql, name, chain)
        versions: list[Version] = []
        previous: Entry | None = None
        for commit_id in chain:
            entry = found.get(commit_id)
            if entry is not None and previous is None:
                versions.append(Version(commits[commit_id], "added", entry))
            elif entry is None and previous is not None:
                versions.append(Version(commits[commit_id], "removed", None))
            elif entry is not None and previous is not None and not entry.same_value(previous):
                versions.append(Version(commits[commit_id], "changed", entry))
            previous = entry
        return versions[::-1]

    def stats(self) -> StoreStats:
        """Counts and sizes of the whole store."""
        with self.transaction() as sql:
            return queries.stats(sql)

    # -- objects -------------------------------------------------------------------

    def read_many(self, object_ids: Iterable[bytes], *, digests: bool = True) -> Objects:
        """Several objects in one read transaction; a damaged one does not stop the others.

        ``digests``: compute each object's digest as its chunks are read (what
        a signature is checked against; not needed with ``trust``).

        Returns:
            For each object id, its pickler name and parts, or the `CorruptChunk`
            that reading it ran into.
        """
        with self.transaction() as sql:
            return queries.read_objects(sql, object_ids, digests=digests)

    def object_facts(self, object_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
        """``{object id: (stored size, digest)}`` of the objects the store has among them."""
        with self.transaction() as sql:
            return queries.object_facts(sql, object_ids)

    def damaged(self) -> tuple[set[bytes], set[bytes]]:
        """Chunk ids and object ids found damaged and not written again since."""
        with self.transaction() as sql:
            return queries.damaged(sql)

    def chunk_facts(self, chunk_ids: Iterable[bytes]) -> dict[bytes, tuple[int, bytes | None]]:
        """``{chunk id: (stored bytes, digest)}`` of the chunks the store has among them."""
        with self.transaction() as sql:
            return queries.chunk_facts(sql, chunk_ids)


def _lineage(
    sql: queries.SQL, branch: str | None, all: bool, revs: str | None
) -> tuple[list[str], dict[str, list[str]]]:
    """The ids `Reader.log` lists, newest first (by time, then id), and the parents graph."""
    edges = queries.edges(sql)
    excluded: set[str] = set()
    if revs is not None:
        since, dots, until = revs.partition("..")
        if dots:
            excluded = set(graph.reachable(edges, [queries.resolve(sql, since or "HEAD")]))
        starts = [queries.resolve(sql, (until if dots else since) or "HEAD")]
    elif all:
        starts = [r.commit_id for r in queries.list_refs(sql)]
    else:
        starts = [tip] if (tip := _tip(sql, branch)) else []
    times = queries.commit_times(sql)
    ids = [c for c in graph.reachable(edges, starts) if c not in excluded]
    # A parent missing from the store sorts last; loading it says it is missing.
    ids.sort(key=lambda c: (times.get(c, 0.0), c), reverse=True)
    return ids, edges


def _tip(sql: queries.SQL, branch: str | None) -> str | None:
    """The tip of ``branch`` (default: HEAD's branch); None for a branch with no commits yet.

    Raises:
        RefNotFound: ``branch`` was given and is not a branch.
    """
    name = branch or queries.head(sql)
    ref = queries.find_ref(sql, name)
    if ref is None or ref.kind != "branch":
        if branch is not None:
            raise RefNotFound("branch", name)
        return None
    return ref.commit_id
