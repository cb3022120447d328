"""The state stashdb keeps for one IPython shell: its store, its branch, and what changed since.

After every cell the session learns from `CellTracker` which names the cell
could have changed and, with auto-snapshot on, snapshots just those without
making the cell wait: on Linux a forked child pickles, hashes and writes them
from a copy-on-write image of the shell (`Repo.fork_changes`, `stashdb.forked`),
so the cell pays for the fork only. A cell that ends while one snapshot is
being written and another waits replaces the waiting one (which has not
begun): that snapshot then covers both cells, and memory stays bounded at two
images. Elsewhere the commit is pickled on the cell's thread and written on
the Repo's writer thread (`Repo.prepare_changes`, `Repo.submit`). Checkout and undo go
through `Repo.checkout` with what the session knows (`KnownState`): values
that did not change stay in memory. Nothing here imports IPython: the shell is
used through ``user_ns``, ``transform_cell`` and its hooks' arguments only.
"""

from __future__ import annotations

import datetime
import functools
import os
import re
import sys
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import stashdb
from stashdb.errors import NothingToUndo, RevisionNotFound, StashError, UnsavedValues
from stashdb.forked import ForkedSnapshot, Handoff, Landed, can_fork, threads_allow_fork
from stashdb.model import CheckoutReport, Commit, Skipped, SnapshotCost
from stashdb.render import printable
from stashdb.repo import KnownState, PreparedCommit
from stashdb.workspace.capture import Capture, Prior, priors_after
from stashdb.workspace.estimate import all_immutable_scalars, all_small
from stashdb.workspace.names import excluded_by_default, shell_names
from stashdb.workspace.tracker import CellTracker

__all__ = ["COSTS_KEPT", "ShellSession", "branch_for_session"]

#: How many landed snapshots' costs a session keeps (`ShellSession.recent_costs`).
COSTS_KEPT = 1000


def branch_for_session(namespace: Mapping[str, Any]) -> str:
    """A branch named after the notebook (Jupyter tells its path), or the session."""
    path = os.environ.get("JPY_SESSION_NAME") or namespace.get("__session__")
    if isinstance(path, str) and path:
        stem = Path(path).stem
        name = "nb/" + re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.")
        if name != "nb/":
            return name
    return f"ipython/{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class _State:
    """A snapshot the namespace went through, for undo: written, or being written."""

    label: str  # "cell [N]", for undo's message
    future: Future[Commit] | Future[Commit | None] | None = None
    written: Commit | None = None
    forked: ForkedSnapshot | None = None  # made by a child that may not have begun
    changed: frozenset[str] = frozenset()  # what it captures (a forked snapshot)
    merged: int = 0  # snapshots it took the place of
    first: str = ""  # the label of the first of those
    in_cell: float = 0.0  # seconds the cell waited for it

    @property
    def commit(self) -> Commit:
        """The commit (waiting for it if it is still being written)."""
        if self.written is None:
            assert self.future is not None
            made = self.future.result()
            assert made is not None, "a snapshot that made no commit is not a state"
            self.written = made
        return self.written

    @property
    def made_nothing(self) -> bool:
        """Whether it landed without a commit (nothing had changed, or it was replaced)."""
        return (self.written is None and self.future is not None and self.future.done()
                and self.future.exception() is None and self.future.result() is None)

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
        #: "fork": a child process snapshots each cell; "thread": the cell pickles,
        #: the writer thread writes (where fork is not safe, see `stashdb.forked`).
        self.background = "fork" if can_fork() else "thread"
        # The forked snapshots' chain, shared with the writer thread:
        self._lock = threading.Lock()
        self._tip: Commit | None = None  # the last snapshot that landed
        self._priors: dict[str, Prior] = {}  # its fingerprints
        self._owed: set[str] = set()  # names of snapshots that were lost
        self._waiting: _State | None = None  # the last forked, which may not have begun
        self._last_forked = False  # the last snapshot was forked: ``base`` is not known yet
        self._before_cell = 0.0  # seconds pre_run_cell took
        #: Seconds the last cell spent in stashdb (both hooks, snapshot or not).
        self.last_in_cell = 0.0
        #: What the last snapshots that landed cost, oldest first (``%stash status``).
        self._costs: deque[tuple[_State, SnapshotCost]] = deque(maxlen=COSTS_KEPT)

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
            self._set_tip(None)
        self._store, self._url = store, url

    # -- IPython events ---------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        """Note every name's binding before the cell runs."""
        started = time.perf_counter()
        self.tracker.before()
        self._before_cell = time.perf_counter() - started

    def post_run_cell(self, result: Any) -> None:
        """Learn what the cell could have changed; with auto on, snapshot it."""
        started = time.perf_counter() - self._before_cell
        try:
            self._after_cell(result, started)
        finally:
            self.last_in_cell = time.perf_counter() - started

    def _after_cell(self, result: Any, started: float) -> None:
        code = result.info.raw_cell if result.info is not None else ""
        try:
            code = self.shell.transform_cell(code)
        except Exception:
            self.everything_dirty = True
        changed = self.tracker.changed(code)
        if changed is None:
            self.everything_dirty = True
        else:
            self.dirty |= self._storable(changed)  # get_ipython, In, Out … are never stored
        if not self.auto or not result.success or code.lstrip().startswith(
            "get_ipython().run_line_magic('stash'"
        ):
            return
        number = result.execution_count
        first = (result.info.raw_cell or "").strip()
        message = f"cell [{number}]: {first}" if first else f"cell [{number}]"
        try:
            state = self.submit(message, label=f"cell [{number}]", since=started)
        except StashError as exc:
            print(printable(f"stashdb: auto-snapshot failed: {exc}"), file=sys.stderr)
            return
        if state is not None:
            state.in_cell = time.perf_counter() - started

    # -- snapshots --------------------------------------------------------------

    def snapshot(self, message: str, *, full: bool = False) -> Commit | None:
        """Snapshot what changed since the last snapshot, and wait for it; None if nothing did."""
        state = self.submit(message, full=full)
        self.flush()
        return state.commit if state is not None else None

    def submit(
        self, message: str, *, full: bool = False, label: str = "", since: float | None = None
    ) -> _State | None:
        """Snapshot what changed since the last snapshot; None if nothing did (known now).

        Forked: the child is started now and the state returned; whether it
        made a commit is known when it lands. Threaded: values are pickled and
        hashed now, the commit written on the Repo's writer thread. Either
        way the cell does not wait for the disk.
        """
        self._collect_failures()
        if self.background == "fork":
            if not full and not self.everything_dirty and self._amended(message, label):
                return self._waiting
            if not threads_allow_fork():  # a thread may be in BLAS: this once, in the cell
                self.flush()
            elif full or self.everything_dirty or self._forks_in_flight() or not self._small():
                return self._fork(message, full=full, label=label or message, since=since)
            self._base_from_tip()
        started = time.perf_counter()
        base = None if full or self.everything_dirty else self.base
        seen: list[Capture] = []
        prepared = self.repo.prepare_changes(
            base, self.dirty, message, namespace=self.namespace, branch=self.branch,
            priors=self._priors, observe=lambda captured, writer: seen.append(captured),
        )
        self.dirty = set()
        self.everything_dirty = False
        if prepared is None:
            if self.background == "fork" and seen:  # said by status: proved unchanged, or not
                with self._lock:
                    self._costs.append((_State(label or message), self._thread_cost(
                        seen[-1], started, self.branch or self.repo.head)))
            return None
        future = self.repo.submit(prepared)
        state = _State(label or message, future=future)
        self.base = prepared
        self.states.append(state)
        self.undone = []  # a new change: what was undone cannot be redone
        self._report_unstorable(prepared.skipped)
        if self.background == "fork":  # the next forked snapshot builds on this one
            priors = priors_after(prepared.entries, seen[-1], self._priors)
            cost = self._thread_cost(seen[-1], started, prepared.branch)
            future.add_done_callback(functools.partial(self._written, state, priors, cost))
        return state

    @staticmethod
    def _thread_cost(captured: Capture, started: float, branch: str) -> SnapshotCost:
        proved = len(captured.proved_unchanged)
        return SnapshotCost(
            background="thread", in_cell=0.0, pickling=captured.seconds["pickling"],
            fingerprinting=captured.seconds["fingerprinting"],
            grouping=captured.seconds["grouping"], total=time.perf_counter() - started,
            checked=len(captured.entries), pickled=len(captured.entries) - proved,
            proved_unchanged=proved, branch=branch, at=time.time(),
        )

    def _small(self) -> bool:
        """Whether the names to snapshot are small enough to pickle in the cell (see estimate)."""
        before = {e.name: e for e in self.base.entries} if self.base is not None else {}
        return all_small(((n, self.namespace[n]) for n in self.dirty if n in self.namespace),
                         before)

    def _forks_in_flight(self, besides: _State | None = None) -> bool:
        return any(s is not besides and s.forked is not None and s.future is not None
                   and not s.future.done() for s in self.states)

    def _storable(self, names: Iterable[str]) -> frozenset[str]:
        """``names`` without those a snapshot never holds (`excluded_by_default`)."""
        hidden = shell_names(self.namespace)
        return frozenset(n for n in names if not excluded_by_default(n, hidden))

    @staticmethod
    def _merging(waiting: _State) -> tuple[int, str, str]:
        """A snapshot taking ``waiting``'s place: how many it merges, the first, and its note."""
        merged = waiting.merged + 1
        first = waiting.first or waiting.label
        cells = "cells" if merged > 1 else "cell"
        return merged, first, f" (and {merged} {cells} before, from {first})"

    def _base_from_tip(self) -> None:
        """After forked snapshots: the next builds on the last that landed (none is in flight)."""
        with self._lock:
            if self._last_forked and self._tip is not None:
                self.base = self._tip
            self.dirty |= self._owed
            self._owed = set()
            self._last_forked = False

    def _written(self, state: _State, priors: dict[str, Prior], cost: SnapshotCost,
                 future: Future[Commit]) -> None:
        """A snapshot pickled in the cell was written (on the writer thread)."""
        if future.exception() is not None:
            return  # _collect_failures reports it; the next snapshot captures everything
        with self._lock:
            self._tip, self._priors = future.result(), priors
            self._costs.append((state, replace(cost, commit=self._tip.id, at=time.time())))

    def _fork(self, message: str, *, full: bool, label: str, since: float | None) -> _State:
        """Start a child that snapshots the namespace as it is now (see the module's doc)."""
        everything = full or self.everything_dirty
        changed = self._storable(
            [n for n in self.namespace if isinstance(n, str)] if everything else self.dirty)
        merged, first = 0, ""
        waiting = self._queued()
        if waiting is not None and waiting.forked is not None and waiting.forked.cancel():
            # It had not begun: this snapshot takes its place, and its names.
            changed |= waiting.changed
            merged, first, also = self._merging(waiting)
            message, label = message + also, label + also
            self.states.remove(waiting)
        state = _State(label, changed=changed, merged=merged, first=first)
        repo = self.repo
        state.forked = repo.fork_changes(
            changed, message, namespace=self.namespace, branch=self.branch,
            handoff=self._handoff, landed=functools.partial(self._landed, state), since=since,
        )
        state.future = state.forked.future
        self._waiting = state
        self._last_forked = True
        self.dirty = set()
        self.everything_dirty = False
        self.states.append(state)
        self.undone = []  # a new change: what was undone cannot be redone
        return state

    def _queued(self) -> _State | None:
        """The last forked snapshot, if it waits behind another forked one being written.

        Only such a snapshot may be replaced or amended by a later cell's: one
        with nothing ahead of it, or only a commit pickled in the cell (written
        in milliseconds), starts at once, and its cell keeps its own commit
        (``%stash checkout HEAD~1`` and ``%stash undo`` mean the cell before).
        """
        waiting = self._waiting
        if waiting is None or waiting.future is None or waiting.future.done():
            return None
        return waiting if self._forks_in_flight(besides=waiting) else None

    def _amended(self, message: str, label: str) -> bool:
        """Hand this cell's small changes to the forked snapshot still waiting, if there is one.

        When every changed value is a number or a short string (or was deleted),
        the waiting child puts them into its image and its commit becomes this
        cell's state (`ForkedSnapshot.amend`): no second fork (3 ms to 40 ms).
        """
        waiting = self._queued()
        if waiting is None or waiting.forked is None:
            return False
        names = self._storable(self.dirty)
        present = {n: self.namespace[n] for n in names if n in self.namespace}
        if not all_immutable_scalars(present.values()):
            return False
        merged, first, also = self._merging(waiting)
        if not waiting.forked.amend(message + also, present, names - set(present)):
            return False  # it has begun: this cell needs a snapshot of its own
        waiting.label, waiting.merged, waiting.first = (label or message) + also, merged, first
        waiting.changed |= names
        self.dirty = set()
        self.undone = []
        return True

    def _handoff(self) -> Handoff:
        """What the next forked snapshot builds on (on the writer thread, in order)."""
        with self._lock:
            also, self._owed = frozenset(self._owed), set()
            return Handoff(self._tip, dict(self._priors), also)

    def _landed(
        self, state: _State, given: Handoff, made: Landed | None, error: BaseException | None
    ) -> None:
        """A forked snapshot ended (on the writer thread): the next builds on it."""
        with self._lock:
            if made is None:  # lost: the next snapshot captures what it held
                self._owed |= state.changed | given.also
                return
            if made.commit is not None:
                self._tip = made.commit
                state.written = made.commit
                # Said as soon as it is known (under the cell that made it, as a rule).
                self._report_unstorable(made.commit.skipped)
            self._priors = made.priors
            self._costs.append((state, replace(made.cost, merged=state.merged)))

    @property
    def last_cost(self) -> SnapshotCost | None:
        """What the last snapshot that landed cost (``%stash status``)."""
        recent = self.recent_costs()
        return recent[-1][1] if recent else None

    def recent_costs(self) -> list[tuple[str, SnapshotCost]]:
        """The last snapshots that landed (up to `COSTS_KEPT`), oldest first: (cell, cost)."""
        with self._lock:
            kept = list(self._costs)
        return [(state.label, replace(cost, in_cell=state.in_cell)) for state, cost in kept]

    def _set_tip(self, commit: Commit | None) -> None:
        with self._lock:
            self._tip, self._priors, self._owed = commit, {}, set()

    def flush(self) -> None:
        """Wait for the snapshots being written; report any that failed."""
        if self._url is not None:
            self.repo.wait()
        if self.background == "fork":
            self._base_from_tip()  # lost snapshots: their names are unsaved again
        self._collect_failures()

    def _collect_failures(self) -> None:
        done = [s for s in self.states if s.made_nothing]
        for state in done:
            self.states.remove(state)
        failed = [s for s in self.states if s.error is not None]
        if not failed:
            return
        for state in failed:
            print(printable(f"stashdb: a snapshot was not written: {state.error}"),
                  file=sys.stderr)
        self.states = [s for s in self.states if s not in failed]
        if self.background == "fork":
            return  # the next snapshot captures what they held (``_owed``)
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
        return sorted(self._storable(n for n in self.dirty if n in self.namespace))

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
            self._set_tip(report.commit)
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
        names = {
            n for n in self._storable(n for n in self.namespace if isinstance(n, str))
            if not isinstance(self.namespace[n], types.ModuleType)
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
