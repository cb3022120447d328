"""Repo: the operations of stashdb on one store, as methods.

A Repo is built from a `Store` (commits, refs, chunks) and the workspace layer
(capturing and restoring namespaces). The module-level functions in
`stashdb.api` are thin wrappers over these methods.

On a SQLite store, commits and values are read through `SQLiteReader`
(the standard library's sqlite3) and the SQLAlchemy engine is made on first
need: restoring a variable in a fresh process does not pay SQLAlchemy's import.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from functools import cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from stashdb.db.sqlite_reader import SQLiteReader
from stashdb.errors import NameNotInSnapshot, RestoreError, StashError
from stashdb.model import (
    CheckoutReport,
    Commit,
    Diff,
    Entry,
    Failure,
    Ref,
    Rev,
    Skipped,
    Version,
    entries_from_rows,
    skipped_of,
)
from stashdb.workspace import (
    Loader,
    Progress,
    capture,
    carried_row,
    environment,
    excluded_by_default,
    packages_json,
    select_names,
    shell_names,
    version_warnings,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from stashdb.chunks import ObjectWriter
    from stashdb.maintenance import GcReport, PruneReport, VerifyReport
    from stashdb.store import Store

__all__ = ["PreparedCommit", "Repo", "Snapshot"]

#: Tries of a commit whose objects a concurrent gc deleted before it landed.
_COMMIT_ATTEMPTS = 5


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _settled(method: _Method) -> _Method:
    """Run ``method`` after the writes this process has in flight (`Repo.writes_in_flight`)."""

    @functools.wraps(method)
    def settled(self: Repo, *args: Any, **kwargs: Any) -> Any:
        if self.writes_in_flight is not None:
            self.writes_in_flight()
        return method(self, *args, **kwargs)

    return settled  # type: ignore[return-value]


class Repo:
    """A stashdb store, opened.

    Use `stashdb.init` or `stashdb.open` rather than the constructor.
    """

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        location: str | None = None,
        *,
        reader: SQLiteReader | None = None,
    ) -> None:
        self.url = url
        self._location = location
        self._engine = engine
        self._reader = reader
        #: Compress chunks with zstd where a sample says it pays. False stores
        #: every chunk raw; ids and values are the same either way.
        self.compress = True
        #: Waits for commits this process is writing on another thread (the
        #: IPython extension's snapshots): reads and other writes see them.
        self.writes_in_flight: Callable[[], None] | None = None

    @classmethod
    def open(cls, url: str, *, create: bool = False, location: str | None = None) -> Repo:
        """Open (or with ``create``, create) the store at a SQLAlchemy URL."""
        if not create:
            reader = SQLiteReader.open(url)  # None unless a current-format SQLite store
            if reader is not None:
                return cls(url, location=location, reader=reader)
        from stashdb.db.engine import open_engine

        engine = open_engine(url, create=create)  # checks, creates or upgrades the store
        return cls(url, engine, location, reader=SQLiteReader.open(url))

    @cached_property
    def store(self) -> Store:
        """The store through SQLAlchemy: made on first use when the Repo opened light."""
        from stashdb.db.engine import open_engine
        from stashdb.store import Store

        engine = self._engine if self._engine is not None else open_engine(self.url, create=False)
        return Store(engine)

    @property
    def _reads(self) -> Store | SQLiteReader:
        """Where commits and values are read from: the light reader when there is one."""
        return self._reader if self._reader is not None else self.store

    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or the URL without its password)."""
        if self._location is None:
            from stashdb.db.engine import safe_url

            self._location = safe_url(self.url)
        return self._location

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if "store" in self.__dict__:
            self.store.engine.dispose()

    def __repr__(self) -> str:
        return f"<stashdb.Repo {self.location}>"

    def __reduce__(self) -> Any:
        # A Repo in a committed namespace comes back as the same store, reopened.
        return (Repo.open, (self.url,))

    # -- writing ---------------------------------------------------------------

    @_settled
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
        ns = namespace if namespace is not None else sys._getframe(1).f_globals
        message = "" if message is None else str(message)
        names = select_names(ns, only, exclude)
        made = _retrying(lambda: self._prepare(ns, names, message, branch, progress))
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
        return _retrying(
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
    ) -> PreparedCommit | None:
        """`commit_changes` up to the last write: pickled, hashed, large chunks stored.

        ``PreparedCommit.write`` (on any thread) commits it. With ``base`` None
        every name is captured. Returns None when nothing changed.
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
            carry=carry, workspace_names=names, base=base,
        )

    def _prepare(
        self,
        ns: Mapping[str, Any],
        names: list[str],
        message: str,
        branch: str | None,
        progress: Progress | None,
        *,
        carry: Sequence[Entry] = (),
        workspace_names: list[str] | None = None,
        base: Commit | PreparedCommit | None = None,
    ) -> PreparedCommit | None:
        writer = self.store.chunks.writer(compress=self.compress)
        captured = capture(
            ns, names, writer, self.store.value_hashes, progress, workspace_names=workspace_names
        )
        rows = captured.entries + [carried_row(e) for e in carry]
        rows.sort(key=lambda e: e["name"])
        manifest = tuple(entries_from_rows([SimpleNamespace(**r) for r in rows]))
        if base is not None and _same_manifest(manifest, base.entries):
            return None
        packages = {**(base.packages if base is not None else {}), **captured.packages}
        metadata = environment(str(ns.get("__name__", "__main__")))
        metadata.update(
            packages=packages_json(packages),
            stored=sum(e.status == "stored" for e in manifest),
            reused=sum(e.status == "reused" for e in manifest),
            skipped=sum(e.status == "skipped" for e in manifest),
            chunks_written=captured.chunks_written,
            bytes_written=captured.bytes_written,
        )
        return PreparedCommit(
            self, branch or self.store.head(), message, rows, manifest, metadata, writer,
            packages, base,
        )

    @_settled
    def tag(self, name: str, rev: Rev = "HEAD", *, message: str | None = None) -> Ref:
        """Name a commit for good. Raises `RefExists` if the name is taken."""
        return self.store.create_ref("tag", name, rev, message)

    @_settled
    def branch(self, name: str, rev: Rev = "HEAD") -> Ref:
        """Start a branch at ``rev``. Raises `RefExists` if the name is taken."""
        return self.store.create_ref("branch", name, rev)

    @_settled
    def delete_tag(self, name: str) -> Ref:
        return self.store.delete_ref("tag", name)

    @_settled
    def delete_branch(self, name: str) -> Ref:
        return self.store.delete_ref("branch", name)

    # -- upkeep ----------------------------------------------------------------

    @_settled
    def verify(self) -> VerifyReport:
        """Walk refs → commits → manifests → objects → chunks, re-hashing every chunk.

        Returns a report whose ``ok`` is true only when nothing reachable is
        missing or damaged; each problem names the commits and variables it
        breaks. Unpickles nothing.
        """
        from stashdb import maintenance

        return maintenance.verify(self.store)

    @_settled
    def gc(self, *, grace: float | None = None) -> GcReport:
        """Delete chunks and objects no commit refers to; safe while others commit.

        Objects written in the last ``grace`` seconds (default:
        `maintenance.GRACE_SECONDS`, an hour) are spared: they may belong to a
        commit still in flight.
        """
        from stashdb import maintenance

        return maintenance.gc(self.store, grace=grace)

    @_settled
    def prune(
        self,
        branch: str | None = None,
        *,
        keep_last: int | None = None,
        keep_days: float | None = None,
        grace: float | None = None,
    ) -> PruneReport:
        """Drop old commits of a branch (default: current), keeping tags and heads; then gc."""
        from stashdb import maintenance

        return maintenance.prune(
            self.store, branch or self.head, keep_last=keep_last, keep_days=keep_days,
            grace=grace,
        )

    # -- reading ---------------------------------------------------------------

    @_settled
    def resolve(self, rev: Rev = "HEAD") -> str:
        """The full commit id a rev names (id, short id, tag, branch, HEAD, REV~N)."""
        return self._reads.resolve(rev)

    @property
    def head(self) -> str:
        """The current branch."""
        return self.store.head()

    @_settled
    def branches(self) -> list[Ref]:
        return self._reads.list_refs("branch")

    @_settled
    def tags(self) -> list[Ref]:
        return self._reads.list_refs("tag")

    @_settled
    def log(
        self, *, branch: str | None = None, limit: int | None = None, all: bool = False
    ) -> list[Commit]:
        """Commits of a branch (default: the current one), newest first; ``all``: every ref."""
        return self.store.log(branch=branch, limit=limit, all=all)

    @_settled
    def show(self, rev: Rev = "HEAD") -> Commit:
        """One commit with its entries (type, sizes, preview, status). Unpickles nothing."""
        return self._reads.get_commit(self.resolve(rev))

    @_settled
    def diff(self, a: Rev, b: Rev = "HEAD") -> Diff:
        """Names added, removed, changed and unchanged from ``a`` to ``b``. Unpickles nothing."""
        return self.store.diff(a, b)

    @_settled
    def history(self, name: str, *, branch: str | None = None) -> list[Version]:
        """The versions of one variable along a branch, newest first. Unpickles nothing."""
        return self.store.history(name, branch=branch)

    @_settled
    def at(self, rev: Rev = "HEAD") -> Snapshot:
        """A lazy, read-only mapping of a snapshot: a name is unpickled when read."""
        return Snapshot(self, self.show(rev))

    # -- restoring -------------------------------------------------------------

    @_settled
    def checkout(
        self,
        rev: Rev = "HEAD",
        *,
        only: Iterable[str] | None = None,
        namespace: MutableMapping[str, Any] | None = None,
        merge: bool = False,
        progress: Progress | None = None,
        keep: Collection[str] = (),
    ) -> CheckoutReport:
        """Restore a snapshot into a namespace (default: the caller's globals).

        A full checkout makes the namespace equal the snapshot: names it does
        not hold are removed, except default-excluded names (``_``-prefixed,
        IPython's own) and names the snapshot skipped, which stay as they are.
        ``merge=True`` keeps the other names. ``only`` restores just those
        names and touches nothing else. A name that cannot be restored is
        reported in ``failed`` and keeps its current value; the others restore.

        Checking out a branch by name makes it the current branch.
        ``progress(done_bytes, total_bytes)`` is called as values are restored.
        ``keep`` names values the caller knows to be the snapshot's already
        (the IPython extension tracks what each cell could have changed): they
        stay in memory, are not read, and restored values refer to them.

        Raises:
            NameNotInSnapshot: an ``only`` name is not in the snapshot.
        """
        ns = namespace if namespace is not None else sys._getframe(1).f_globals
        commit = self.show(rev)
        report = CheckoutReport(commit)
        in_snapshot = {e.name: e for e in commit.entries}
        if only is not None:
            wanted = [only] if isinstance(only, str) else list(dict.fromkeys(only))
            missing = [n for n in wanted if n not in in_snapshot]
            if missing:
                raise NameNotInSnapshot(missing, commit.id, sorted(in_snapshot))
            prefer = set(ns) - set(wanted)
        else:
            wanted = sorted(in_snapshot)
            prefer = set()
        kept = [n for n in wanted if n in keep and n in ns]
        if kept:
            wanted = [n for n in wanted if n not in set(kept)]
            prefer |= set(kept)
            report.kept = sorted(kept)

        loader = Loader(self._reads.chunks, commit, ns, prefer_namespace=prefer)
        # Smallest first, in the order they are read ahead: the values slow to
        # unpickle (many objects, imports) tend to be small, and the big
        # buffers are read meanwhile (bench_large's workspace: the 128 MB
        # array was read in 0.19 s while the DataFrame unpickled in 0.41 s).
        wanted.sort(key=lambda n: in_snapshot[n].size)
        loader.prefetch(wanted)
        try:
            restored = self._restore(loader, wanted, in_snapshot, report, progress)
        finally:
            loader.close()
        report.skipped.sort(key=lambda s: s.name)
        report.failed.sort(key=lambda f: f.name)
        report.warnings[:0] = version_warnings(commit)  # after: it checks dill only if used

        if only is None and not merge:
            hidden = shell_names(ns)
            extra = [n for n in ns if isinstance(n, str) and n not in in_snapshot]
            for name in extra:
                if not excluded_by_default(name, hidden):
                    del ns[name]
                    report.removed.append(name)
        ns.update(restored)
        report.restored = sorted(restored)
        if only is None and isinstance(rev, str) and rev in {b.name for b in self.branches()}:
            self.store.set_head(rev)
        return report

    def _restore(
        self,
        loader: Loader,
        wanted: list[str],
        in_snapshot: dict[str, Entry],
        report: CheckoutReport,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Load each wanted name; a name that fails is reported and the others go on."""
        restored: dict[str, Any] = {}
        sizes = {e.object_id: e.size for n in wanted if (e := in_snapshot[n]).object_id}
        total, done, counted = sum(sizes.values()), 0, set()
        for name in wanted:
            entry = in_snapshot[name]
            if entry.kind == "skipped":
                report.skipped.append(Skipped(name, entry.type_name, entry.reason or ""))
                continue
            try:
                restored[name] = loader.load(name)
            except RestoreError as exc:
                report.failed.append(Failure(name, exc.reason))
            except Exception as exc:  # CorruptChunk and anything a value's __setstate__ raises
                report.failed.append(Failure(name, f"{type(exc).__name__}: {exc}"))
            if entry.object_id and entry.object_id not in counted:
                counted.add(entry.object_id)
                done += sizes[entry.object_id]
            if progress is not None:
                progress(done, total)
            self._note_module_version(entry, report)
        return restored

    @staticmethod
    def _note_module_version(entry: Entry, report: CheckoutReport) -> None:
        if entry.kind != "module" or not entry.version or not entry.module:
            return
        module = sys.modules.get(entry.module)
        now = getattr(module, "__version__", None)
        if now is not None and str(now) != entry.version:
            report.warnings.append(
                f"{entry.name}: module {entry.module} was {entry.version} at commit, now {now}"
            )


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


def _retrying(prepare: Callable[[], PreparedCommit | None]) -> Commit | None:
    """Prepare and write a commit, again if gc took its objects in between."""
    from stashdb.store import ObjectsCollected

    for _ in range(_COMMIT_ATTEMPTS):
        try:
            with _file_size_limit_as_error():
                prepared = prepare()
                return prepared.write() if prepared is not None else None
        except ObjectsCollected:
            continue  # gc ran between our writes and our commit: store them again
    raise StashError(
        f"could not commit: gc kept deleting this commit's objects ({_COMMIT_ATTEMPTS} tries)"
    )


class PreparedCommit:
    """A commit whose values are pickled and hashed (and large chunks stored), not yet written.

    ``entries`` is its manifest already, so the next snapshot can be prepared
    against it before this one is written.
    """

    def __init__(
        self,
        repo: Repo,
        branch: str,
        message: str,
        rows: list[dict[str, Any]],
        entries: tuple[Entry, ...],
        metadata: dict[str, Any],
        writer: ObjectWriter,
        packages: dict[str, str],
        base: Commit | PreparedCommit | None,
    ) -> None:
        self.repo, self.branch, self.message = repo, branch, message
        self._rows, self._metadata, self._writer = rows, metadata, writer
        self.entries, self.packages, self.base = entries, packages, base
        self.skipped = skipped_of(entries)
        self.written: Commit | None = None

    def detach(self) -> None:
        """Copy the bytes still pending, so the values may change before `write` runs."""
        self._writer.detach()

    def write(self) -> Commit:
        """Write the commit (its last objects in the same transaction) and move its branch.

        Raises:
            ObjectsCollected: gc took objects it needs; prepare it again.
        """
        base = self.base.written if isinstance(self.base, PreparedCommit) else self.base
        commit_id = self.repo.store.write_commit(
            branch=self.branch,
            message=self.message,
            entries=self._rows,
            metadata=self._metadata,
            objects=self._writer,  # its last objects go in the commit's own transaction
            base=base,
        )
        self.written = self.repo._reads.get_commit(commit_id)
        return self.written


def _same_manifest(ours: Iterable[Entry], theirs: Iterable[Entry]) -> bool:
    """Whether two manifests name exactly the same stored objects (and skips)."""
    return {e.name: e.stored_as for e in ours} == {e.name: e.stored_as for e in theirs}


class _SnapshotGlobals(dict[str, Any]):
    """Globals for functions read through a Snapshot: other names load on first use."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(__builtins__=__builtins__, __name__=snapshot.commit.workspace)
        self._snapshot = snapshot

    def __missing__(self, name: str) -> Any:
        if name in self._snapshot:
            value = self._snapshot[name]
            self[name] = value
            return value
        raise KeyError(name)


class Snapshot(Mapping[str, Any]):
    """A read-only view of one commit; reading a name unpickles that name only.

    ``entries`` and ``commit`` give the metadata without unpickling anything.
    Skipped names are not keys; they are listed in ``commit.skipped``.
    """

    def __init__(self, repo: Repo, commit: Commit) -> None:
        self.commit = commit
        self.entries = {e.name: e for e in commit.entries}
        self._names = [e.name for e in commit.entries if e.kind != "skipped"]
        self._globals = _SnapshotGlobals(self)
        self._loader = Loader(repo._reads.chunks, commit, self._globals)

    def __getitem__(self, name: str) -> Any:
        entry = self.entries.get(name)
        if entry is None or entry.kind == "skipped":
            raise KeyError(name)
        return self._loader.load(name)

    def __contains__(self, name: object) -> bool:
        entry = self.entries.get(name) if isinstance(name, str) else None
        return entry is not None and entry.kind != "skipped"

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<stashdb.Snapshot {self.commit.short_id} {self._names!r}>"
