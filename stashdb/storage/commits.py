"""Writing commits and moving refs, under the store's write lock. Never unpickles.

A commit is written last in the write order (format rule 2): its objects are in
the store (`stashdb.storage.objects`), then its row, its parents and its
manifest go in one transaction that also moves its branch by compare-and-swap.
Tags, branches and HEAD change here too; every read of them is in
`stashdb.storage.queries`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, update

from stashdb.errors import NotABranch, RefExists, RefInUse, WriteConflict
from stashdb.model import Commit, Entry, Origin, Ref, Rev
from stashdb.storage import queries, schema
from stashdb.storage.engine import Database
from stashdb.storage.engine_driver import EngineSQL
from stashdb.storage.objects import ObjectWriter, insert_if_absent
from stashdb.storage.refs import check_name
from stashdb.storage.sealing import PLAIN, SEALED_COLUMNS, Plain

__all__ = ["CommitWriter", "ObjectsCollected", "commit_id_holds", "commit_id_of", "entry_row"]

#: Compare-and-swap tries of a branch that other writers keep moving.
_MAX_CAS_ATTEMPTS = 100


class _LostRace(Exception):
    """Another writer moved the branch between our read and our compare-and-swap."""


class ObjectsCollected(Exception):
    """Objects this commit needs are gone (or miss chunks) at its final transaction.

    `gc` deleted what the commit wrote before it, or the store lost them
    (damage). Internal: the commit is not written; `Repo` marks ``objects`` as
    damaged, stores the values again (the marks make it write them anew) and
    retries, and never lets this reach a user.
    """

    def __init__(self, objects: set[bytes]) -> None:
        super().__init__(f"{len(objects)} objects are gone or incomplete")
        self.objects = objects


def entry_row(entry: Entry, sealer: Plain = PLAIN) -> dict[str, Any]:
    """The ``entries`` row of one manifest entry (without its commit id)."""
    row: dict[str, Any] = {
        "name": entry.name,
        "kind": entry.kind,
        "status": entry.status,
        "object_id": bytes.fromhex(entry.object_id) if entry.object_id else None,
        "slot": entry.slot,
        "value_hash": entry.value_hash,
        "type_name": entry.type_name,
        "size": entry.size,
        "stored_size": entry.stored_size,
        "seconds": entry.seconds,
        "preview": entry.preview,
        "shape": entry.shape,
        "literal": entry.literal,
        "reason": entry.reason,
        "module": entry.module,
        "version": entry.version,
        "digest": bytes.fromhex(entry.digest) if entry.digest else None,
    }
    if sealer.encrypted:  # what describes the value, sealed (docs/security.md)
        for column in SEALED_COLUMNS:
            row[column] = sealer.seal_text(row[column])
    return row


def commit_id_of(
    parents: Sequence[str], when: float, message: str, branch: str, entries: Sequence[Entry],
    sealer: Plain = PLAIN,
) -> str:
    """The id of a commit (docs/format.md, "Ids"; keyed in an encrypted store)."""
    manifest = [
        [e.name, e.kind, e.object_id, e.slot, e.module, e.reason]
        for e in sorted(entries, key=lambda e: e.name)
    ]
    payload = json.dumps(
        [list(parents), repr(when), message, branch, manifest], separators=(",", ":")
    )
    return sealer.commit_id(payload.encode())


#: Signs a commit as it is written: ``commit -> (key id, signature)`` (set by Repo).
Signer = Callable[[Commit], tuple[str, bytes]]


class CommitWriter:
    """Writes commits, refs and HEAD of one store."""

    def __init__(self, database: Database) -> None:
        self._database = database
        #: Signs every commit in the transaction that writes it (None: unsigned).
        self.signer: Signer | None = None
        #: Seals what describes values in an encrypted store (set by `Store`).
        self.sealer: Plain = PLAIN

    def write_commit(
        self,
        *,
        branch: str,
        message: str,
        entries: Sequence[Entry],
        origin: Origin,
        written: tuple[int, int] = (0, 0),
        objects: ObjectWriter | None = None,
        base: Commit | None = None,
        root: bool = False,
    ) -> Commit:
        """Write a commit whose objects are stored, then move ``branch`` to it; return it.

        The parent is the branch's tip read inside the write transaction; a
        branch that does not exist yet starts from HEAD's commit (with
        ``root``, from nothing: the commit has no parent). The branch
        moves by compare-and-swap, retried if another writer got there first.
        ``objects``' pending rows are written first, in the same transaction.
        When the branch's tip is ``base``, the objects they share are not
        checked again: a commit's objects are never collected while it exists
        (this keeps a small commit on top of gigabytes cheap).

        Args:
            written: ``(chunks, bytes)`` this commit added to the store.

        Raises:
            ObjectsCollected: gc took objects the commit needs; store them again.
            NotABranch: ``branch`` is a tag.
            WriteConflict: other writers kept moving the branch.
        """
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                made = self._try_write(
                    branch, message, entries, origin, written, objects, base, root
                )
            except _LostRace:
                continue
            if objects is not None:
                objects.forget_pending()
            return made
        raise WriteConflict(f"could not move branch {branch!r}: other writers kept moving it")

    def _try_write(
        self,
        branch: str,
        message: str,
        entries: Sequence[Entry],
        origin: Origin,
        written: tuple[int, int],
        objects: ObjectWriter | None,
        base: Commit | None,
        root: bool,
    ) -> Commit:
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            if objects is not None:
                objects.write_pending(conn)
            existing = queries.find_ref(sql, branch)
            if existing is not None and existing.kind != "branch":
                raise NotABranch(branch, existing.kind, existing.commit_id)
            tip = existing.commit_id if existing is not None else None
            to_check = {bytes.fromhex(e.object_id) for e in entries if e.object_id}
            if base is not None and tip == base.id:
                to_check -= {bytes.fromhex(e.object_id) for e in base.entries if e.object_id}
            if objects is not None:
                to_check -= objects.written_whole()
            incomplete = queries.incomplete_objects(sql, to_check)
            if incomplete:
                raise ObjectsCollected(incomplete)
            if tip is not None:
                parents = [tip]
            elif root:
                parents = []
            else:
                head_tip = _branch_tip(sql, queries.head(sql))
                parents = [head_tip] if head_tip else []
            now = time.time()
            commit_id = commit_id_of(parents, now, message, branch, entries, self.sealer)
            # What is written, as a read would give it back (not read: a small commit
            # is a few milliseconds, and reading it back cost 0.15 of them).
            made = Commit(
                id=commit_id, message=message, parents=tuple(parents),
                time=datetime.fromtimestamp(now, tz=timezone.utc), branch=branch,
                workspace=origin.workspace, user=origin.user, host=origin.host,
                python=origin.python, dill=origin.dill,
                packages=dict(sorted(origin.packages.items())),
                chunks_written=written[0], bytes_written=written[1],
                entries=tuple(sorted(entries, key=lambda e: e.name)),
            )
            _insert_commits(conn, [(made, now)], self.sealer)
            if self.signer is not None:
                self.write_signature(conn, made, *self.signer(made))
            if not _move_branch(conn, branch, tip, commit_id):
                raise _LostRace  # rolls the whole commit back; the caller retries
        return made

    def put_commits(
        self,
        commits: Sequence[tuple[Commit, float]],
        signatures: dict[str, tuple[str, bytes]],
    ) -> int:
        """Add commits made elsewhere, as they are (same ids and times); return how many were new.

        ``commits`` are ``(commit, stored time)``, parents before children, each
        checked by the caller against its id and with every object it reaches
        in the store already. Commits the store has are skipped. One
        transaction: all of them land, or none.
        """
        if not commits:
            return 0
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            have = queries.ids_in(sql, "commits", [c.id for c, _ in commits])
            new = [(c, t) for c, t in commits if c.id not in have]
            if not new:
                return 0
            _insert_commits(conn, new, self.sealer)
            signed = [
                {"commit_id": c.id, "key_id": signatures[c.id][0],
                 "signature": signatures[c.id][1], "signed": time.time()}
                for c, _ in new if c.id in signatures
            ]
            if signed:
                conn.execute(schema.signatures.insert(), signed)
        return len(new)

    def move_ref(self, name: str, kind: str, old: str | None, new: str) -> bool:
        """Point ref ``name`` at ``new`` if it still points at ``old`` (None: it must not exist).

        A compare-and-swap: of two writers moving one ref from the same place,
        exactly one succeeds; the other gets False and is told.

        Raises:
            InvalidRefName: the name cannot be a ref. RevisionNotFound: no commit ``new``.
        """
        check_name(name)
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            queries.resolve(sql, new)  # the commit is here (raises if not)
            existing = queries.find_ref(sql, name)
            if existing is not None and existing.kind != kind:
                return False
            if old is None:
                if existing is not None:
                    return False
                conn.execute(schema.refs.insert().values(
                    name=name, kind=kind, commit_id=new, message=None, time=time.time()))
                return True
            result = conn.execute(
                update(schema.refs)
                .where(schema.refs.c.name == name, schema.refs.c.kind == kind,
                       schema.refs.c.commit_id == old)
                .values(commit_id=new, time=time.time())
            )
            return bool(result.rowcount == 1)

    def set_tracking_ref(self, name: str, commit_id: str | None) -> None:
        """Point remote-tracking ref ``name`` (``origin/main``) at a commit; None deletes it.

        Raises:
            RefExists: a branch or tag has that name.
        """
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            existing = queries.find_ref(sql, name)
            if existing is not None and existing.kind != "remote":
                raise RefExists(existing.kind, name, existing.commit_id)
            conn.execute(schema.refs.delete().where(schema.refs.c.name == name))
            if commit_id is not None:
                conn.execute(schema.refs.insert().values(
                    name=name, kind="remote", commit_id=commit_id, message=None,
                    time=time.time()))

    def delete_notes(self, prefix: str) -> None:
        """Remove every setting whose key starts with ``prefix`` (a remote's, say)."""
        with self._database.write() as conn:
            conn.execute(schema.meta.delete().where(schema.meta.c.key.startswith(prefix)))

    def write_signature(self, conn: Connection, commit: Commit, key_id: str, sig: bytes) -> None:
        """Record ``commit``'s signature (replacing one it had: `stashdb keys sign`)."""
        table = schema.signatures
        conn.execute(table.delete().where(table.c.commit_id == commit.id))
        conn.execute(table.insert().values(
            commit_id=commit.id, key_id=key_id, signature=sig, signed=time.time()
        ))

    def create_ref(self, kind: str, name: str, rev: Rev, message: str | None = None) -> Ref:
        """Create a tag or branch ``name`` at ``rev``.

        Raises:
            InvalidRefName: the name cannot be a ref.
            RefExists: a branch or tag of that name exists.
            RevisionNotFound, AmbiguousRevision: ``rev`` names no single commit.
        """
        check_name(name)
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            commit_id = queries.resolve(sql, rev)
            existing = queries.find_ref(sql, name)
            if existing is not None:
                raise RefExists(existing.kind, name, existing.commit_id)
            ref = Ref(name, kind, commit_id, message, time.time())
            conn.execute(
                schema.refs.insert().values(
                    name=name, kind=kind, commit_id=commit_id,
                    message=self.sealer.seal_text(message), time=ref.time,
                )
            )
            return ref

    def delete_ref(self, kind: str, name: str) -> Ref:
        """Delete the tag or branch ``name`` (not the current branch).

        Raises:
            RefNotFound: there is no such ref of that kind.
            RefInUse: it is the current branch.
        """
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            ref = queries.get_ref(sql, name, kind)
            if kind == "branch" and name == queries.head(sql):
                raise RefInUse(kind, name)
            conn.execute(schema.refs.delete().where(schema.refs.c.name == name))
            return ref

    def record_damage(self, chunks: Iterable[bytes] = (), objects: Iterable[bytes] = ()) -> None:
        """Remember chunks and objects found damaged: the next commit of them writes them again."""
        now = time.time()
        rows = [{"id": c, "kind": "chunk", "found": now} for c in set(chunks)]
        rows += [{"id": o, "kind": "object", "found": now} for o in set(objects)]
        if rows:
            with self._database.write() as conn:
                insert_if_absent(conn, schema.damaged, rows)

    def rename_branch(self, old: str, new: str) -> Ref:
        """Give branch ``old`` the name ``new``; HEAD follows it if it was the current one.

        Raises:
            RefNotFound: no branch ``old``. RefExists: ``new`` is taken.
            InvalidRefName: ``new`` cannot be a ref.
        """
        check_name(new)
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            ref = queries.get_ref(sql, old, "branch")
            taken = queries.find_ref(sql, new)
            if taken is not None:
                raise RefExists(taken.kind, new, taken.commit_id)
            conn.execute(update(schema.refs).where(schema.refs.c.name == old).values(name=new))
            if queries.head(sql) == old:
                conn.execute(
                    update(schema.meta).where(schema.meta.c.key == "HEAD").values(value=new)
                )
            return Ref(new, "branch", ref.commit_id, ref.message, ref.time)

    def reset_branch(self, branch: str, rev: Rev) -> tuple[Ref, str]:
        """Point ``branch`` at ``rev``; the branch and the commit it pointed at before.

        Raises:
            RefNotFound: no such branch. RevisionNotFound: ``rev`` names nothing.
        """
        with self._database.write() as conn:
            sql = EngineSQL(conn)
            ref = queries.get_ref(sql, branch, "branch")
            target = queries.resolve(sql, rev)
            now = time.time()
            conn.execute(update(schema.refs).where(schema.refs.c.name == branch)
                         .values(commit_id=target, time=now))
            return Ref(branch, "branch", target, ref.message, now), ref.commit_id

    def put_trusted_key(self, row: dict[str, Any]) -> None:
        """Add (or replace) a row of the store's trusted-key list (revision 0005)."""
        table = schema.trusted_keys
        with self._database.write() as conn:
            conn.execute(table.delete().where(table.c.key_id == row["key_id"]))
            conn.execute(table.insert().values(**row))

    def set_note(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` in the store's settings (a session's record, say)."""
        with self._database.write() as conn:
            conn.execute(schema.meta.delete().where(schema.meta.c.key == key))
            conn.execute(schema.meta.insert().values(key=key, value=value))

    def set_head(self, branch: str) -> None:
        """Make ``branch`` the current branch."""
        with self._database.write() as conn:
            conn.execute(
                update(schema.meta).where(schema.meta.c.key == "HEAD").values(value=branch)
            )


def commit_id_holds(commit: Commit, stored_time: float) -> bool:
    """Whether ``commit``'s id is the id of its contents (one from a bundle or a sender)."""
    made = commit_id_of(commit.parents, stored_time, commit.message, commit.branch, commit.entries)
    return made == commit.id


def _insert_commits(
    conn: Connection, commits: Sequence[tuple[Commit, float]], sealer: Plain
) -> None:
    """Insert the rows of ``commits`` (``(commit, stored time)``): commit, parents, manifest."""
    conn.execute(schema.commits.insert(), [_commit_row(c, t, sealer) for c, t in commits])
    parents = [{"commit_id": c.id, "position": i, "parent_id": parent}
               for c, _ in commits for i, parent in enumerate(c.parents)]
    if parents:
        conn.execute(schema.commit_parents.insert(), parents)
    rows = [{"commit_id": c.id, **entry_row(e, sealer)} for c, _ in commits for e in c.entries]
    for start in range(0, len(rows), 5000):
        conn.execute(schema.entries.insert(), rows[start : start + 5000])


def _commit_row(commit: Commit, stored_time: float, sealer: Plain) -> dict[str, Any]:
    """The ``commits`` row of ``commit`` (its time as stored, exactly: its id covers it)."""
    entries = commit.entries
    return {
        "id": commit.id, "time": stored_time, "message": sealer.seal_text(commit.message),
        "branch": commit.branch, "workspace": commit.workspace, "user": commit.user,
        "host": commit.host, "python": commit.python, "dill": commit.dill,
        "packages": json.dumps(dict(sorted(commit.packages.items()))),
        "stored": sum(e.status == "stored" for e in entries),
        "reused": sum(e.status == "reused" for e in entries),
        "skipped": sum(e.status == "skipped" for e in entries),
        "chunks_written": commit.chunks_written, "bytes_written": commit.bytes_written,
    }


def _branch_tip(sql: queries.SQL, branch: str) -> str | None:
    ref = queries.find_ref(sql, branch)
    return ref.commit_id if ref is not None and ref.kind == "branch" else None


def _move_branch(conn: Connection, name: str, old: str | None, new: str) -> bool:
    """Point branch ``name`` at ``new`` if it still points at ``old`` (None: absent).

    Returns False when another writer moved it first; the caller retries.
    """
    if old is None:
        if queries.find_ref(EngineSQL(conn), name) is not None:
            return False
        conn.execute(
            schema.refs.insert().values(
                name=name, kind="branch", commit_id=new, message=None, time=time.time()
            )
        )
        return True
    result = conn.execute(
        update(schema.refs)
        .where(schema.refs.c.name == name, schema.refs.c.commit_id == old)
        .values(commit_id=new, time=time.time())
    )
    return result.rowcount == 1
