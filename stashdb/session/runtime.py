"""A session's state where its code runs: the namespace, the files, and their commits.

The same `Runtime` serves a worker process (isolated sessions) and the host
itself (``isolated=False``). After each execution it learns from the
`CellTracker` which names the code could have changed, as the IPython
extension does; a successful execution then commits just those (and the files
whose stat changed) with `Repo.commit_changes`, synchronously: the commit is
durable when the execution returns. Going to another state (``checkout``,
``undo``, ``restore_state``, a recovery) restores it here, keeping in memory
what did not change (`KnownState`), then makes the state the branch's tip.
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from stashdb.model import Commit, Skipped
from stashdb.repo import KnownState, Repo
from stashdb.session.files import StateView, Unstorable, Workdir, is_file_entry
from stashdb.session.interpreter import AWAITABLE, Interpreter, awaitable
from stashdb.session.output import Captured
from stashdb.session.results import ExecutionResult
from stashdb.storage.bundle import BundleObjects, read_bundle
from stashdb.workspace.loader import ObjectSource
from stashdb.workspace.snapshot import Snapshot
from stashdb.workspace.tracker import CellTracker

__all__ = ["Runtime", "message_for"]

#: Longest first line of code a commit message quotes.
_MESSAGE_CODE = 100


class Output(Protocol):
    """Where an execution's output is caught (`stashdb.session.output`)."""

    def capture(self) -> contextlib.AbstractContextManager[Captured]:
        """Catch what is printed inside the block."""
        ...


def message_for(count: int, code: str) -> str:
    """The commit message of execution ``count``: its number and first line of code."""
    first = next((line.strip() for line in code.splitlines() if line.strip()), "")
    if len(first) > _MESSAGE_CODE:
        first = first[: _MESSAGE_CODE - 1] + "…"
    return f"[{count}] {first}".rstrip()


@contextlib.contextmanager
def _no_guard() -> Iterator[None]:
    yield


def _is_state_name(name: str) -> bool:
    """A name that is part of the state: anything but the namespace's own ``__dunders__``."""
    return not (name.startswith("__") and name.endswith("__"))


class _WithFiles(Mapping[str, Any]):
    """A namespace and the names of files carried unread from the last commit."""

    def __init__(self, namespace: Mapping[str, Any], files: list[str]) -> None:
        self._namespace, self._files = namespace, set(files)

    def __getitem__(self, name: str) -> Any:
        if name in self._files:  # carried, never read; were it read, it would be a skip
            return Unstorable("the file is not on this machine's disk")
        return self._namespace[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._namespace
        yield from self._files

    def __len__(self) -> int:
        return len(self._namespace) + len(self._files)


class Runtime:
    """One session's namespace and files, executed in and committed on its branch.

    Args:
        repo: the store (opened in this process).
        branch: the session's branch.
        namespace: where the code runs (a worker's ``__main__.__dict__``).
        callbacks: ``{name: callable}`` the code calls; put among its builtins.
        workdir: the working directory whose files are part of the state.
        output: where output is caught.
        guard: a context manager around each run of the code (a worker's
            memory limit and interrupt handling).
    """

    def __init__(
        self,
        repo: Repo,
        branch: str,
        namespace: dict[str, Any],
        *,
        callbacks: Mapping[str, Callable[..., Any]],
        workdir: Workdir | None,
        output: Output,
        guard: Callable[[], contextlib.AbstractContextManager[None]] = _no_guard,
    ) -> None:
        self.repo, self.branch, self.namespace = repo, branch, namespace
        self.workdir, self.output, self.guard = workdir, output, guard
        namespace["__builtins__"] = {**builtins.__dict__, **callbacks, AWAITABLE: awaitable}
        self.interpreter = Interpreter(namespace, list(callbacks))
        self.tracker = CellTracker(namespace)
        #: The commit the state equals, but for the ``dirty`` names.
        self.base: Commit | None = None
        self.dirty: set[str] = set()
        self.everything_dirty = True
        self._reported: dict[str, int] = {}  # name -> id of the unstorable value reported

    # -- running code -------------------------------------------------------------------

    def execute(
        self,
        code: str,
        count: int,
        *,
        autocommit: bool = True,
        ran: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """Run ``code`` as execution ``count``; commit the state after it if it succeeded.

        ``ran`` is called when the code has ended, before the commit (a
        worker tells its host: the execution's timeout stops there).
        """
        self.tracker.before()
        started = time.perf_counter()
        with self.output.capture() as captured, self.guard():
            outcome = self.interpreter.run(code, f"<execution {count}>")
        duration = time.perf_counter() - started
        if ran is not None:
            ran()
        self._learn(code)
        commit_id: str | None = None
        warnings: list[str] = []
        if outcome.error is None and autocommit:
            commit_id, warnings = self.commit(message_for(count, code))
        return ExecutionResult(
            ok=outcome.error is None, stdout=captured.stdout, stderr=captured.stderr,
            value=outcome.value, error=outcome.error, duration_s=duration,
            execution_count=count, commit=commit_id, warnings=warnings,
        )

    def _learn(self, code: str) -> None:
        """Note which names the code that just ran could have changed."""
        changed = self.tracker.changed(code)
        if changed is None:
            self.everything_dirty = True
        else:
            self.dirty |= changed

    # -- committing ---------------------------------------------------------------------

    def commit(self, message: str) -> tuple[str, list[str]]:
        """Commit what changed since the last commit; returns the state's commit and warnings.

        Nothing changed: no commit, and the id is the one the state equals.
        """
        base = None if self.everything_dirty else self.base
        changed = set(self.dirty)
        if base is None and self.base is not None:
            base = self.base  # every name is captured again, against the last commit
            changed = set(self.namespace)
        view: Mapping[str, Any] = self.namespace
        scanned = None
        if self.workdir is not None:
            scanned = self.workdir.scan()
            changed |= self.workdir.changes(scanned)
            view = StateView(self.namespace, self.workdir, scanned)
        elif self.base is not None:
            # No working directory here (resumed elsewhere): the state's files
            # are carried as they are, never dropped for not being on this disk.
            view = _WithFiles(self.namespace, [
                e.name for e in self.base.entries if is_file_entry(e.name)
            ])
        made = self.repo.commit_changes(
            base, changed, message, namespace=view, branch=self.branch
        ) if base is not None else self.repo.commit(message, namespace=view, branch=self.branch)
        if made is not None:
            self.base = made
        self.dirty, self.everything_dirty = set(), False
        if self.workdir is not None and scanned is not None:
            self.workdir.snapshotted(scanned)
        assert self.base is not None
        return self.base.id, self._unstorable(self.base.skipped)

    def _unstorable(self, skipped: list[Skipped]) -> list[str]:
        """Warnings for the values that could not be stored, each value once."""
        warnings = []
        for item in skipped:
            value_id = id(self.namespace.get(item.name))
            if self._reported.get(item.name) != value_id:
                self._reported[item.name] = value_id
                where = "file" if is_file_entry(item.name) else "value"
                warnings.append(
                    f"not stored: {where} {item.name} ({item.type_name}): {item.reason}; it stays "
                    "in this worker's memory but is lost if the worker restarts"
                )
        return warnings

    # -- going to a state ---------------------------------------------------------------

    def restore_bundle(
        self, data: bytes | memoryview, message: str, trust: bool = False
    ) -> tuple[str, list[str]]:
        """Add a state's bundle to the store as the branch's tip, and make it the state.

        The values are read from the bundle's bytes, already in memory, not
        back from the store.

        Raises:
            BadBundle: the bytes are not a sound state: nothing changed.
            UntrustedSnapshot, TamperedData: its commit is not signed by a key
                trusted here (unless ``trust``), or not what was signed.
        """
        bundle = read_bundle(data)
        commit = self.repo.add_bundle(bundle, branch=self.branch, message=message, trust=trust)
        return self.restore(commit.id, source=BundleObjects(bundle))

    def adopt(self, commit_id: str) -> None:
        """Take commit ``commit_id`` as the state without restoring it (a new session's start).

        Its entries are carried into the next commit, which this user signs: so it
        must be signed by a trusted key first (`UntrustedSnapshot`, `TamperedData`).
        """
        self.base = self.repo.show(commit_id)
        self.repo.check_trusted(self.base)
        self.dirty, self.everything_dirty = set(), False
        self.tracker.before()

    def restore(
        self,
        commit_id: str,
        *,
        message: str | None = None,
        source: ObjectSource | None = None,
        exact_files: bool = False,
    ) -> tuple[str, list[str]]:
        """Make the state that of commit ``commit_id``; with ``message``, commit it as the tip.

        The session owns its namespace: names the target lacks are removed,
        but for the names it could not store, which keep their live values.
        ``source`` is where the values are read (default: the store);
        ``exact_files``: the working directory is made to hold the target's
        files and no other (after a crash: the dead code's writes go).
        Returns the commit the state now equals, and the warnings.
        """
        target = self.repo.show(commit_id)
        known = None
        if self.base is not None and not self.everything_dirty:
            known = KnownState.since(self.base, self.dirty, self.namespace)
        keep = {e.name for e in target.entries}
        for name in [n for n in self.namespace if _is_state_name(n) and n not in keep]:
            del self.namespace[name]
        report = self.repo.checkout(
            target, namespace=self.namespace, known=known, leave=is_file_entry, source=source
        )
        warnings = [*report.warnings]
        warnings += [f"{f.name} was not restored: {f.reason}" for f in report.failed]
        lost = [s for s in target.skipped if s.name not in self.namespace
                and not is_file_entry(s.name)]
        if lost:
            warnings.append(
                "gone (they could not be stored, so no state holds them): "
                + ", ".join(f"{s.name} ({s.type_name})" for s in lost)
            )
        files = [e for e in target.entries if is_file_entry(e.name)]
        if self.workdir is not None:
            # Checked as any value is: a file's bytes are a pickle too.
            values = (Snapshot(source, target, verify=True) if source is not None
                      else self.repo.at(target))
            warnings += self.workdir.restore(target, self.base, values, exact=exact_files)
        elif files:
            warnings.append(
                f"the state holds {len(files)} files, and this session has no working "
                "directory: they stay in the state, written nowhere (give workdir= to have "
                "them on disk)"
            )
        self.base = target
        self.dirty = {f.name for f in report.failed}
        self.everything_dirty = False
        self._reported = {}
        self.tracker.before()
        if message is None:
            return target.id, warnings
        tip = self._tip()
        if tip != target.id:
            made = self.repo.commit_manifest(
                target.entries, message, branch=self.branch, like=target
            )
            self.base = made
        if self.dirty:  # what failed to restore is the state too: commit it as it is
            commit_id, more = self.commit(message)
            return commit_id, warnings + more
        return self.base.id, warnings

    def clear(self, message: str) -> str:
        """Remove every name (the interpreter, its modules, stay loaded); commit that state."""
        for name in [n for n in self.namespace if _is_state_name(n)]:
            del self.namespace[name]
        self.everything_dirty = True
        self._reported = {}
        commit_id, _ = self.commit(message)
        self.tracker.before()
        return commit_id

    def _tip(self) -> str | None:
        ref = self.repo.storage.reader.find_ref(self.branch)
        return ref.commit_id if ref is not None else None

    def close(self) -> None:
        """Release the event loop and the store's connections."""
        self.interpreter.close()
        self.repo.close()
