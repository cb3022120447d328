"""Store: commits, manifests, refs and revs over one database. Never unpickles.

Everything here reads and writes plain columns; values are the business of
`stashdb.chunks` (bytes) and `stashdb.workspace` (Python objects).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import xxhash
from sqlalchemy import Connection, Engine, func, select

from stashdb import revs
from stashdb.chunks import ChunkStore, ObjectWriter
from stashdb.db import schema
from stashdb.db.engine import read_transaction, write_transaction
from stashdb.errors import RevisionNotFound, StashError
from stashdb.model import (
    Change,
    ChangeCounts,
    Commit,
    Diff,
    Entry,
    Rev,
    StoreStats,
    Version,
    commit_from_row,
    entries_from_rows,
)
from stashdb.refs import Ref, Refs

__all__ = ["ObjectsCollected", "Store"]

_MAX_CAS_ATTEMPTS = 100


class _LostRace(Exception):
    """Another writer moved the branch between our read and our compare-and-swap."""


class ObjectsCollected(Exception):
    """`gc` deleted objects (or chunks) this commit wrote before its final transaction.

    The commit is not written; the caller stores its values again and retries.
    """


class _Lookup:
    """What `revs.resolve` asks, answered inside one read transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self._store, self._conn = store, conn

    def head(self) -> str:
        return self._store.refs.head(self._conn)

    def ref_target(self, name: str) -> tuple[str, str] | None:
        ref = self._store.refs.find(self._conn, name)
        return (ref.kind, ref.commit_id) if ref is not None else None

    def parents(self, commit_id: str) -> list[str]:
        return self._store._parents(self._conn, commit_id)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        c = schema.commits.c
        query = select(c.id).where(c.id.like(prefix + "%")).order_by(c.id).limit(limit)
        return list(self._conn.execute(query).scalars())


class Store:
    """The metadata of a store: commits and their manifests, refs, revs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.refs = Refs()
        self.chunks = ChunkStore(engine)

    # -- revs ------------------------------------------------------------------

    def resolve(self, rev: Rev) -> str:
        """The full id of the commit ``rev`` names.

        Raises:
            RevisionNotFound: nothing matches.
            AmbiguousRevision: a short id matches several commits.
        """
        with read_transaction(self.engine) as conn:
            return self._resolve(conn, rev)

    def _resolve(self, conn: Connection, rev: Rev) -> str:
        return revs.resolve(rev, _Lookup(self, conn))

    def _parents(self, conn: Connection, commit_id: str) -> list[str]:
        p = schema.commit_parents.c
        return list(
            conn.execute(
                select(p.parent_id).where(p.commit_id == commit_id).order_by(p.position)
            ).scalars()
        )

    # -- reading commits -------------------------------------------------------

    def head(self) -> str:
        """The current branch."""
        with read_transaction(self.engine) as conn:
            return self.refs.head(conn)

    def get_commit(self, commit_id: str, *, entries: bool = True) -> Commit:
        with read_transaction(self.engine) as conn:
            return self._load_commits(conn, [commit_id], entries=entries)[0]

    def _load_commits(
        self, conn: Connection, ids: Sequence[str], *, entries: bool
    ) -> list[Commit]:
        c, p = schema.commits.c, schema.commit_parents.c
        rows = {r.id: r for r in conn.execute(select(schema.commits).where(c.id.in_(ids)))}
        parents: dict[str, list[str]] = {}
        for r in conn.execute(
            select(p.commit_id, p.parent_id).where(p.commit_id.in_(ids)).order_by(p.position)
        ):
            parents.setdefault(r.commit_id, []).append(r.parent_id)
        tags: dict[str, list[str]] = {}
        for ref in self.refs.list(conn, "tag"):
            tags.setdefault(ref.commit_id, []).append(ref.name)
        manifests = self._load_entries(conn, ids) if entries else {}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise RevisionNotFound(missing[0], "no such commit in this store")
        return [
            commit_from_row(
                rows[i], parents.get(i, []), manifests.get(i, []), tags.get(i, [])
            )
            for i in ids
        ]

    def _load_entries(self, conn: Connection, ids: Sequence[str]) -> dict[str, list[Entry]]:
        e = schema.entries.c
        raw: dict[str, list[Any]] = {}
        for r in conn.execute(
            select(schema.entries).where(e.commit_id.in_(ids)).order_by(e.commit_id, e.name)
        ):
            raw.setdefault(r.commit_id, []).append(r)
        return {commit_id: entries_from_rows(rows) for commit_id, rows in raw.items()}

    def log(
        self, *, branch: str | None = None, limit: int | None = None, all: bool = False
    ) -> list[Commit]:
        """Commits reachable from a branch (default: HEAD's), or from every ref; newest first."""
        with read_transaction(self.engine) as conn:
            if all:
                starts = [r.commit_id for r in self.refs.list(conn)]
            else:
                name = branch or self.refs.head(conn)
                if branch is not None:
                    self.refs.get(conn, name, "branch")
                tip = self.refs.tip(conn, name)
                starts = [tip] if tip else []
            ids = self._reachable(conn, starts)
            commits = self._load_commits(conn, ids, entries=False)
        commits.sort(key=lambda commit: (commit.time, commit.id), reverse=True)
        return commits[:limit] if limit is not None else commits

    def _reachable(self, conn: Connection, starts: Iterable[str]) -> list[str]:
        p = schema.commit_parents.c
        edges: dict[str, list[str]] = {}
        for r in conn.execute(select(p.commit_id, p.parent_id)):
            edges.setdefault(r.commit_id, []).append(r.parent_id)
        seen: dict[str, None] = {}
        stack = list(starts)
        while stack:
            commit_id = stack.pop()
            if commit_id in seen:
                continue
            seen[commit_id] = None
            stack.extend(edges.get(commit_id, []))
        return list(seen)

    def first_parent_chain(self, tip: str) -> list[str]:
        """The commits from ``tip`` back along first parents, newest first."""
        with read_transaction(self.engine) as conn:
            chain = [tip]
            while True:
                parents = self._parents(conn, chain[-1])
                if not parents:
                    return chain
                chain.append(parents[0])

    def value_hashes(self, object_id: bytes) -> dict[int, str]:
        """Slot -> value hash recorded for the members of a group object, if any."""
        e = schema.entries.c
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                select(e.slot, e.value_hash)
                .where(e.object_id == object_id, e.slot.is_not(None), e.value_hash.is_not(None))
                .distinct()
            )
            return {slot: value_hash for slot, value_hash in rows}

    def list_refs(self, kind: str | None = None) -> list[Ref]:
        with read_transaction(self.engine) as conn:
            return self.refs.list(conn, kind)

    # -- diff, history, sizes -----------------------------------------------------

    def change_counts(self, commits: Sequence[Commit]) -> dict[str, ChangeCounts]:
        """Names added, changed and removed by each commit against its first parent."""
        wanted = {c.id for c in commits} | {c.parents[0] for c in commits if c.parents}
        with read_transaction(self.engine) as conn:
            manifests = self._load_entries(conn, sorted(wanted))
        counts = {}
        for commit in commits:
            after = {e.name: e for e in manifests.get(commit.id, [])}
            before_list = manifests.get(commit.parents[0], []) if commit.parents else []
            before = {e.name: e for e in before_list}
            counts[commit.id] = ChangeCounts(
                added=len(after.keys() - before.keys()),
                changed=sum(
                    1 for n in after.keys() & before.keys() if not after[n].same_value(before[n])
                ),
                removed=len(before.keys() - after.keys()),
            )
        return counts

    def stats(self) -> StoreStats:
        """Counts and sizes of the whole store."""
        ch, ob, e = schema.chunks.c, schema.objects.c, schema.entries.c
        with read_transaction(self.engine) as conn:

            def count(table: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

            raw, stored = conn.execute(
                select(func.coalesce(func.sum(ch.raw_size), 0),
                       func.coalesce(func.sum(func.length(ch.data)), 0))
            ).one()
            per_commit = (
                select(e.commit_id, e.object_id)
                .where(e.object_id.is_not(None))
                .distinct()
                .subquery()
            )
            logical = conn.execute(
                select(func.coalesce(func.sum(ob.raw_size), 0)).select_from(
                    per_commit.join(schema.objects, ob.id == per_commit.c.object_id)
                )
            ).scalar_one()
            refs = self.refs.list(conn)
            return StoreStats(
                commits=count(schema.commits),
                branches=sum(r.kind == "branch" for r in refs),
                tags=sum(r.kind == "tag" for r in refs),
                objects=count(schema.objects),
                chunks=count(schema.chunks),
                raw_bytes=int(raw),
                stored_bytes=int(stored),
                logical_bytes=int(logical),
            )

    def diff(self, a: Rev, b: Rev) -> Diff:
        """How snapshot ``b`` differs from ``a`` (both revs)."""
        old, new = self.get_commit(self.resolve(a)), self.get_commit(self.resolve(b))
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
        """The versions of one name along a branch's first parents, newest first."""
        with read_transaction(self.engine) as conn:
            if branch is not None:
                self.refs.get(conn, branch, "branch")
            tip = self.refs.tip(conn, branch or self.refs.head(conn))
        if tip is None:
            return []
        chain = list(reversed(self.first_parent_chain(tip)))
        with read_transaction(self.engine) as conn:
            commits = {c.id: c for c in self._load_commits(conn, chain, entries=False)}
            e = schema.entries.c
            found: dict[str, Entry] = {}
            for start in range(0, len(chain), 500):
                batch = chain[start : start + 500]
                for row in conn.execute(
                    select(schema.entries).where(e.name == name, e.commit_id.in_(batch))
                ):
                    found[row.commit_id] = entries_from_rows([row])[0]
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

    # -- writing -----------------------------------------------------------------

    def write_commit(
        self,
        *,
        branch: str,
        message: str,
        entries: list[dict[str, Any]],
        metadata: dict[str, Any],
        objects: ObjectWriter | None = None,
        base: Commit | None = None,
    ) -> str:
        """Write a commit whose objects are stored, then move ``branch`` to it.

        The parent is the branch's tip read inside the write transaction; a
        branch that does not exist yet starts from HEAD's commit. The branch
        moves by compare-and-swap, retried if another writer got there first.
        ``objects``' pending rows are written first, in the same transaction.
        When the branch's tip is ``base``, the objects they share are not
        checked again: a commit's objects are never collected while it exists
        (this keeps a small commit on top of gigabytes cheap).
        """
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                made = self._try_write_commit(branch, message, entries, metadata, objects, base)
            except _LostRace:
                continue
            if objects is not None:
                objects.forget_pending()
            return made
        raise StashError(f"could not move branch {branch!r}: other writers kept moving it")

    def _try_write_commit(
        self,
        branch: str,
        message: str,
        entries: list[dict[str, Any]],
        metadata: dict[str, Any],
        objects: ObjectWriter | None,
        base: Commit | None,
    ) -> str:
        with write_transaction(self.engine) as conn:
            if objects is not None:
                objects.write_pending(conn)
            tip = self.refs.tip(conn, branch)
            to_check = {e["object_id"] for e in entries if e["object_id"]}
            if base is not None and tip == base.id:
                to_check -= {bytes.fromhex(e.object_id) for e in base.entries if e.object_id}
            self._check_objects(conn, to_check)
            if tip is not None:
                parents = [tip]
            else:
                head_tip = self.refs.tip(conn, self.refs.head(conn))
                parents = [head_tip] if head_tip else []
            now = time.time()
            commit_id = _commit_id(parents, now, message, branch, entries)
            conn.execute(
                schema.commits.insert().values(
                    id=commit_id, time=now, message=message, branch=branch, **metadata
                )
            )
            if parents:
                conn.execute(
                    schema.commit_parents.insert(),
                    [
                        {"commit_id": commit_id, "position": i, "parent_id": parent}
                        for i, parent in enumerate(parents)
                    ],
                )
            if entries:
                conn.execute(
                    schema.entries.insert(), [{"commit_id": commit_id, **e} for e in entries]
                )
            if not self.refs.move_branch(conn, branch, tip, commit_id):
                raise _LostRace  # rolls the whole commit back; the caller retries
        return commit_id

    def _check_objects(self, conn: Connection, object_ids: set[bytes]) -> None:
        """Raise `ObjectsCollected` unless every object and all its chunks are in the store.

        Runs inside the commit's write transaction, so `gc` (which takes the
        same lock) cannot remove anything between this check and the commit.
        """
        ob, oc, ch = schema.objects.c, schema.object_chunks.c, schema.chunks.c
        wanted = list(object_ids)  # empty: nothing to check, no query
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            present = conn.execute(select(func.count()).where(ob.id.in_(batch))).scalar_one()
            holes = conn.execute(
                select(func.count())
                .select_from(schema.object_chunks.outerjoin(schema.chunks, ch.id == oc.chunk_id))
                .where(oc.object_id.in_(batch), ch.id.is_(None))
            ).scalar_one()
            if present != len(batch) or holes:
                raise ObjectsCollected

    def create_ref(self, kind: str, name: str, rev: Rev, message: str | None = None) -> Ref:
        with write_transaction(self.engine) as conn:
            return self.refs.create(conn, kind, name, self._resolve(conn, rev), message)

    def delete_ref(self, kind: str, name: str) -> Ref:
        with write_transaction(self.engine) as conn:
            if kind == "branch" and name == self.refs.head(conn):
                raise StashError(
                    f"cannot delete branch {name!r}: it is the current branch; "
                    "check out another branch first"
                )
            return self.refs.delete(conn, kind, name)

    def set_head(self, branch: str) -> None:
        with write_transaction(self.engine) as conn:
            self.refs.set_head(conn, branch)


def _commit_id(
    parents: list[str], now: float, message: str, branch: str, entries: list[dict[str, Any]]
) -> str:
    manifest = [
        [e["name"], e["kind"], e["object_id"].hex() if e["object_id"] else None, e["slot"],
         e["module"], e["reason"]]
        for e in sorted(entries, key=lambda e: e["name"])
    ]
    payload = json.dumps([parents, repr(now), message, branch, manifest], separators=(",", ":"))
    return xxhash.xxh3_128_hexdigest(payload.encode())
