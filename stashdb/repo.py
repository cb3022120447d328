"""Repo: the operations of stashdb on one store, as methods.

A Repo is built from a `Store` (commits, refs, chunks) and the workspace layer
(capturing and restoring namespaces). The module-level functions in
`stashdb.api` are thin wrappers over these methods.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from sqlalchemy import Engine

from stashdb import maintenance
from stashdb.db.engine import open_engine, safe_url
from stashdb.errors import NameNotInSnapshot, RestoreError, StashError
from stashdb.maintenance import GcReport, PruneReport, VerifyReport
from stashdb.model import CheckoutReport, Commit, Diff, Entry, Failure, Rev, Skipped, Version
from stashdb.refs import Ref
from stashdb.store import ObjectsCollected, Store
from stashdb.workspace import (
    Loader,
    Progress,
    capture,
    environment,
    excluded_by_default,
    packages_json,
    select_names,
    shell_names,
    version_warnings,
)

__all__ = ["Repo", "Snapshot"]

#: Tries of a commit whose objects a concurrent gc deleted before it landed.
_COMMIT_ATTEMPTS = 5


class Repo:
    """A stashdb store, opened.

    Use `stashdb.init` or `stashdb.open` rather than the constructor.
    """

    def __init__(self, url: str, engine: Engine, location: str | None = None) -> None:
        self.url = url
        self.location = location or safe_url(url)
        self.store = Store(engine)
        #: Compress chunks with zstd where a sample says it pays. False stores
        #: every chunk raw; ids and values are the same either way.
        self.compress = True

    @classmethod
    def open(cls, url: str, *, create: bool = False, location: str | None = None) -> Repo:
        """Open (or with ``create``, create) the store at a SQLAlchemy URL."""
        return cls(url, open_engine(url, create=create), location)

    def close(self) -> None:
        self.store.engine.dispose()

    def __repr__(self) -> str:
        return f"<stashdb.Repo {self.location}>"

    def __reduce__(self) -> Any:
        # A Repo in a committed namespace comes back as the same store, reopened.
        return (Repo.open, (self.url,))

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
        ns = namespace if namespace is not None else sys._getframe(1).f_globals
        message = "" if message is None else str(message)
        names = select_names(ns, only, exclude)
        for _ in range(_COMMIT_ATTEMPTS):
            try:
                with _file_size_limit_as_error():
                    return self._commit_once(ns, names, message, branch, progress)
            except ObjectsCollected:
                continue  # gc ran between our writes and our commit: store them again
        raise StashError(
            f"could not commit: gc kept deleting this commit's objects ({_COMMIT_ATTEMPTS} tries)"
        )

    def _commit_once(
        self,
        ns: Mapping[str, Any],
        names: list[str],
        message: str,
        branch: str | None,
        progress: Progress | None,
    ) -> Commit:
        writer = self.store.chunks.writer(compress=self.compress)
        captured = capture(ns, names, writer, self.store.value_hashes, progress)
        writer.flush()
        metadata = environment(str(ns.get("__name__", "__main__")))
        metadata.update(
            packages=packages_json(captured.packages),
            stored=sum(e["status"] == "stored" for e in captured.entries),
            reused=sum(e["status"] == "reused" for e in captured.entries),
            skipped=sum(e["status"] == "skipped" for e in captured.entries),
            chunks_written=captured.chunks_written,
            bytes_written=captured.bytes_written,
        )
        commit_id = self.store.write_commit(
            branch=branch or self.store.head(),
            message=message,
            entries=captured.entries,
            metadata=metadata,
        )
        return self.store.get_commit(commit_id)

    def tag(self, name: str, rev: Rev = "HEAD", *, message: str | None = None) -> Ref:
        """Name a commit for good. Raises `RefExists` if the name is taken."""
        return self.store.create_ref("tag", name, rev, message)

    def branch(self, name: str, rev: Rev = "HEAD") -> Ref:
        """Start a branch at ``rev``. Raises `RefExists` if the name is taken."""
        return self.store.create_ref("branch", name, rev)

    def delete_tag(self, name: str) -> Ref:
        return self.store.delete_ref("tag", name)

    def delete_branch(self, name: str) -> Ref:
        return self.store.delete_ref("branch", name)

    # -- upkeep ----------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Walk refs → commits → manifests → objects → chunks, re-hashing every chunk.

        Returns a report whose ``ok`` is true only when nothing reachable is
        missing or damaged; each problem names the commits and variables it
        breaks. Unpickles nothing.
        """
        return maintenance.verify(self.store)

    def gc(self, *, grace: float = maintenance.GRACE_SECONDS) -> GcReport:
        """Delete chunks and objects no commit refers to; safe while others commit.

        Objects written in the last ``grace`` seconds (default: an hour) are
        spared: they may belong to a commit still in flight.
        """
        return maintenance.gc(self.store, grace=grace)

    def prune(
        self,
        branch: str | None = None,
        *,
        keep_last: int | None = None,
        keep_days: float | None = None,
        grace: float = maintenance.GRACE_SECONDS,
    ) -> PruneReport:
        """Drop old commits of a branch (default: current), keeping tags and heads; then gc."""
        return maintenance.prune(
            self.store, branch or self.head, keep_last=keep_last, keep_days=keep_days,
            grace=grace,
        )

    # -- reading ---------------------------------------------------------------

    def resolve(self, rev: Rev = "HEAD") -> str:
        """The full commit id a rev names (id, short id, tag, branch, HEAD, REV~N)."""
        return self.store.resolve(rev)

    @property
    def head(self) -> str:
        """The current branch."""
        return self.store.head()

    def branches(self) -> list[Ref]:
        return self.store.list_refs("branch")

    def tags(self) -> list[Ref]:
        return self.store.list_refs("tag")

    def log(
        self, *, branch: str | None = None, limit: int | None = None, all: bool = False
    ) -> list[Commit]:
        """Commits of a branch (default: the current one), newest first; ``all``: every ref."""
        return self.store.log(branch=branch, limit=limit, all=all)

    def show(self, rev: Rev = "HEAD") -> Commit:
        """One commit with its entries (type, sizes, preview, status). Unpickles nothing."""
        return self.store.get_commit(self.resolve(rev))

    def diff(self, a: Rev, b: Rev = "HEAD") -> Diff:
        """Names added, removed, changed and unchanged from ``a`` to ``b``. Unpickles nothing."""
        return self.store.diff(a, b)

    def history(self, name: str, *, branch: str | None = None) -> list[Version]:
        """The versions of one variable along a branch, newest first. Unpickles nothing."""
        return self.store.history(name, branch=branch)

    def at(self, rev: Rev = "HEAD") -> Snapshot:
        """A lazy, read-only mapping of a snapshot: a name is unpickled when read."""
        return Snapshot(self, self.show(rev))

    # -- restoring -------------------------------------------------------------

    def checkout(
        self,
        rev: Rev = "HEAD",
        *,
        only: Iterable[str] | None = None,
        namespace: MutableMapping[str, Any] | None = None,
        merge: bool = False,
        progress: Progress | None = None,
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

        Raises:
            NameNotInSnapshot: an ``only`` name is not in the snapshot.
        """
        ns = namespace if namespace is not None else sys._getframe(1).f_globals
        commit = self.show(rev)
        report = CheckoutReport(commit, warnings=version_warnings(commit))
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

        loader = Loader(self.store.chunks, commit, ns, prefer_namespace=prefer)
        loader.prefetch(wanted)
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
        self._loader = Loader(repo.store.chunks, commit, self._globals)

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
