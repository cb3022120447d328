"""Keeping a store sound and small: verify, gc, prune. Never unpickles anything.

`verify` walks refs → commits → manifests → objects → chunks and re-hashes
every chunk. `gc` deletes what no commit refers to, holding the write lock;
a commit racing with it re-checks its objects inside its own final
transaction and starts over if `gc` took any (`stashdb.store`). `prune` drops
old commits of one branch, keeping tagged commits, branch heads and anything
another ref can reach, then collects.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, func, select

from stashdb.chunks import verify_chunk
from stashdb.db import schema
from stashdb.db.engine import read_transaction, write_transaction
from stashdb.errors import StashError
from stashdb.store import Store

__all__ = [
    "GRACE_SECONDS",
    "GcReport",
    "Problem",
    "PruneReport",
    "VerifyReport",
    "gc",
    "prune",
    "verify",
]

_BATCH = 500


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store, and what it breaks."""

    #: "missing commit", "missing parent", "missing object", "missing chunk", "damaged chunk"
    kind: str
    id: str  # the commit, object or chunk (hex)
    detail: str
    affects: tuple[tuple[str, str], ...] = ()  # (commit id, variable name) pairs it breaks

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

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"checked {self.refs} refs, {self.commits} commits, {self.objects} objects, "
            f"{self.chunks} chunks ({self.bytes:,} bytes)"
        )
        if self.ok:
            return f"{head}\nok: everything is sound"
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:"
        return "\n".join([head, count, *map(str, self.problems)])


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
    """What `prune` dropped, and what collecting afterwards freed."""

    commits: tuple[str, ...]
    gc: GcReport

    def __str__(self) -> str:
        return f"dropped {len(self.commits)} commits; {self.gc}"


# -- verify -------------------------------------------------------------------------


def verify(store: Store) -> VerifyReport:
    """Check everything a ref can reach, re-hashing every chunk.

    Unreachable leftovers (from an interrupted commit) are not problems: `gc`
    reclaims them.
    """
    report = VerifyReport()
    c, p, e = schema.commits.c, schema.commit_parents.c, schema.entries.c
    oc, ob, ch = schema.object_chunks.c, schema.objects.c, schema.chunks.c
    with read_transaction(store.engine) as conn:
        refs = store.refs.list(conn)
        report.refs = len(refs)
        existing = set(conn.execute(select(c.id)).scalars())
        parents: dict[str, list[str]] = {}
        for row in conn.execute(select(p.commit_id, p.parent_id)):
            parents.setdefault(row.commit_id, []).append(row.parent_id)

        reachable: set[str] = set()
        stack = []
        for ref in refs:
            if ref.commit_id not in existing:
                detail = f"{ref.kind} {ref.name!r} points at it"
                report.problems.append(Problem("missing commit", ref.commit_id, detail))
            else:
                stack.append(ref.commit_id)
        while stack:
            commit_id = stack.pop()
            if commit_id in reachable:
                continue
            reachable.add(commit_id)
            for parent in parents.get(commit_id, []):
                if parent not in existing:
                    report.problems.append(
                        Problem("missing parent", parent, f"parent of {commit_id[:8]}",
                                ((commit_id, ""),))
                    )
                else:
                    stack.append(parent)
        report.commits = len(reachable)

        users: dict[bytes, list[tuple[str, str]]] = {}  # object -> (commit, name)
        for batch in _batches(sorted(reachable)):
            for commit_id, name, object_id in conn.execute(
                select(e.commit_id, e.name, e.object_id).where(
                    e.commit_id.in_(batch), e.object_id.is_not(None)
                )
            ):
                users.setdefault(bytes(object_id), []).append((commit_id, name))
        report.objects = len(users)

        known_objects: set[bytes] = set()
        chunk_users: dict[bytes, set[bytes]] = {}  # chunk -> objects
        for batch in _batches(list(users)):
            known_objects.update(bytes(i) for i in conn.execute(
                select(ob.id).where(ob.id.in_(batch))).scalars())
            for object_id, chunk_id in conn.execute(
                select(oc.object_id, oc.chunk_id).where(oc.object_id.in_(batch))
            ):
                chunk_users.setdefault(bytes(chunk_id), set()).add(bytes(object_id))
        for object_id, where in users.items():
            if object_id not in known_objects:
                report.problems.append(
                    Problem("missing object", object_id.hex(), "no such object", tuple(where))
                )
        report.chunks = len(chunk_users)

        seen: set[bytes] = set()
        for batch in _batches(list(chunk_users), 64):
            for raw_id, codec, data in conn.execute(
                select(ch.id, ch.codec, ch.data).where(ch.id.in_(batch))
            ):
                chunk = bytes(raw_id)
                seen.add(chunk)
                report.bytes += len(data)
                _, damage = verify_chunk(chunk, codec, data)
                if damage is not None:
                    report.problems.append(
                        Problem("damaged chunk", chunk.hex(),
                                f"its bytes hash to {(damage.got or '')[:16]}",
                                _affected(chunk_users[chunk], users))
                    )
        for chunk, objects in chunk_users.items():
            if chunk not in seen:
                missing = Problem("missing chunk", chunk.hex(), "no such chunk",
                                  _affected(objects, users))
                report.problems.append(missing)
    return report


def _affected(
    objects: Iterable[bytes], users: dict[bytes, list[tuple[str, str]]]
) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({where for o in objects for where in users.get(o, [])}))


def _batches(items: list[Any], size: int = _BATCH) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- gc ----------------------------------------------------------------------------------


#: Objects younger than this are spared by default: they may belong to a commit
#: still writing (its objects go in before its final transaction).
GRACE_SECONDS = 3600.0


def _grace(grace: float | None) -> float:
    return GRACE_SECONDS if grace is None else grace


def gc(store: Store, *, grace: float | None = None) -> GcReport:
    """Delete the objects no commit refers to, then the chunks no object refers to.

    Objects written in the last ``grace`` seconds are spared, so commits in
    flight keep what they wrote. Runs in one write transaction: other writers
    wait. A commit that reused an old object which this deletes notices in its
    final transaction and writes it again (`Store.write_commit`).
    """
    with write_transaction(store.engine) as conn:
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
    for batch in _batches(list(released)):
        dead_objects += conn.execute(
            delete(schema.objects).where(ob.id.in_(batch), ob.id.not_in(used_objects))
        ).rowcount
    conn.execute(delete(schema.object_chunks).where(oc.object_id.not_in(select(ob.id))))
    orphan = ch.id.not_in(select(oc.chunk_id))
    chunks, size = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.length(ch.data)), 0)).where(orphan)
    ).one()
    conn.execute(delete(schema.chunks).where(orphan))
    return GcReport(objects=int(dead_objects or 0), chunks=int(chunks), bytes=int(size))


# -- prune -------------------------------------------------------------------------------


def prune(
    store: Store,
    branch: str,
    *,
    keep_last: int | None = None,
    keep_days: float | None = None,
    grace: float | None = None,
) -> PruneReport:
    """Drop the old commits of ``branch``, then collect what they alone held (see `gc`).

    Only commits on the branch's first-parent chain are candidates. Kept: the
    newest ``keep_last``, those younger than ``keep_days``, tagged commits,
    branch heads, and the commits other branches start from. A kept commit
    whose parent is dropped is re-linked to its nearest kept ancestor, so the
    history of this branch, and of branches forked from it, stays whole.

    Raises:
        StashError: neither ``keep_last`` nor ``keep_days`` given, or a negative one.
        RefNotFound: no such branch.
    """
    if keep_last is None and keep_days is None:
        raise StashError("prune needs --keep-last N and/or --keep-days D: what to keep")
    if (keep_last is not None and keep_last < 0) or (keep_days is not None and keep_days < 0):
        raise StashError("--keep-last and --keep-days cannot be negative")
    c, p = schema.commits.c, schema.commit_parents.c
    with write_transaction(store.engine) as conn:
        tip = store.refs.get(conn, branch, "branch").commit_id
        parents: dict[str, list[str]] = {}
        for row in conn.execute(select(p.commit_id, p.parent_id).order_by(p.position)):
            parents.setdefault(row.commit_id, []).append(row.parent_id)
        times = {commit_id: when for commit_id, when in conn.execute(select(c.id, c.time))}

        chain = [tip]
        while parents.get(chain[-1]) and parents[chain[-1]][0] in times:
            chain.append(parents[chain[-1]][0])

        # Tagged commits, branch heads, and fork points (a chain commit that a commit
        # off the chain has as its parent: another branch starts there).
        on_chain = set(chain)
        heads = {r.commit_id for r in store.refs.list(conn)}
        reachable = _reachable(heads, parents)
        protected = heads | {
            parent
            for child, its_parents in parents.items()
            if child in reachable and child not in on_chain
            for parent in its_parents
            if parent in on_chain
        }
        cutoff = time.time() - keep_days * 86400 if keep_days is not None else None
        keep = set()
        for position, commit_id in enumerate(chain):
            recent = keep_last is not None and position < keep_last
            young = cutoff is not None and times[commit_id] >= cutoff
            if recent or young:
                keep.add(commit_id)
        keep.add(tip)
        keep |= protected
        dropped = [commit_id for commit_id in chain if commit_id not in keep]

        # Re-link each kept commit whose first parent goes to its nearest kept ancestor.
        kept_chain = [commit_id for commit_id in chain if commit_id in keep]
        for newer, older in zip(kept_chain, [*kept_chain[1:], None]):
            first = parents.get(newer, [None])[0]
            if first == older or first is None or first in keep:
                continue
            conn.execute(
                delete(schema.commit_parents).where(p.commit_id == newer, p.position == 0)
            )
            if older is not None:
                conn.execute(
                    schema.commit_parents.insert().values(
                        commit_id=newer, position=0, parent_id=older
                    )
                )
        released: set[bytes] = set()
        for batch in _batches(dropped):
            e = schema.entries.c
            released.update(
                bytes(object_id)
                for object_id in conn.execute(
                    select(e.object_id).where(e.commit_id.in_(batch), e.object_id.is_not(None))
                ).scalars()
            )
            conn.execute(delete(schema.entries).where(schema.entries.c.commit_id.in_(batch)))
            conn.execute(delete(schema.commit_parents).where(p.commit_id.in_(batch)))
            conn.execute(delete(schema.commits).where(c.id.in_(batch)))
        freed = _collect(conn, time.time() - _grace(grace), released)
    return PruneReport(tuple(dropped), freed)


def _reachable(starts: Iterable[str], parents: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        commit_id = stack.pop()
        if commit_id not in seen:
            seen.add(commit_id)
            stack.extend(parents.get(commit_id, []))
    return seen
