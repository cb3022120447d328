"""Repo: the operations of stashdb on one store, as methods.

A Repo is *built from* its parts, as dulwich's ``BaseRepo`` is built from an
object store and a refs container: a `Store` (`stashdb.storage.store`: the
read side and the writers of one database) and the workspace layer
(`stashdb.workspace`: capturing namespaces into entries and restoring entries
into namespaces). It adds what belongs to neither: choosing the caller's
namespace, retrying a commit that gc raced, and the one writer thread
(`BackgroundWriter`) that every write of this Repo goes through, in order, so
that a snapshot handed over with `Repo.submit` is seen by every read and
write made after it. The module-level functions in `stashdb.api` are thin
wrappers over these methods.
"""

# long: the one facade of the library, a short documented method per operation;
# what the methods do lives in storage/ and workspace/ (docs/architecture.md).

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import xxhash

from stashdb.background import BackgroundWriter
from stashdb.errors import (
    BadBundle,
    CorruptChunk,
    ExportError,
    InvalidArguments,
    NameNotInSnapshot,
    NotABranch,
    StashError,
    StoreDamaged,
    TamperedData,
    UntrustedSnapshot,
    WriteConflict,
)
from stashdb.model import (
    ChangeCounts,
    CheckoutReport,
    Commit,
    Diff,
    Entry,
    Origin,
    Progress,
    Ref,
    Rev,
    SignReport,
    SnapshotCost,
    StoreStats,
    Transfer,
    Version,
    link_groups,
)
from stashdb.prepared import PreparedCommit, same_manifest
from stashdb.storage.format import DEFAULT_LOCK_TIMEOUT
from stashdb.storage.store import Store
from stashdb.trust.keys import KeyRing, PublicKey
from stashdb.trust.policy import Signer, Verifier
from stashdb.workspace.capture import Capture, Prior, capture, carried, priors_after
from stashdb.workspace.environment import origin
from stashdb.workspace.files import write_atomically
from stashdb.workspace.names import select_names
from stashdb.workspace.restore import KnownState, restore
from stashdb.workspace.snapshot import Snapshot

if TYPE_CHECKING:
    from stashdb.forked import Amendment, ForkedSnapshot, Handoff, Landed
    from stashdb.remotes import Remote
    from stashdb.storage.bundle import Bundle
    from stashdb.storage.maintenance import GcReport, PruneReport, VerifyReport
    from stashdb.storage.objects import ObjectWriter
    from stashdb.storage.reader import Reader
    from stashdb.workspace.loader import ObjectSource

__all__ = ["KnownState", "PreparedCommit", "Repo", "Snapshot"]

#: Notes holding the cost of each branch's last background snapshot (docs/format.md).
COST_NOTE = "cost:"

#: Tries of a commit whose objects a concurrent gc deleted before it landed.
_COMMIT_ATTEMPTS = 5

_T = TypeVar("_T")


def _callers_globals() -> dict[str, Any]:
    """The globals of whoever called the Repo method that calls this."""
    return sys._getframe(2).f_globals


class Repo:
    """A stashdb store, opened.

    Use `stashdb.init` or `stashdb.open` rather than the constructor.

    Args:
        storage: the store it is built from (`stashdb.storage.store.Store`).
    """

    def __init__(self, storage: Store) -> None:
        #: The store: its read side (``storage.reader``) and writers.
        self.storage = storage
        #: Compress chunks with zstd where a sample says it pays. False stores
        #: every chunk raw; ids and values are the same either way.
        self.compress = True
        self._writes = BackgroundWriter()
        #: The user's keys: every commit is signed with their own (docs/security.md).
        self.keyring = KeyRing()
        storage.signer = self._sign
        storage.unseal(self.keyring.store_key)  # an encrypted store: read with its key

    def encrypt(self) -> str:
        """Make this new, empty store an encrypted one; returns the store key's id.

        The key (32 random bytes) goes to the key directory, never the store;
        share it with `stashdb keys export --store-key` (docs/security.md).

        Raises:
            InvalidArguments: the store holds commits already.
        """
        import os

        if self.storage.sealer.encrypted:
            assert self.storage.sealer.key_id is not None
            return self.storage.sealer.key_id
        if self._reader.commit_ids():
            self.storage.seal_with(b"\0" * 32)  # raises: it says why
        key = os.urandom(32)
        key_id = self.keyring.add_store_key(key)
        self.storage.seal_with(key)
        return key_id

    def _sign(self, commit: Commit) -> tuple[str, bytes]:
        from stashdb.trust.signing import sign

        made = sign(commit, self.keyring.own(), self.storage.sealer.blind)
        return made.key_id, made.signature

    @property
    def verifier(self) -> Verifier:
        """Checks this store's commits against the keys trusted here."""
        return Verifier(self.storage.reader, self.keyring, self.storage.sealer.blind)

    def _vouched(self, commit: Commit) -> bool:
        """Whether ``commit`` is signed by a trusted key and intact (never raises)."""
        try:
            self.check_trusted(commit)
        except StashError:
            return False
        return True

    def check_trusted(self, commit: Commit) -> None:
        """Raise unless ``commit`` is signed by a trusted key and intact (nothing unpickled).

        Raises:
            UntrustedSnapshot: unsigned, or signed by a key not trusted here (or revoked).
            TamperedData: its contents are not what was signed.
        """
        self.verifier.check(commit)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create: bool = False,
        location: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> Repo:
        """Open (or with ``create``, create) the store at a SQLAlchemy URL.

        Raises:
            StoreUnreachable, NotAStore, UnsupportedFormat, DriverMissing: the URL
                names no store this stashdb can open.
        """
        return cls(Store.open(url, create=create, location=location, lock_timeout=lock_timeout))

    @property
    def url(self) -> str:
        """The store's URL (with its password, if it has one)."""
        return self.storage.url

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or the URL without its password)."""
        return self.storage.location

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits while another process holds the store's write lock."""
        return self.storage.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self.storage.lock_timeout = seconds

    @property
    def _reader(self) -> Reader:
        """The read side, once the writes this Repo has in flight have landed."""
        self._writes.settle()
        return self.storage.reader

    def _write(self, write: Callable[[], _T]) -> _T:
        """Run a write after the writes in flight (on the writer thread), and return its result."""
        return self._writes.run(write)

    def close(self) -> None:
        """Wait for the writes in flight, then close the store's connections (they reopen)."""
        self._writes.close()
        self.storage.close()

    def __repr__(self) -> str:
        return f"<stashdb.Repo {self.location}>"

    def __reduce__(self) -> Any:
        # A Repo in a committed namespace comes back as the same store, reopened;
        # never with its password (the driver finds it again: PGPASSWORD, ~/.pgpass).
        return (Repo.open, (_without_password(self.url),))

    # -- writing ---------------------------------------------------------------

    def commit(
        self,
        message: str = "",
        *,
        namespace: Mapping[str, Any] | None = None,
        branch: str | None = None,
        only: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        progress: Progress | None = None,
    ) -> Commit:
        """Snapshot a namespace (default: the caller's globals), one variable at a time.

        Unchanged values are hashed, not written again. A value that cannot be
        pickled is recorded as skipped, with its reason; the commit goes on.

        Args:
            message: what this snapshot is.
            namespace: the dict to snapshot; the caller's globals when None.
            branch: the branch to commit to (created from HEAD's commit if new);
                the current branch when None.
            only: glob patterns of the names to store; all others are left out.
            exclude: glob patterns of names to leave out.
            progress: called as ``progress(done_bytes, total_bytes)`` while values
                are stored (the total is an estimate until the values are pickled).

        Returns:
            The commit, whose ``stored``, ``reused`` and ``skipped`` list what
            happened to each name, and ``bytes_written`` what it cost.

        Raises:
            NameNotInNamespace: an ``only`` pattern matches nothing.
        """
        ns = namespace if namespace is not None else _callers_globals()
        message = "" if message is None else str(message)
        names = select_names(ns, only, exclude)
        if branch is not None:
            self.check_branch(branch)
        self._writes.settle()  # what is in flight counts as stored: it is not written twice
        made = self._retrying(lambda: self._prepare(ns, names, message, branch, progress))
        assert made is not None  # without a base there is always a commit
        return made

    def commit_changes(
        self,
        base: Commit,
        changed: Collection[str],
        message: str = "",
        *,
        namespace: Mapping[str, Any],
        branch: str | None = None,
        progress: Progress | None = None,
    ) -> Commit | None:
        """Commit a namespace of which only the ``changed`` names can differ from ``base``.

        The other names keep their entries from ``base`` without being pickled
        again, so the cost is what changed, however much else the namespace
        holds (the IPython extension's snapshot after each cell). Names that
        ``base`` lacks are captured; a name captured takes the other members of
        its group in ``base`` along (they are pickled together).

        Returns:
            The commit, or None when its manifest would equal ``base``'s.
        """
        return self._retrying(
            lambda: self.prepare_changes(
                base, changed, message, namespace=namespace, branch=branch, progress=progress
            )
        )

    def prepare_changes(
        self,
        base: Commit | PreparedCommit | None,
        changed: Collection[str],
        message: str = "",
        *,
        namespace: Mapping[str, Any],
        branch: str | None = None,
        progress: Progress | None = None,
        priors: Mapping[str, Prior] | None = None,
        observe: Callable[[Capture, ObjectWriter], None] | None = None,
    ) -> PreparedCommit | None:
        """`commit_changes` up to the last write: pickled, hashed, large chunks stored.

        `Repo.submit` (or ``PreparedCommit.write``) commits it. With ``base``
        None every name is captured. Returns None when nothing changed.
        ``priors`` (an earlier capture's fingerprints) lets a changed name whose
        array or frame is proved the same keep its entry unpickled; ``observe``
        is shown the capture and its writer (what it found, what it cost).
        """
        names = select_names(namespace, None, None)
        before = {e.name: e for e in base.entries} if base is not None else {}
        todo = {n for n in names if n in changed or n not in before}
        present = set(names)
        grow = list(todo)
        while grow:  # a group is pickled whole: its members come along
            entry = before.get(grow.pop())
            for member in entry.group if entry is not None else ():
                if member in present and member not in todo:
                    todo.add(member)
                    grow.append(member)
        carry = [before[n] for n in names if n not in todo]
        return self._prepare(
            namespace, [n for n in names if n in todo], message, branch, progress,
            carry=carry, workspace_names=names, base=base, priors=priors, observe=observe,
        )

    def _prepare(
        self,
        ns: Mapping[str, Any],
        names: list[str],
        message: str,
        branch: str | None,
        progress: Progress | None,
        *,
        carry: Iterable[Entry] = (),
        workspace_names: list[str] | None = None,
        base: Commit | PreparedCommit | None = None,
        priors: Mapping[str, Prior] | None = None,
        observe: Callable[[Capture, ObjectWriter], None] | None = None,
    ) -> PreparedCommit | None:
        writer = self.storage.object_writer(compress=self.compress)
        captured = capture(
            ns, names, writer, self.storage.reader.value_hashes, progress,
            workspace_names=workspace_names, priors=priors,
        )
        if observe is not None:
            observe(captured, writer)
        entries = tuple(link_groups(
            sorted([*captured.entries, *map(carried, carry)], key=lambda e: e.name)
        ))
        if base is not None and same_manifest(entries, base.entries):
            return None
        packages = {**(base.packages if base is not None else {}), **captured.packages}
        return PreparedCommit(
            self,
            branch or self.head,
            message,
            entries,
            origin(str(ns.get("__name__", "__main__")), packages),
            (captured.chunks_written, captured.bytes_written),
            writer,
            base,
        )

    def commit_manifest(
        self,
        entries: Iterable[Entry],
        message: str,
        *,
        branch: str,
        like: Commit | None = None,
        root: bool = False,
    ) -> Commit:
        """Commit a manifest whose objects the store has (an earlier commit's), on ``branch``.

        Nothing is pickled: going back to an earlier state is a new commit with
        its manifest (a session's ``checkout`` and ``undo``), so the branch's
        history keeps every state it went through. ``like`` is the commit the
        entries come from (its Python, dill and packages are theirs); ``root``
        starts a branch that does not exist yet without a parent.

        Raises:
            StoreDamaged: an object is missing (damage): `verify` says more.
        """
        from stashdb.remotes import ensure_objects
        from stashdb.storage.commits import ObjectsCollected

        made = tuple(_as_reused(entries))
        # A lazy clone fetches the objects it reuses that are not here yet.
        ensure_objects(self.storage, [bytes.fromhex(e.object_id) for e in made if e.object_id])

        def write() -> Commit:
            try:
                return self.storage.commits.write_commit(
                    branch=branch, message=message, entries=made,
                    origin=_origin_like(like), root=root,
                )
            except ObjectsCollected as gone:
                raise StoreDamaged(
                    f"{len(gone.objects)} objects of this state are gone from the store"
                ) from None

        return self._write(write)

    def bundle(self, rev: Rev = "HEAD") -> bytes:
        """The commit ``rev`` names and everything it reaches, as one self-contained bundle.

        Unpickles nothing; the layout is in docs/format.md ("Bundles").
        """
        from stashdb.storage.bundle import write_bundle

        if self.storage.sealer.encrypted:
            raise InvalidArguments(
                "a state of an encrypted store cannot leave it as a bundle yet: its chunks are "
                "sealed under the store's key"
            )
        commit_id = self.resolve(rev)
        with self._reader.transaction() as sql:
            return write_bundle(sql, [commit_id])

    def add_bundle(
        self,
        data: bytes | memoryview | Bundle,
        *,
        branch: str,
        message: str,
        root: bool = False,
        trust: bool = False,
    ) -> Commit:
        """Add a bundle's state to this store and commit it on ``branch``.

        Every byte is checked first (`stashdb.storage.bundle.read_bundle`), and
        the state's commit must be signed by a key trusted here (unless
        ``trust``): the new commit is signed by the user, so it vouches for what
        the bundle's signer wrote. What the store has already is not written
        again. Unpickles nothing.

        Raises:
            BadBundle: the bytes are not a sound bundle of one state: nothing stored.
            UntrustedSnapshot, TamperedData: not signed by a trusted key, or not
                what was signed: nothing stored.
        """
        from stashdb.storage.bundle import Bundle, read_bundle
        from stashdb.trust.signing import Signature, check

        bundle = data if isinstance(data, Bundle) else read_bundle(data)
        if len(bundle.commits) != 1:
            raise BadBundle(f"it holds {len(bundle.commits)} commits, not one state")
        source = bundle.commits[0]
        if not trust:
            found = bundle.signatures.get(source.id)
            check(source, Signature(*found) if found else None, *self.verifier.keys())
        chunks = {cid: (codec, raw, stored, bundle.digests[cid])
                  for cid, codec, raw, stored in bundle.chunks}

        def write() -> Commit:
            writer = self.storage.object_writer()
            count, written, added = writer.put_stored(bundle.objects, chunks)
            entries = tuple(
                replace(e, status="stored") if e.object_id and bytes.fromhex(e.object_id) in added
                else e for e in _as_reused(source.entries)
            )
            return self.storage.commits.write_commit(
                branch=branch, message=message, entries=entries, origin=_origin_like(source),
                written=(count, written), objects=writer, root=root,
            )

        return self._write(write)

    # -- moving state (docs/sharing.md) -------------------------------------------

    def export(self, revs: Rev | Iterable[Rev], path: str | os.PathLike[str]) -> Transfer:
        """Write what ``revs`` reach — their history included — to one bundle file.

        ``"A..B"`` sends only what B adds to A (a store importing it must have
        A). Branches and tags named go in as refs. Unpickles nothing; the
        layout is in docs/format.md ("Bundles").

        Raises:
            RevisionNotFound, AmbiguousRevision: a rev names nothing.
            TransferRefused: the store is encrypted.
        """
        from stashdb import remotes

        many = [revs] if isinstance(revs, (str, Commit)) else list(revs)
        named = [r.id if isinstance(r, Commit) else str(r) for r in many]
        self._writes.settle()
        return remotes.export(self.storage, named, path)

    def import_bundle(self, path: str | os.PathLike[str]) -> Transfer:
        """Add a bundle file's history to this store, skipping what it has; say what was added.

        Branches only move forward (one that went elsewhere here is kept, and
        the report says so); commits keep their ids and signatures, and are
        checked against the keys trusted here when they are checked out.

        Raises:
            BadBundle: not a sound bundle: nothing stored.
            TransferRefused: it builds on commits this store lacks.
        """
        from stashdb import remotes

        return self._write(functools.partial(remotes.import_bundle, self.storage, path))

    def add_remote(self, name: str, url: str) -> Remote:
        """Remember the store at ``url`` (a database URL) as remote ``name``.

        Raises:
            RemoteExists: the name is taken. StoreUnreachable, NotAStore: no store there.
        """
        from stashdb import remotes

        return self._write(functools.partial(remotes.add_remote, self.storage, name, url))

    def remove_remote(self, name: str) -> Remote:
        """Forget remote ``name`` and its remote-tracking refs (``name/…``).

        Raises:
            RemoteNotFound: no such remote.
        """
        from stashdb import remotes

        return self._write(functools.partial(remotes.remove_remote, self.storage, name))

    def remotes(self) -> list[Remote]:
        """This store's remotes."""
        from stashdb import remotes

        self._writes.settle()
        return remotes.remotes(self.storage)

    def push(
        self, remote: str | None = None, refs: Iterable[str] = (), *, force: bool = False,
        progress: Progress | None = None,
    ) -> Transfer:
        """Send branches or tags (default: the current branch) to a remote: only what it lacks.

        A branch there moves by compare-and-swap, and only forward unless
        ``force``: `NotFastForward` says what to do otherwise.

        Raises:
            RemoteNotFound, StoreUnreachable, NotFastForward, TransferRefused.
        """
        from stashdb import remotes

        return self._write(functools.partial(
            remotes.push, self.storage, remote, list(refs), force=force, progress=progress))

    def fetch(
        self, remote: str | None = None, refs: Iterable[str] = (), *, all_data: bool = False,
        progress: Progress | None = None,
    ) -> Transfer:
        """Copy a remote's branches (as ``remote/branch``) and tags, and what they reach.

        In a lazy clone, commits and manifests only, unless ``all_data``.

        Raises:
            RemoteNotFound, StoreUnreachable, RefNotFound.
        """
        from stashdb import remotes

        return self._write(functools.partial(
            remotes.fetch, self.storage, remote, list(refs), all_data=all_data,
            progress=progress))

    def pull(
        self, remote: str | None = None, refs: Iterable[str] = (), *,
        progress: Progress | None = None,
    ) -> Transfer:
        """Fetch, then move branches here (default: the current one) forward to the remote's.

        Raises:
            RemoteNotFound, StoreUnreachable, NotFastForward.
        """
        from stashdb import remotes

        return self._write(functools.partial(
            remotes.pull, self.storage, remote, list(refs), progress=progress))

    def clone_from(
        self, url: str, *, lazy: bool = False, progress: Progress | None = None
    ) -> Transfer:
        """Make this new, empty store a copy of the store at ``url`` (its remote ``origin``).

        ``lazy`` copies commits and manifests only; a checkout fetches the
        data of the values it restores, and keeps it.

        Raises:
            InvalidArguments: this store holds commits already.
        """
        from stashdb import remotes

        return self._write(functools.partial(
            remotes.clone_into, self.storage, url, lazy=lazy, progress=progress))

    def check_branch(self, name: str) -> None:
        """Raise unless a commit can go to branch ``name`` (it may not exist yet).

        Raises:
            InvalidRefName: the name cannot be a branch.
            NotABranch: it is a tag.
        """
        from stashdb.storage.refs import check_name

        existing = self._reader.find_ref(name)
        if existing is None:
            check_name(name)
        elif existing.kind != "branch":
            raise NotABranch(name, existing.kind, existing.commit_id)

    def check_writable(self) -> None:
        """Raise unless this Repo can write now (lock had, store writable); writes nothing.

        Raises:
            StoreLocked: another process holds the write lock past ``lock_timeout``.
            StoreWriteError: the store is read-only here (or the disk refuses).
        """
        self._write(self.storage.check_writable)

    def submit(self, prepared: PreparedCommit) -> Future[Commit]:
        """Write a prepared commit on this Repo's writer thread; return at once.

        Writes happen in the order they are submitted, after the writes already
        in flight; every read and write made through this Repo afterwards
        waits for them, so it sees the commit. The bytes the commit still
        points at are copied first, so the caller may change its values at once.
        The future's result is the `Commit`; its exception, why it was not
        written (`ObjectsCollected` after a concurrent gc: prepare it again).
        """
        prepared.detach()
        return self._writes.submit(prepared.write)

    def fork_changes(
        self,
        changed: Collection[str],
        message: str,
        *,
        namespace: Mapping[str, Any],
        branch: str | None,
        handoff: Callable[[], Handoff],
        landed: Callable[[Handoff, Landed | None, BaseException | None], None],
        since: float | None = None,
    ) -> ForkedSnapshot:
        """Snapshot ``namespace`` as it is now, from a forked child; return at once.

        The caller's thread only forks (`stashdb.forked`); the child pickles,
        hashes and writes from its copy-on-write image, so the caller may
        change its values at once. Snapshots land in the order they are asked
        for, each after the writes before it: when its turn comes, ``handoff``
        says what it builds on (the last snapshot landed, its fingerprints, names
        owed by snapshots that were lost) and ``landed`` hears how it went. Every
        read and write made through this Repo afterwards waits for it, as for
        `submit`. The snapshot's future holds its commit (None: nothing changed
        or it was cancelled); its exception, why it was lost (`SnapshotLost`).
        ``since`` is when the caller's cell ended (``time.perf_counter``): the
        cost recorded counts from there to the fork as time in the cell.
        """
        from stashdb.forked import ForkedChild, ForkedSnapshot

        url, location, timeout, compress = self.url, self.location, self.lock_timeout, self.compress
        names = frozenset(changed)
        forked_at = time.perf_counter() if since is None else since

        def in_child(handed: tuple[Handoff, Amendment]) -> Landed:
            given, amendment = handed
            # Its own connections: the parent's (and their locks) belong to the parent.
            repo = Repo(Store.open(url, location=location, lock_timeout=timeout))
            repo.compress = compress
            amended = amendment.apply(namespace)  # type: ignore[arg-type]
            return repo._snapshot_here(given, names | amended, amendment.message or message,
                                       namespace, branch, forked_at)

        with self._writes.quiet():  # no transaction of ours is open in the child's image
            snapshot = ForkedSnapshot(ForkedChild(in_child))

        def write() -> Commit | None:
            amendment = snapshot.start()
            if amendment is None:
                return None  # a newer snapshot took its place
            given = handoff()
            snapshot.child.hand((given, amendment))
            try:
                made: Landed = snapshot.child.result()
            except BaseException as exc:
                landed(given, None, exc)
                raise
            landed(given, made, None)
            return made.commit

        snapshot.future = self._writes.submit(write, here=False)
        return snapshot

    def _snapshot_here(
        self,
        given: Handoff,
        changed: frozenset[str],
        message: str,
        namespace: Mapping[str, Any],
        branch: str | None,
        forked_at: float,
    ) -> Landed:
        """A forked child's snapshot: `commit_changes` against the handoff, and its cost."""
        from stashdb import forked

        started = time.perf_counter()
        in_cell = forked.child_began - forked_at
        branch = branch or self.head
        seen: list[tuple[Capture, ObjectWriter]] = []
        prepared_at = [started]

        def prepare() -> PreparedCommit | None:
            seen.clear()
            made = self.prepare_changes(
                given.base, changed | given.also, message, namespace=namespace, branch=branch,
                priors=given.priors, observe=lambda c, w: seen.append((c, w)),
                progress=forked.still_working,
            )
            prepared_at[0] = time.perf_counter()
            return made

        commit = self._retrying(prepare)
        ended = time.perf_counter()
        captured, writer = seen[-1]
        entries = commit.entries if commit is not None else (
            given.base.entries if given.base is not None else ())
        own = {e.name for e in captured.entries}
        priors = priors_after(entries, captured, given.priors)
        cost = SnapshotCost(
            background="fork", in_cell=in_cell, waited=started - forked.child_began,
            fingerprinting=captured.seconds["fingerprinting"],
            grouping=captured.seconds["grouping"], pickling=captured.seconds["pickling"],
            hashing=writer.seconds["hashing"],
            writing=writer.seconds["writing"] + (ended - prepared_at[0]),
            total=ended - started, checked=len(own),
            pickled=len(own) - len(captured.proved_unchanged),
            proved_unchanged=len(captured.proved_unchanged), child_memory=forked.private_bytes(),
            commit=commit.id if commit is not None else None, branch=branch, at=time.time(),
        )
        # Keys are 64 characters at most (docs/format.md): the branch goes by its hash.
        key = COST_NOTE + xxhash.xxh3_64_hexdigest(branch.encode())
        self.set_note(key, json.dumps(cost.as_dict()))
        return forked.Landed(commit, priors, cost)

    def snapshot_costs(self) -> list[SnapshotCost]:
        """The last background snapshot's cost on each branch that had one, newest first."""
        costs = []
        for text in self._reader.notes(COST_NOTE).values():
            try:
                costs.append(SnapshotCost(**json.loads(text)))
            except (TypeError, ValueError):  # written by another version: not shown
                continue
        return sorted(costs, key=lambda c: c.at, reverse=True)

    def wait(self) -> None:
        """Block until every commit submitted so far is written (or failed)."""
        self._writes.settle()

    def _retrying(self, prepare: Callable[[], PreparedCommit | None]) -> Commit | None:
        """Prepare and write a commit, again if gc took its objects in between."""
        from stashdb.storage.commits import ObjectsCollected

        for _ in range(_COMMIT_ATTEMPTS):
            try:
                with _file_size_limit_as_error():
                    prepared = prepare()
                    return self._write(prepared.write) if prepared is not None else None
            except ObjectsCollected as gone:
                # gc ran between our writes and our commit, or the store lost them:
                # marked, they are written anew when the values are stored again.
                self._write(functools.partial(self.storage.commits.record_damage,
                                              objects=gone.objects))
                continue
        raise WriteConflict(
            f"could not commit: gc kept deleting this commit's objects ({_COMMIT_ATTEMPTS} tries)"
        )

    def set_note(self, key: str, value: str) -> None:
        """Keep a setting in the store (``session:…``: a session's record, docs/format.md)."""
        self._write(functools.partial(self.storage.commits.set_note, key, value))

    def notes(self, prefix: str) -> dict[str, str]:
        """The settings kept with `set_note` whose keys start with ``prefix``."""
        return self._reader.notes(prefix)

    def tag(self, name: str, rev: Rev = "HEAD", *, message: str | None = None) -> Ref:
        """Name a commit for good.

        Raises:
            RefExists: the name is taken. InvalidRefName: it cannot be a ref.
        """
        return self._write(lambda: self.storage.commits.create_ref("tag", name, rev, message))

    def branch(self, name: str, rev: Rev = "HEAD") -> Ref:
        """Start a branch at ``rev``.

        Raises:
            RefExists: the name is taken. InvalidRefName: it cannot be a ref.
        """
        return self._write(lambda: self.storage.commits.create_ref("branch", name, rev))

    def delete_tag(self, name: str) -> Ref:
        """Remove a tag; returns it. Raises `RefNotFound` if there is none."""
        return self._write(lambda: self.storage.commits.delete_ref("tag", name))

    def rename_branch(self, old: str, new: str) -> Ref:
        """Give branch ``old`` the name ``new`` (HEAD follows it if it is the current one).

        Raises:
            RefNotFound: no branch ``old``. RefExists: ``new`` is taken.
            InvalidRefName: ``new`` cannot be a ref.
        """
        return self._write(functools.partial(self.storage.commits.rename_branch, old, new))

    def reset(self, branch: str, rev: Rev) -> tuple[Ref, str]:
        """Move ``branch`` to ``rev`` (back, usually); returns it and the commit it left.

        The commits it left stay in the store, reachable by their ids (and by
        any other ref), until `prune` drops them.

        Raises:
            RefNotFound: no such branch. RevisionNotFound: ``rev`` names nothing.
        """
        return self._write(functools.partial(self.storage.commits.reset_branch, branch, rev))

    def delete_branch(self, name: str) -> Ref:
        """Remove a branch (not the current one); its commits stay reachable by id.

        Raises:
            RefNotFound: there is no such branch. RefInUse: it is the current branch.
        """
        return self._write(lambda: self.storage.commits.delete_ref("branch", name))

    # -- upkeep ----------------------------------------------------------------

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Walk refs → commits → manifests → objects → chunks, re-hashing every chunk.

        Returns a report whose ``ok`` is true only when nothing reachable is
        missing or damaged; each problem names the commits and variables it
        breaks. Unpickles nothing. What it finds damaged is remembered: the next
        commit of those values writes them again, so a store heals by
        committing the live state. With ``repair``, the rows that cannot be read
        back are dropped too (``report.repaired`` says what).
        """
        self._writes.settle()
        report = self.storage.verify()
        self._verify_trust(report)
        if not report.ok:
            from stashdb.storage.maintenance import damage_of

            chunks, objects = damage_of(report)
            with contextlib.suppress(StashError):  # a read-only store: nothing to remember
                self._write(functools.partial(
                    self.storage.commits.record_damage, chunks=chunks, objects=objects
                ))
            if repair:
                report.repaired = self._write(functools.partial(self.storage.repair, report))
        return report

    def _verify_trust(self, report: VerifyReport) -> None:
        """Add to ``report`` every commit whose signature fails or is missing or untrusted,
        and every value whose bytes are not what its commit signed (nothing unpickled)."""
        from stashdb.storage.maintenance import Problem
        from stashdb.trust.signing import Signature, check

        reader = self.storage.reader
        ids = reader.commit_ids()
        signatures = reader.signatures(ids)
        trusted, revoked = self.verifier.keys()
        wanted: dict[bytes, list[tuple[str, str, str]]] = {}  # object -> (commit, name, digest)
        for cid in ids:
            try:
                commit = reader.get_commit(cid)
            except StashError:
                continue  # a damaged row: the storage pass has named it
            found = signatures.get(cid)
            try:
                check(commit, Signature(*found) if found else None, trusted, revoked,
                      self.storage.sealer.blind)
            except TamperedData as exc:
                report.problems.append(Problem("bad signature", cid, exc.what,
                                               affects=((cid, ""),)))
                continue
            except UntrustedSnapshot as exc:
                kind = "unsigned commit" if found is None else "untrusted commit"
                report.problems.append(Problem(kind, cid, exc.why, affects=((cid, ""),)))
                continue
            for e in commit.entries:
                if e.object_id and e.digest:
                    wanted.setdefault(bytes.fromhex(e.object_id), []).append(
                        (cid, e.name, e.digest))
        ordered = sorted(wanted)
        if report.unfetched:  # a lazy clone: what is not here yet is not checked here
            here = reader.object_facts(ordered)
            ordered = [oid for oid in ordered if oid in here]
        named = {p.id for p in report.problems} | {o for p in report.problems for o in p.objects}
        for start in range(0, len(ordered), 64):
            batch = ordered[start : start + 64]
            for oid, read in reader.read_many(batch).items():
                if isinstance(read, CorruptChunk):
                    if oid.hex() not in named:  # rows the storage pass does not read
                        report.problems.append(Problem(
                            "damaged object", oid.hex(), "its rows cannot be put back together "
                            "(parts, layout or chunks that no stashdb writes)",
                            affects=tuple((c, n) for c, n, _ in wanted[oid])))
                    continue
                bad = tuple((c, n) for c, n, d in wanted[oid] if read.digest.hex() != d)
                if bad:
                    report.problems.append(Problem(
                        "tampered value", oid.hex(),
                        "its bytes are not what its commit's signature covers", affects=bad))

    def gc(self, *, grace: float | None = None) -> GcReport:
        """Delete chunks and objects no commit refers to; safe while others commit.

        Objects written in the last ``grace`` seconds (default:
        `stashdb.storage.maintenance.GRACE_SECONDS`, an hour) are spared: they
        may belong to a commit still in flight.
        """
        return self._write(lambda: self.storage.gc(grace=grace))

    def prune(
        self,
        branch: str | None = None,
        *,
        keep_last: int | None = None,
        keep_days: float | None = None,
        grace: float | None = None,
        dry_run: bool = False,
    ) -> PruneReport:
        """Drop old commits of a branch (default: current), keeping tags and heads; then gc.

        With ``dry_run`` nothing changes: the report says what would be dropped.

        Raises:
            InvalidArguments: neither ``keep_last`` nor ``keep_days``, or a negative one.
            RefNotFound: no such branch.
        """
        name = branch or self.head
        return self._write(lambda: self.storage.prune(
            name, keep_last=keep_last, keep_days=keep_days, grace=grace, dry_run=dry_run
        ))

    # -- reading ---------------------------------------------------------------

    def resolve(self, rev: Rev = "HEAD") -> str:
        """The full commit id a rev names (id, short id, tag, branch, HEAD, REV~N)."""
        return self._reader.resolve(rev)

    @property
    def head(self) -> str:
        """The current branch."""
        return self._reader.head()

    def branches(self) -> list[Ref]:
        """Every branch, sorted by name."""
        return self._reader.list_refs("branch")

    def remote_refs(self) -> list[Ref]:
        """Remote-tracking refs (``origin/main``): where each remote's branches were last seen."""
        return self._reader.list_refs("remote")

    def tags(self) -> list[Ref]:
        """Every tag, sorted by name."""
        return self._reader.list_refs("tag")

    def log(
        self,
        revs: str | None = None,
        *,
        branch: str | None = None,
        limit: int | None = None,
        all: bool = False,
        offset: int = 0,
    ) -> list[Commit]:
        """Commits of a branch (default: the current one), newest first; ``all``: every ref.

        ``revs``: ``"A..B"``, the commits B has that A has not (``"v1.."``: since v1),
        or one rev: the commits it reaches. ``offset`` skips that many first (a
        page: only the page's commits are loaded). Entries are not loaded (use `show`).
        Raises `RefNotFound` for an unknown branch.
        """
        return self._reader.log(branch=branch, limit=limit, all=all, revs=revs, offset=offset)

    def lineage(
        self, revs: str | None = None, *, branch: str | None = None, all: bool = False
    ) -> tuple[list[str], dict[str, list[str]]]:
        """The ids `log` lists (newest first) and every commit's parents, loading no commit.

        What a graph of a long history is drawn from before one page of it is loaded.
        """
        return self._reader.lineage(branch=branch, all=all, revs=revs)

    def touching(self, name: str, commit_ids: Sequence[str]) -> list[str]:
        """Those of ``commit_ids`` that added, changed or removed ``name`` (order kept).

        Compared with each commit's first parent, from the manifests. Unpickles nothing.
        """
        return self._reader.touching(name, commit_ids)

    def commits(self, ids: Sequence[str]) -> list[Commit]:
        """The commits with these full ids, in that order, without entries (use `show`)."""
        return self._reader.commits(ids)

    def show(self, rev: Rev = "HEAD") -> Commit:
        """One commit with its entries (type, sizes, preview, status). Unpickles nothing."""
        return self._reader.show(rev)

    def diff(self, a: Rev, b: Rev = "HEAD") -> Diff:
        """Names added, removed, changed and unchanged from ``a`` to ``b``. Unpickles nothing."""
        return self._reader.diff(a, b)

    def history(self, name: str, *, branch: str | None = None) -> list[Version]:
        """The versions of one variable along a branch, newest first. Unpickles nothing."""
        return self._reader.history(name, branch=branch)

    def write_value(
        self, rev: Rev, name: str, path: str | os.PathLike[str], *, trust: bool = False
    ) -> Entry:
        """Write one stored value to ``path`` as a plain pickle, without unpickling it.

        The file loads with ``pickle.load`` wherever the value's packages are
        installed. Returns the value's entry. The file is a pickle someone will
        load, so it is written only from a commit signed by a trusted key, with
        the bytes that were signed (unless ``trust``).

        Raises:
            UntrustedSnapshot, TamperedData: see `checkout`.
            NameNotInSnapshot: the snapshot has no such name.
            ExportError: it was skipped, is a module, refers to workspace code, or
                shares objects with other names (use a checkout to a dill file then).
            CorruptChunk: its stored bytes are damaged.
        """
        from stashdb.pickling.export import standalone

        commit = self.show(rev)
        entry = next((e for e in commit.entries if e.name == name), None)
        if entry is None:
            raise NameNotInSnapshot([name], commit.id, commit.names)
        if entry.kind != "value" or entry.object_id is None:
            why = entry.reason if entry.kind == "skipped" else f"it is a {entry.kind}"
            raise ExportError(os.fspath(path), f"{name!r} holds no stored value ({why})")
        if not trust:
            self.check_trusted(commit)
        object_id = bytes.fromhex(entry.object_id)
        found = self._objects.read_many([object_id], digests=not trust)[object_id]
        if isinstance(found, CorruptChunk):
            raise found.for_name(name)
        pickler, parts, digest = found
        if not trust and digest.hex() != entry.digest:
            raise TamperedData(commit.id, "its stored bytes do not match the digest its "
                               "signature covers", name=name)
        data = standalone(os.fspath(path), pickler, parts, grouped=entry.slot is not None)

        def write(temporary: str) -> None:
            Path(temporary).write_bytes(data)

        write_atomically(path, write)
        return entry

    def change_counts(self, commits: Iterable[Commit]) -> dict[str, ChangeCounts]:
        """Names each commit added, changed and removed against its first parent."""
        return self._reader.change_counts(list(commits))

    def stats(self) -> StoreStats:
        """Counts and sizes of the whole store (metadata only)."""
        return self._reader.stats()

    def at(self, rev: Rev = "HEAD", *, trust: bool = False, safe: bool = False) -> Snapshot:
        """A lazy, read-only mapping of a snapshot: a name is unpickled when read.

        The commit's signature is checked here, each value's bytes when read
        (``trust`` and ``safe`` as for `checkout`).

        Raises:
            UntrustedSnapshot, TamperedData: see `checkout`.
        """
        commit = self.show(rev)
        verify = not trust and not safe
        if verify:
            self.check_trusted(commit)
        return Snapshot(self._objects, commit, verify=verify, safe=safe)

    def _head_commit(self) -> Commit | None:
        """The tip of the current branch (None: it has no commits yet)."""
        reader = self._reader
        ref = reader.find_ref(reader.head())
        if ref is None or ref.kind != "branch":
            return None
        return reader.get_commit(ref.commit_id)

    @property
    def _objects(self) -> _NotingDamage:
        """Where restores read objects: the read side, telling this Repo what is damaged.

        In a lazy clone, what is not here yet is fetched first (and kept).
        """
        from stashdb.remotes import ensure_objects, lazy_remote

        fetch = None
        if lazy_remote(self.storage) is not None:
            fetch = functools.partial(ensure_objects, self.storage)
        return _NotingDamage(self.storage.reader, self._note_damage, fetch)

    def _note_damage(self, found: list[CorruptChunk]) -> None:
        """Remember damage a read met, so the next commit of those values writes them again.

        In the background, and best effort: a read must not fail because the
        store cannot be written (read-only, locked).
        """
        chunks = {bytes.fromhex(d.chunk_id) for d in found if d.chunk_id and d.got}
        objects = {bytes.fromhex(d.object_id) for d in found if d.object_id and d.chunk_id}
        if chunks or objects:
            self._writes.submit(functools.partial(
                self.storage.commits.record_damage, chunks=chunks, objects=objects
            ))

    # -- trust -----------------------------------------------------------------

    def sign_all(self) -> SignReport:
        """Sign, with the user's key, every commit not signed yet (after review: it vouches).

        Values stored before this stashdb kept digests are digested first
        (each chunk read and hashed once); ids do not change. A commit the
        user signed whose manifest just got digests is signed again; one of
        theirs whose signature fails otherwise (changed since) is not: `verify`
        names it. Commits others signed are left as they are.
        """
        from stashdb.storage.digests import fill_digests
        from stashdb.trust.signing import sign

        self._writes.settle()
        own = self.keyring.own()
        digested = fill_digests(self.storage.database, own.key_id, self.storage.sealer)
        reader = self.storage.reader
        ids = reader.commit_ids()
        signatures = reader.signatures(ids)
        signed, lacking = [], []
        commits_writer = self.storage.commits
        for start in range(0, len(ids), 200):
            batch = [reader.get_commit(cid) for cid in ids[start : start + 200]]
            todo = []
            for commit in batch:
                found = signatures.get(commit.id)
                if found is not None and not _resign(commit, found, own, digested.commits,
                                                     self.storage.sealer.blind):
                    continue  # someone else's; or ours, sound, or changed since we signed it
                if any(e.object_id and not e.digest for e in commit.entries):
                    lacking.append(commit.id)
                    continue
                todo.append(commit)
            if todo:
                with self.storage.database.write() as conn:
                    for commit in todo:
                        made = sign(commit, own, self.storage.sealer.blind)
                        commits_writer.write_signature(conn, commit, made.key_id, made.signature)
                signed += [c.id for c in todo]
        return SignReport(signed, lacking, digested.objects, digested.unreadable)

    def sign(self, rev: Rev = "HEAD") -> Commit:
        """Sign one commit with the user's key (signing it again if it was theirs).

        Raises:
            UntrustedSnapshot: it holds values without digests (use `sign_all`).
        """
        from stashdb.trust.signing import sign

        self._writes.settle()
        commit = self.show(rev)
        if any(e.object_id and not e.digest for e in commit.entries):
            raise UntrustedSnapshot(
                commit.id, "holds values stored before stashdb kept digests: Repo.sign_all() "
                "digests them first"
            )
        made = sign(commit, self.keyring.own(), self.storage.sealer.blind)
        with self.storage.database.write() as conn:
            self.storage.commits.write_signature(conn, commit, made.key_id, made.signature)
        return commit

    def trust_key(self, public_key: str, *, revoke: bool = False) -> PublicKey:
        """Add a public key (one OpenSSH line) to this store's own trusted list, signed by you.

        Everyone who trusts you directly then trusts commits that key signed in
        this store; with ``revoke``, the list says the key is revoked instead.

        Raises:
            KeyProblem: the line is not an Ed25519 public key.
        """
        import time

        from stashdb.trust.keys import PublicKey
        from stashdb.trust.policy import team_row_payload

        key = PublicKey.parse(public_key, "the key given")
        own = self.keyring.own()
        added = time.time()
        revoked = added if revoke else None
        data = team_row_payload(key.key_id, key.openssh, key.name, added, revoked)
        self.storage.commits.put_trusted_key({
            "key_id": key.key_id, "public_key": key.openssh, "name": key.name, "added": added,
            "revoked": revoked, "signer": own.key_id, "signature": own.sign(data),
        })
        return key

    def signers(self, commits: Iterable[Commit]) -> dict[str, Signer]:
        """Who signed each commit, and whether that key is trusted here (not checked)."""
        return self.verifier.signers(c.id for c in commits)

    # -- restoring -------------------------------------------------------------

    def checkout(
        self,
        rev: Rev = "HEAD",
        *,
        only: Iterable[str] | None = None,
        namespace: MutableMapping[str, Any] | None = None,
        merge: bool = False,
        progress: Progress | None = None,
        known: KnownState | None = None,
        leave: Callable[[str], bool] | None = None,
        source: ObjectSource | None = None,
        trust: bool = False,
        safe: bool = False,
    ) -> CheckoutReport:
        """Restore a snapshot into a namespace (default: the caller's globals).

        A full (exact) checkout restores every name of the snapshot and removes
        the names the namespace's current snapshot held but this one lacks:
        the current snapshot is ``known.snapshot`` when given, else the tip of
        the store's current branch. Names no snapshot held, modules,
        default-excluded names (``_``-prefixed, IPython's own) and names the
        snapshot skipped are never removed (see `stashdb.workspace.restore`).
        ``merge=True`` keeps the other names. ``only`` restores just those
        names and touches nothing else. A name that cannot be restored is
        reported in ``failed`` and keeps its current value; the others restore.
        An exact checkout of a branch by name makes it the current branch (a
        merge or partial one never moves HEAD).

        Args:
            progress: called as ``progress(done_bytes, total_bytes)`` as values
                are restored.
            known: what the caller knows of the namespace (a front end that
                tracks what its code changed): values the snapshot holds too
                stay in memory, unread (see `stashdb.workspace.restore`).
            leave: names of the snapshot for which it is true are neither
                restored nor removed (a session's files: it restores them itself).
            source: where the values are read (default: this store), such as
                `stashdb.storage.bundle.BundleObjects` for a state just added.
            trust: unpickle without checking who signed the commit (a store
                you trust whoever wrote); default: the signature is checked
                first, and each value's bytes before it is unpickled.
            safe: unpickle only plain data, numpy and pandas (an allow-list of
                globals), whoever signed it: for a store you do not trust at all.

        Raises:
            NameNotInSnapshot: an ``only`` name is not in the snapshot.
            UntrustedSnapshot: the commit is unsigned or not signed by a trusted key.
            TamperedData: the commit or a value is not what was signed.
            UnsafeGlobal: (reported per name in ``failed``) with ``safe``, a value
                needing more than the allow-list.
        """
        ns = namespace if namespace is not None else _callers_globals()
        commit = self.show(rev)
        verify = not trust and not safe
        if verify:
            self.check_trusted(commit)
        if known is not None and not trust and not self._vouched(known.snapshot):
            # Values kept from a snapshot no trusted key vouches for would come back
            # from it if the checkout fails: without it, nothing is kept or released.
            known = None
        if leave is not None:
            commit = _without(commit, leave)
            if known is not None:
                known = KnownState(_without(known.snapshot, leave), known.unchanged)
        tracked: Collection[str] = ()
        if only is None and not merge:
            current = known.snapshot if known is not None else self._head_commit()
            tracked = [e.name for e in current.entries] if current is not None else ()
            if leave is not None:
                tracked = [n for n in tracked if not leave(n)]
        report = restore(
            source if source is not None else self._objects, commit, ns, only=only,
            merge=merge, known=known, tracked=tracked, progress=progress, verify=verify,
            safe=safe,
        )
        if only is None and not merge and isinstance(rev, str):
            ref = self._reader.find_ref(rev)
            if ref is not None and ref.kind == "branch":
                self._write(lambda: self.storage.commits.set_head(rev))
        return report


def _without(commit: Commit, leave: Callable[[str], bool]) -> Commit:
    return replace(commit, entries=tuple(e for e in commit.entries if not leave(e.name)))


def _as_reused(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Entries as a commit that writes no value has them: stored ones are reused."""
    for entry in entries:
        yield replace(entry, status="reused") if entry.status == "stored" else entry


def _origin_like(commit: Commit | None) -> Origin:
    """Who makes this commit (here, now), with the Python, dill and packages of ``commit``."""
    if commit is None:
        return origin("__main__", {})
    here = origin(commit.workspace, commit.packages)
    return replace(here, python=commit.python, dill=commit.dill)


def _without_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url  # a file: nothing secret in it
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed._replace(password=None).render_as_string(hide_password=False)


@contextlib.contextmanager
def _file_size_limit_as_error() -> Iterator[None]:
    """Let a write past RLIMIT_FSIZE fail with EFBIG (a clear error) instead of SIGXFSZ
    killing the process. Signal handlers can only be set from the main thread."""
    xfsz = getattr(signal, "SIGXFSZ", None)
    if xfsz is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(xfsz, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(xfsz, previous)


class _NotingDamage:
    """An object source that passes on what a read found damaged (see `Repo._note_damage`)."""

    def __init__(
        self, reader: Reader, note: Callable[[list[CorruptChunk]], None],
        fetch: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self._reader, self._note, self._fetch = reader, note, fetch

    def read_many(self, object_ids: Iterable[bytes], *, digests: bool = True) -> dict[bytes, Any]:
        """The objects, as the reader gives them; damage found is noted on the way."""
        if self._fetch is not None:  # a lazy clone: bring what is not here yet
            object_ids = list(object_ids)
            self._fetch(object_ids)
        found = self._reader.read_many(object_ids, digests=digests)
        damage = [v for v in found.values() if isinstance(v, CorruptChunk)]
        if damage:
            self._note(damage)
        return found


def _resign(
    commit: Commit, found: tuple[str, bytes], own: Any, filled: dict[str, set[str]],
    blind: Callable[[str | None], str | None],
) -> bool:
    """Whether `Repo.sign_all` signs ``commit`` again: ours, and changed only by the digests
    it just filled — our old signature holds over the commit with those set back to none.
    Anything else changed since we signed it stays as it is (`verify` names it)."""
    from stashdb.trust.signing import payload

    names = filled.get(commit.id)
    if found[0] != own.key_id or not names:
        return False
    before = replace(commit, entries=tuple(
        replace(e, digest=None) if e.name in names else e for e in commit.entries))
    return bool(own.public.verify(found[1], payload(before, blind)))
