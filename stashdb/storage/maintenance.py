"""Keeping a store sound and small: verify, gc, prune. Never unpickles anything.

`verify` walks refs → commits → manifests → objects → chunks through the read
side and re-hashes every chunk (the same check every read makes). `gc` deletes
what no commit refers to, holding the write lock; a commit racing with it
re-checks its objects inside its own final transaction and starts over if
`gc` took any (`stashdb.storage.commits`). `prune` drops old commits of one
branch, keeping tagged commits, branch heads and anything another ref can
reach, then collects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, func, select

from stashdb.errors import InvalidArguments, StoreDamaged
from stashdb.storage import graph, queries, schema
from stashdb.storage.chunking import verify_chunk
from stashdb.storage.engine import Database
from stashdb.storage.engine_driver import EngineSQL
from stashdb.storage.format import LAZY_NOTE
from stashdb.storage.reader import Reader

__all__ = [
    "GRACE_SECONDS",
    "GcReport",
    "Problem",
    "PruneReport",
    "RepairReport",
    "VerifyReport",
    "damage_of",
    "gc",
    "prune",
    "repair",
    "verify",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store, and what it breaks."""

    #: "missing commit", "missing parent", "history cycle", "damaged row",
    #: "missing object", "missing chunk", "damaged chunk"
    kind: str
    id: str  # the commit, object or chunk (hex)
    detail: str
    affects: tuple[tuple[str, str], ...] = ()  # (commit id, variable name) pairs it breaks
    objects: tuple[str, ...] = ()  # a chunk's problem: the objects that need the chunk (hex)

    def __str__(self) -> str:
        where = ""
        if self.affects:
            commits = sorted({c[:8] for c, _ in self.affects})
            names = sorted({n for _, n in self.affects if n})
            where = f"; affects commits {', '.join(commits[:6])}{' …' if len(commits) > 6 else ''}"
            if names:
                where += f" (variables {', '.join(names[:6])}{' …' if len(names) > 6 else ''})"
        return f"{self.kind} {self.id[:16]}: {self.detail}{where}"


@dataclass
class VerifyReport:
    """What `verify` checked and what it found."""

    refs: int = 0
    commits: int = 0
    objects: int = 0
    chunks: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: A lazy clone's objects whose data is not fetched yet (not a problem).
    unfetched: int = 0
    #: With ``verify(repair=True)``: what was dropped.
    repaired: RepairReport | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing reachable is missing or damaged."""
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"checked {self.refs} refs, {self.commits} commits, {self.objects} objects, "
            f"{self.chunks} chunks ({self.bytes:,} bytes)"
        )
        if self.unfetched:
            head += (f"\n{self.unfetched} objects not fetched yet (a lazy clone: they come "
                     "when checked out, or all at once with a fetch of all data)")
        if self.ok:
            return f"{head}\nok: everything is sound"
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:"
        lines = [head, count, *map(str, self.problems)]
        if self.repaired is not None:
            lines.append(str(self.repaired))
        return "\n".join(lines)


@dataclass(frozen=True)
class GcReport:
    """What `gc` freed."""

    objects: int
    chunks: int
    bytes: int

    def __str__(self) -> str:
        return f"freed {self.chunks} chunks ({self.bytes:,} bytes) and {self.objects} objects"


@dataclass(frozen=True)
class PruneReport:
    """What `prune` dropped, and what collecting afterwards freed (or would, a dry run)."""

    commits: tuple[str, ...]
    gc: GcReport
    dry_run: bool = False

    def __str__(self) -> str:
        done = f"dropped {len(self.commits)} commits; {self.gc}"
        return f"would have {done} (dry run: nothing changed)" if self.dry_run else done


# -- verify -------------------------------------------------------------------------


def verify(reader: Reader) -> VerifyReport:
    """Check everything a ref can reach, re-hashing every chunk.

    Unreachable leftovers (from an interrupted commit) are not problems: `gc`
    reclaims them. A loop in the history (a damaged or hostile store) is one.
    """
    report = VerifyReport()
    with reader.transaction() as sql:
        reachable = _check_graph(sql, report)
        _check_rows(sql, reachable, report)
        users = _objects_of(sql, reachable)
        report.objects = len(users)
        lazy = bool(queries.notes(sql, LAZY_NOTE))
        chunk_users = _chunks_of(sql, users, report, lazy=lazy)
        report.chunks = len(chunk_users)
        _check_chunks(sql, chunk_users, users, report)
    return report


def _check_graph(sql: queries.SQL, report: VerifyReport) -> list[str]:
    """Refs → commits → parents: what is missing, and where the history loops."""
    refs = queries.list_refs(sql)
    report.refs = len(refs)
    existing = {r.id for r in sql.rows("SELECT id FROM commits")}
    parents = queries.edges(sql)
    starts = []
    for ref in refs:
        if ref.commit_id not in existing:
            detail = f"{ref.kind} {ref.name!r} points at it"
            report.problems.append(Problem("missing commit", ref.commit_id, detail))
        else:
            starts.append(ref.commit_id)
    reachable = graph.reachable(parents, starts)
    for commit_id in reachable:
        for parent in parents.get(commit_id, []):
            if parent not in existing:
                report.problems.append(
                    Problem("missing parent", parent, f"parent of {commit_id[:8]}",
                            ((commit_id, ""),))
                )
    for loop in graph.cycles(parents, reachable):
        shown = " → ".join(c[:8] for c in [*loop, loop[0]])
        report.problems.append(
            Problem("history cycle", loop[0], f"commits are their own ancestors: {shown}",
                    tuple((c, "") for c in loop))
        )
    found = [c for c in reachable if c in existing]
    report.commits = len(found)
    return found


def _check_rows(sql: queries.SQL, commits: list[str], report: VerifyReport) -> None:
    """Every commit row and manifest reads as what stashdb writes (no crafted columns)."""
    for batch in queries.batches(sorted(commits)):
        try:
            queries.load_commits(sql, batch)
            continue
        except StoreDamaged:
            pass
        for commit_id in batch:  # which ones
            try:
                queries.load_commits(sql, [commit_id])
            except StoreDamaged as exc:
                report.problems.append(
                    Problem("damaged row", commit_id, exc.what, ((commit_id, ""),))
                )


def _objects_of(sql: queries.SQL, commits: list[str]) -> dict[bytes, list[tuple[str, str]]]:
    """``{object id: [(commit, name), …]}`` of every entry of ``commits`` that has an object."""
    users: dict[bytes, list[tuple[str, str]]] = {}
    for batch in queries.batches(sorted(commits)):
        cond, params = queries.in_list("commit_id", batch)
        for r in sql.rows(
            f"SELECT commit_id, name, object_id FROM entries WHERE {cond} "
            "AND object_id IS NOT NULL",
            params,
        ):
            if isinstance(r.object_id, (bytes, bytearray, memoryview)):
                users.setdefault(bytes(r.object_id), []).append((r.commit_id, r.name))
            else:  # a row no stashdb writes: that value is as good as missing
                users.setdefault(b"\0" * 16, []).append((r.commit_id, r.name))
    return users


def _chunks_of(
    sql: queries.SQL, users: dict[bytes, list[tuple[str, str]]], report: VerifyReport,
    *, lazy: bool = False,
) -> dict[bytes, set[bytes]]:
    """``{chunk id: objects using it}``; objects that are missing go in the report."""
    known_objects: set[bytes] = set()
    chunk_users: dict[bytes, set[bytes]] = {}
    for batch in queries.batches(list(users)):
        cond, params = queries.in_list("id", batch)
        known_objects.update(bytes(r.id) for r in sql.rows(
            f"SELECT id FROM objects WHERE {cond}", params))
        cond, params = queries.in_list("object_id", batch)
        for r in sql.rows(f"SELECT object_id, chunk_id FROM object_chunks WHERE {cond}", params):
            if isinstance(r.chunk_id, (bytes, bytearray, memoryview)):
                chunk_users.setdefault(bytes(r.chunk_id), set()).add(bytes(r.object_id))
            else:  # a layout row no stashdb writes: the chunk it names is missing
                chunk_users.setdefault(b"\0" * 16, set()).add(bytes(r.object_id))
    for object_id, where in users.items():
        if object_id not in known_objects and lazy:
            report.unfetched += 1
        elif object_id not in known_objects:
            report.problems.append(
                Problem("missing object", object_id.hex(), "no such object", tuple(where))
            )
    return chunk_users


def _check_chunks(
    sql: queries.SQL,
    chunk_users: dict[bytes, set[bytes]],
    users: dict[bytes, list[tuple[str, str]]],
    report: VerifyReport,
) -> None:
    """Re-hash every chunk; what is missing or damaged goes in the report."""
    seen: set[bytes] = set()
    for chunk, codec, data in queries.iter_chunks(sql, list(chunk_users)):
        seen.add(chunk)
        report.bytes += len(data)
        _, damage = verify_chunk(chunk, codec, data, sql.sealer)
        if damage is not None:
            report.problems.append(
                Problem("damaged chunk", chunk.hex(),
                        f"its bytes hash to {(damage.got or '')[:16]}",
                        _affected(chunk_users[chunk], users),
                        tuple(sorted(o.hex() for o in chunk_users[chunk])))
            )
    for chunk, objects in chunk_users.items():
        if chunk not in seen:
            report.problems.append(
                Problem("missing chunk", chunk.hex(), "no such chunk", _affected(objects, users),
                        tuple(sorted(o.hex() for o in objects)))
            )


def _affected(
    objects: Iterable[bytes], users: dict[bytes, list[tuple[str, str]]]
) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({where for o in objects for where in users.get(o, [])}))


def damage_of(report: VerifyReport) -> tuple[set[bytes], set[bytes]]:
    """The chunks found damaged, and the objects that need a missing or damaged chunk."""
    chunks = {bytes.fromhex(p.id) for p in report.problems if p.kind == "damaged chunk"}
    objects = {
        bytes.fromhex(o)
        for p in report.problems if p.kind in ("damaged chunk", "missing chunk")
        for o in p.objects
    }
    return chunks, objects


@dataclass(frozen=True)
class RepairReport:
    """What `repair` dropped: rows that could never be read back."""

    chunks: int
    objects: int

    def __str__(self) -> str:
        if not self.chunks and not self.objects:
            return "repaired: nothing to drop"
        return (
            f"repaired: dropped {self.chunks} damaged chunks and {self.objects} objects that "
            "needed a missing or damaged chunk; commit those values again to store them anew"
        )


def repair(database: Database, report: VerifyReport) -> RepairReport:
    """Drop what ``report`` found unreadable: damaged chunks, and objects missing a chunk.

    The store then holds nothing it cannot read back: the commits that used
    them say "missing object" (as `verify` will), and the next commit of the
    same values writes them anew, which makes those commits whole again (ids
    are content addresses).
    """
    chunks, objects = damage_of(report)
    ch, ob, oc, dm = schema.chunks.c, schema.objects.c, schema.object_chunks.c, schema.damaged.c
    dropped_chunks = dropped_objects = 0
    with database.write() as conn:
        for batch in queries.batches(sorted(chunks)):
            dropped_chunks += conn.execute(delete(schema.chunks).where(ch.id.in_(batch))).rowcount
        for batch in queries.batches(sorted(objects)):
            conn.execute(delete(schema.object_chunks).where(oc.object_id.in_(batch)))
            dropped_objects += conn.execute(
                delete(schema.objects).where(ob.id.in_(batch))
            ).rowcount
        for batch in queries.batches(sorted(chunks | objects)):
            conn.execute(delete(schema.damaged).where(dm.id.in_(batch)))  # absent now: plain
    return RepairReport(int(dropped_chunks or 0), int(dropped_objects or 0))


# -- gc ----------------------------------------------------------------------------------


#: Objects younger than this are spared by default: they may belong to a commit
#: still writing (its objects go in before its final transaction).
GRACE_SECONDS = 3600.0


def _grace(grace: float | None) -> float:
    return GRACE_SECONDS if grace is None else grace


def gc(database: Database, *, grace: float | None = None) -> GcReport:
    """Delete the objects no commit refers to, then the chunks no object refers to.

    Objects written in the last ``grace`` seconds are spared, so commits in
    flight keep what they wrote. Runs in one write transaction: other writers
    wait. A commit that reused an old object which this deletes notices in its
    final transaction and writes it again (`CommitWriter.write_commit`).
    """
    with database.write() as conn:
        return _collect(conn, time.time() - _grace(grace))


def _collect(
    conn: Connection, written_before: float, released: Iterable[bytes] = ()
) -> GcReport:
    """Delete unreferenced objects written before ``written_before`` (or in ``released``,
    objects just let go of by dropped commits, whatever their age), then orphan chunks."""
    e, oc, ob, ch = schema.entries.c, schema.object_chunks.c, schema.objects.c, schema.chunks.c
    used_objects = select(e.object_id).where(e.object_id.is_not(None))
    old = (ob.created.is_(None)) | (ob.created < written_before)
    dead_objects = conn.execute(
        delete(schema.objects).where(ob.id.not_in(used_objects), old)
    ).rowcount
    for batch in queries.batches(list(released)):
        dead_objects += conn.execute(
            delete(schema.objects).where(ob.id.in_(batch), ob.id.not_in(used_objects))
        ).rowcount
    conn.execute(delete(schema.object_chunks).where(oc.object_id.not_in(select(ob.id))))
    orphan = ch.id.not_in(select(oc.chunk_id))
    chunks, size = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.length(ch.data)), 0)).where(orphan)
    ).one()
    conn.execute(delete(schema.chunks).where(orphan))
    # Damage marks of rows that are gone mean nothing any more.
    dm = schema.damaged.c
    conn.execute(delete(schema.damaged).where(
        dm.id.not_in(select(ch.id)), dm.id.not_in(select(ob.id))
    ))
    return GcReport(objects=int(dead_objects or 0), chunks=int(chunks), bytes=int(size))


# -- prune -------------------------------------------------------------------------------


def prune(
    database: Database,
    branch: str,
    *,
    keep_last: int | None = None,
    keep_days: float | None = None,
    grace: float | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Drop the old commits of ``branch``, then collect what they alone held (see `gc`).

    Only commits on the branch's first-parent chain are candidates. Kept: the
    newest ``keep_last``, those younger than ``keep_days``, tagged commits,
    branch heads, and the commits other branches start from. A kept commit
    whose parent is dropped is re-linked to its nearest kept ancestor, so the
    history of this branch, and of branches forked from it, stays whole. With
    ``dry_run``, the transaction rolls back: the report says what would go.

    Raises:
        InvalidArguments: neither ``keep_last`` nor ``keep_days`` given, or a negative one.
        RefNotFound: no such branch.
    """
    if keep_last is None and keep_days is None:
        raise InvalidArguments("prune needs keep_last and/or keep_days: what to keep")
    if (keep_last is not None and keep_last < 0) or (keep_days is not None and keep_days < 0):
        raise InvalidArguments("keep_last and keep_days cannot be negative")
    with database.write() as conn:
        sql = EngineSQL(conn)
        ref = queries.get_ref(sql, branch, "branch")
        parents = queries.edges(sql)
        c = schema.commits.c
        times = {commit_id: when for commit_id, when in conn.execute(select(c.id, c.time))}
        chain = []  # the first-parent chain, up to a parent that is missing
        for commit_id in graph.first_parents(parents, ref.commit_id):
            if commit_id not in times:
                break
            chain.append(commit_id)
        keep = _to_keep(sql, chain, parents, times, keep_last, keep_days)
        _relink(conn, chain, parents, keep)
        dropped = [commit_id for commit_id in chain if commit_id not in keep]
        released = _drop(conn, dropped)
        freed = _collect(conn, time.time() - _grace(grace), released)
        if dry_run:
            conn.rollback()  # what it would do, counted by doing it: then undone
    return PruneReport(tuple(dropped), freed, dry_run=dry_run)


def _to_keep(
    sql: queries.SQL,
    chain: list[str],
    parents: graph.Graph,
    times: dict[str, float],
    keep_last: int | None,
    keep_days: float | None,
) -> set[str]:
    """The commits of ``chain`` that prune keeps: recent, young, tagged, heads, fork points."""
    # Tagged commits, branch heads, and fork points (a chain commit that a commit
    # off the chain has as its parent: another branch starts there).
    on_chain = set(chain)
    heads = {r.commit_id for r in queries.list_refs(sql)}
    reachable = set(graph.reachable(parents, heads))
    protected = heads | {
        parent
        for child, its_parents in parents.items()
        if child in reachable and child not in on_chain
        for parent in its_parents
        if parent in on_chain
    }
    cutoff = time.time() - keep_days * 86400 if keep_days is not None else None
    keep = set(chain[:1]) | protected  # the tip
    for position, commit_id in enumerate(chain):
        recent = keep_last is not None and position < keep_last
        young = cutoff is not None and times[commit_id] >= cutoff
        if recent or young:
            keep.add(commit_id)
    return keep


def _relink(conn: Connection, chain: list[str], parents: graph.Graph, keep: set[str]) -> None:
    """Point each kept commit whose first parent is dropped at its nearest kept ancestor."""
    p = schema.commit_parents.c
    kept_chain = [commit_id for commit_id in chain if commit_id in keep]
    older_ones: list[str | None] = [*kept_chain[1:], None]
    for newer, older in zip(kept_chain, older_ones):
        its_parents = parents.get(newer) or ()
        first = its_parents[0] if its_parents else None
        if first == older or first is None or first in keep:
            continue
        conn.execute(delete(schema.commit_parents).where(p.commit_id == newer, p.position == 0))
        if older is not None:
            conn.execute(
                schema.commit_parents.insert().values(commit_id=newer, position=0, parent_id=older)
            )


def _drop(conn: Connection, dropped: list[str]) -> set[bytes]:
    """Delete the commits ``dropped`` with their manifests; the objects they held."""
    c, p, e = schema.commits.c, schema.commit_parents.c, schema.entries.c
    released: set[bytes] = set()
    for batch in queries.batches(dropped):
        released.update(
            bytes(object_id)
            for object_id in conn.execute(
                select(e.object_id).where(e.commit_id.in_(batch), e.object_id.is_not(None))
            ).scalars()
        )
        conn.execute(delete(schema.entries).where(e.commit_id.in_(batch)))
        conn.execute(delete(schema.commit_parents).where(p.commit_id.in_(batch)))
        conn.execute(delete(schema.commits).where(c.id.in_(batch)))
    return released
