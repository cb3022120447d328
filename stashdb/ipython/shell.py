"""The state stashdb keeps for one IPython shell: its store, its branch, and what changed since.

After every cell the session learns from `CellTracker` which names the cell
could have changed, and (with auto-snapshot on) prepares a commit of just
those (`Repo.prepare_changes`) and hands it to the Repo's writer thread
(`Repo.submit`), so the cell does not wait for the disk. Checkout and undo go
through `Repo.checkout` with what the session knows (`KnownState`): values
that did not change stay in memory. Nothing here imports IPython: the shell is
used through ``user_ns``, ``transform_cell`` and its hooks' arguments only.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import types
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stashdb
from stashdb.errors import NothingToUndo, RevisionNotFound, StashError, UnsavedValues
from stashdb.model import CheckoutReport, Commit, Skipped
from stashdb.render import printable
from stashdb.repo import KnownState, PreparedCommit
from stashdb.workspace.names import excluded_by_default, shell_names
from stashdb.workspace.tracker import CellTracker

__all__ = ["ShellSession", "branch_for_session"]


def branch_for_session(namespace: Mapping[str, Any]) -> str:
    """A branch named after the notebook (Jupyter tells its path), or the session."""
    path = os.environ.get("JPY_SESSION_NAME") or namespace.get("__session__")
    if isinstance(path, str) and path:
        stem = Path(path).stem
        name = "nb/" + re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.")
        if name != "nb/":
            return name
    return f"ipython/{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


@dataclass
class _State:
    """A snapshot the namespace went through, for undo: written, or being written."""

    label: str  # "cell [N]", for undo's message
    future: Future[Commit] | None = None
    written: Commit | None = None

    @property
    def commit(self) -> Commit:
        """The commit (waiting for it if it is still being written)."""
        if self.written is None:
            assert self.future is not None
            self.written = self.future.result()
        return self.written

    @property
    def error(self) -> BaseException | None:
        """Why it was not written, once its write has ended."""
        if self.future is None or not self.future.done():
            return None
        return self.future.exception()


class ShellSession:
    """stashdb's state for one IPython shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.namespace = shell.user_ns
        self.tracker = CellTracker(self.namespace)
        self.auto = False
        self.branch: str | None = None
        self._store: str | None = None  # what the user named (None: STASHDB_URL or found)
        self._url: str | None = None  # the store's URL, once used
        #: The snapshot the namespace equals, but for the names in ``dirty``:
        #: a commit, or a prepared one still being written.
        self.base: Commit | PreparedCommit | None = None
        self.dirty: set[str] = set()
        self.everything_dirty = False
        #: Snapshots the namespace went through in this session, for undo.
        self.states: list[_State] = []
        #: States undone since the last change, for redo (newest last).
        self.undone: list[_State] = []
        self.reported: dict[str, int] = {}  # unstorable name -> id of the value reported

    @property
    def repo(self) -> stashdb.Repo:
        """The store: the one named with ``--store``, else ``STASHDB_URL`` (as for the CLI),
        else the ``.stashdb/`` found from the current directory upwards, else a new one here.

        Always the API's Repo for it, so that ``stashdb.log()`` & co. in a cell
        see the snapshots in flight (also after ``stashdb.close_all()``).
        """
        if self._url is None:
            self.use_store(None)
        return stashdb.open(self._url, create=True)

    def use_store(self, store: str | None) -> None:
        """Snapshot into another store (a directory, a SQLite file or a database URL)."""
        self.flush()
        url = stashdb.open(store, create=True).url
        if url != self._url:  # what the old store held says nothing about this one
            self.base, self.states, self.everything_dirty = None, [], False
        self._store, self._url = store, url

    # -- IPython events ---------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        """Note every name's binding before the cell runs."""
        self.tracker.before()

    def post_run_cell(self, result: Any) -> None:
        """Learn what the cell could have changed; with auto on, snapshot it."""
        code = result.info.raw_cell if result.info is not None else ""
        try:
            code = self.shell.transform_cell(code)
        except Exception:
            self.everything_dirty = True
        changed = self.tracker.changed(code)
        if changed is None:
            self.everything_dirty = True
        else:
            hidden = shell_names(self.namespace)  # get_ipython, In, Out … are never stored
            self.dirty |= {n for n in changed if not excluded_by_default(n, hidden)}
        if not self.auto or not result.success or code.lstrip().startswith(
            "get_ipython().run_line_magic('stash'"
        ):
            return
        number = result.execution_count
        first = (result.info.raw_cell or "").strip()
        message = f"cell [{number}]: {first}" if first else f"cell [{number}]"
        try:
            self.submit(message, label=f"cell [{number}]")
        except StashError as exc:
            print(printable(f"stashdb: auto-snapshot failed: {exc}"), file=sys.stderr)

    # -- snapshots --------------------------------------------------------------

    def snapshot(self, message: str, *, full: bool = False) -> Commit | None:
        """Snapshot what changed since the last snapshot, and wait for it; None if nothing did."""
        state = self.submit(message, full=full)
        self.flush()
        return state.commit if state is not None else None

    def submit(self, message: str, *, full: bool = False, label: str = "") -> _State | None:
        """Snapshot what changed since the last snapshot; None if nothing did.

        Values are pickled and hashed now; the commit is written on the Repo's
        writer thread: the cell does not wait for the disk.
        """
        self._collect_failures()
        base = None if full or self.everything_dirty else self.base
        prepared = self.repo.prepare_changes(
            base, self.dirty, message, namespace=self.namespace, branch=self.branch
        )
        self.dirty = set()
        self.everything_dirty = False
        if prepared is None:
            return None
        state = _State(label or message, future=self.repo.submit(prepared))
        self.base = prepared
        self.states.append(state)
        self.undone = []  # a new change: what was undone cannot be redone
        self._report_unstorable(prepared.skipped)
        return state

    def flush(self) -> None:
        """Wait for the snapshots being written; report any that failed."""
        if self._url is not None:
            self.repo.wait()
        self._collect_failures()

    def _collect_failures(self) -> None:
        failed = [s for s in self.states if s.error is not None]
        if not failed:
            return
        for state in failed:
            print(printable(f"stashdb: a snapshot was not written: {state.error}"),
                  file=sys.stderr)
        self.states = [s for s in self.states if s not in failed]
        # What it held must be captured again: the next snapshot takes everything.
        self.everything_dirty = True
        self.base = None

    def _report_unstorable(self, skipped: Iterable[Skipped]) -> None:
        for item in skipped:
            value_id = id(self.namespace.get(item.name))
            if self.reported.get(item.name) != value_id:
                self.reported[item.name] = value_id
                line = f"stashdb: not stored: {item.name} ({item.type_name}): {item.reason}"
                print(printable(line), file=sys.stderr)

    def changed_names(self) -> list[str] | None:
        """Names changed since the last snapshot (None: anything could have)."""
        if self.everything_dirty:
            return None
        hidden = shell_names(self.namespace)
        return sorted(
            n for n in self.dirty if n in self.namespace and not excluded_by_default(n, hidden)
        )

    # -- going back -------------------------------------------------------------

    def known(self) -> KnownState | None:
        """What the session knows of the namespace: which names still hold the base's values."""
        base = self.base.written if isinstance(self.base, PreparedCommit) else self.base
        if base is None or self.everything_dirty:
            return None
        return KnownState.since(base, self.dirty, self.namespace)

    def checkout(
        self, rev: str, only: list[str] | None = None, merge: bool = False, force: bool = False,
        *, trust: bool = False, safe: bool = False,
    ) -> CheckoutReport:
        """Restore ``rev`` into the shell, keeping in memory what did not change.

        Values no snapshot holds that the checkout would overwrite or remove
        are saved first when auto-snapshot is on (undo brings them back);
        otherwise the checkout is refused, unless ``force``.

        Raises:
            UnsavedValues: there are such values, auto-snapshot is off, no ``force``.
        """
        self.flush()
        # A Commit, not the rev: restoring the shell never moves the store's HEAD
        # (on a team store, other people's commits follow HEAD).
        target = self.repo.show(rev)
        unsaved = [] if force else self.unsaved_for(target, only, merge)
        if unsaved and self.auto:
            self.snapshot(f"before checkout {rev}")  # the failed cell's changes, say
        elif unsaved:
            raise UnsavedValues(unsaved)
        report = self.repo.checkout(
            target, namespace=self.namespace, only=only, merge=merge, known=self.known(),
            trust=trust, safe=safe,
        )
        touched = set(report.restored) | set(report.removed)
        self.undone = []
        if only is None and not merge:
            self.base = report.commit
            self.dirty = {f.name for f in report.failed} | {s.name for s in report.skipped}
            self.everything_dirty = False
            self.states.append(_State(f"checkout {report.commit.short_id}", written=report.commit))
        else:
            self.dirty |= touched
        self.tracker.before()  # the magic's own changes are accounted for
        if self.auto and (only is not None or merge):
            self.snapshot(f"checkout {rev}" + (f" --only {','.join(only)}" if only else ""))
        return report

    def unsaved_for(self, target: Commit, only: list[str] | None, merge: bool) -> list[str]:
        """Names whose current value no snapshot holds that checking ``target`` out would lose.

        Lost: overwritten by the target's value, or (an exact checkout) removed
        because the session's last snapshot had the name and the target does
        not. A name is saved when it is unchanged since the session's last
        snapshot (it holds that snapshot's value).
        """
        hidden = shell_names(self.namespace)
        names = {
            n for n in self.namespace
            if isinstance(n, str) and not excluded_by_default(n, hidden)
            and not isinstance(self.namespace[n], types.ModuleType)
        }
        restorable = {e.name for e in target.entries if e.kind != "skipped"}
        lost = names & (set(only) if only is not None else restorable)
        known = self.known()
        if only is None and not merge and known is not None:
            lost |= names & ({e.name for e in known.snapshot.entries} - restorable)
        saved = known.unchanged if known is not None else frozenset()
        return sorted(lost - saved)

    def undo(self) -> tuple[str, CheckoutReport]:
        """Restore the state before the last cell that changed something.

        Snapshots that are no longer in the store (pruned by someone else) are
        passed over, and said so; nothing is used up by an undo that fails.

        Raises:
            NothingToUndo: no snapshot of this session to go back to.
        """
        if not self.auto and not self.states:
            raise NothingToUndo("undo needs snapshots of this session: run %stash auto on first")
        self.flush()
        gone = self._forget_pruned()
        note = f" (passed over {gone} snapshots pruned from the store)" if gone else ""
        if self.dirty or self.everything_dirty:  # a cell ran since (it failed, say)
            if self.base is None or not self.states:
                raise NothingToUndo("nothing to undo to: no snapshot of this session yet")
            report = self._go_back_to(self.states[-1].commit)
            return "the changes since the last snapshot" + note, report
        if len(self.states) < 2:
            raise NothingToUndo("nothing to undo: this is the first snapshot of this session")
        report = self._go_back_to(self.states[-2].commit)
        undone = self.states.pop()
        self.undone.append(undone)
        return undone.label + note, report

    def redo(self) -> tuple[str, CheckoutReport]:
        """Go forward again to the state the last undo left (until a cell changes something).

        Raises:
            NothingToUndo: no undo to take back.
        """
        self.flush()
        if not self.undone or self.dirty or self.everything_dirty:
            raise NothingToUndo("nothing to redo: no undo since the last change")
        state = self.undone[-1]
        report = self._go_back_to(state.commit)
        self.states.append(self.undone.pop())
        return state.label, report

    def _go_back_to(self, target: Commit) -> CheckoutReport:
        """Check ``target`` out; it already is the last state of the session's list."""
        undone = self.undone
        report = self.checkout(target.id, force=True)  # going back is what undo asks for
        self.states.pop()  # checkout added the target, which already is in the list
        self.undone = undone  # checkout counts as a change; going back and forth does not
        return report

    def _forget_pruned(self) -> int:
        """Drop the states whose commits are gone from the store; how many."""
        reader = self.repo.storage.reader
        kept = []
        for state in self.states:
            try:
                reader.get_commit(state.commit.id, entries=False)
            except RevisionNotFound:
                continue
            kept.append(state)
        gone = len(self.states) - len(kept)
        self.states = kept
        return gone
