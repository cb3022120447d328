"""IPython and Jupyter: the ``%stash`` magic, a snapshot after every cell, and undo.

Load it with ``%load_ext stashdb`` (or ``c.InteractiveShellApp.extensions =
["stashdb"]`` in a profile). Imported only then: ``import stashdb`` never
imports IPython.

What makes a snapshot after every cell cheap is knowing what a cell could have
changed (`CellTracker`): the names its code reads, assigns or deletes, the
names the functions and classes it uses refer to (a mutation made inside a
function the cell called), the members of their groups, and any name whose
binding changed. Everything else keeps its entry from the previous snapshot
without being pickled again (`Repo.prepare_changes`). A cell that runs another
magic (``%run``, say) could do anything: the next snapshot captures everything.
"""

from __future__ import annotations

import argparse
import ast
import collections
import datetime
import functools
import os
import re
import shlex
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class

import stashdb
from stashdb.errors import NameNotInSnapshot, StashError
from stashdb.model import CheckoutReport, Commit, Skipped
from stashdb.repo import PreparedCommit
from stashdb.workspace import excluded_by_default, shell_names

__all__ = ["CellTracker", "StashMagics", "load_ipython_extension", "unload_ipython_extension"]

#: Magics whose code argument is Python we can read (``%time x = f()``, ``%%timeit``).
_CODE_MAGICS = frozenset({"time", "timeit", "prun"})


# -- what a cell could have changed ---------------------------------------------


def names_in_code(code: str) -> set[str] | None:
    """Every name the code mentions, or None when that cannot be known.

    Over-approximates on purpose (names inside function bodies, attribute
    bases): a name too many costs a pickling, a name too few loses a change.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Call) and _magic_call(node):
            inner = _magic_code(node)
            if inner is None:
                return None  # %run, %load, %store -r …: could do anything
            if inner:
                found = names_in_code(inner)
                if found is None:
                    return None
                names |= found
    return names


def _magic_call(node: ast.Call) -> bool:
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in ("run_line_magic", "run_cell_magic")
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    )


def _magic_code(node: ast.Call) -> str | None:
    """The code a magic call runs ('' for %stash, which reports its own changes), or None."""
    args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
    if not args or not isinstance(args[0], str):
        return None
    name = args[0]
    if name == "stash":
        return ""
    if name not in _CODE_MAGICS:
        return None
    cell = node.func.attr == "run_cell_magic"  # type: ignore[attr-defined]
    code = args[2] if cell and len(args) > 2 else args[1] if len(args) > 1 else None
    return code if isinstance(code, str) else None


#: Containers up to this size are looked into for functions (`handlers["x"](…)`);
#: larger ones are taken to hold data.
_SMALL_CONTAINER = 1000
#: Objects looked at per cell while following functions; past it, the next
#: snapshot captures everything rather than risk missing a change.
_BUDGET = 20_000
#: Attributes through which wrappers reach what they wrap (functools.wraps,
#: lru_cache, numpy.vectorize, properties).
_WRAPPED = ("__wrapped__", "__func__", "func", "pyfunc", "fget", "fset", "fdel")


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _closure_values(func: types.FunctionType) -> list[Any]:
    found = []
    for cell in func.__closure__ or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return found


def _is_workspace(obj: Any, workspace: str) -> bool:
    return getattr(obj, "__module__", None) in (workspace, "__main__")


class _Follow:
    """Walks from a value to the code it can run, collecting the names that code can reach.

    A function reaches the globals its code names, and the objects its
    closure holds (matched to namespace names by identity); wrappers reach
    what they wrap; a class or an instance of a workspace class reaches its
    methods; a small container reaches its items.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.workspace = str(namespace.get("__name__", "__main__"))
        self.budget = _BUDGET
        self._seen: set[int] = set()
        self._by_id: dict[int, list[str]] | None = None

    def names_bound_to(self, obj: Any) -> list[str]:
        if self._by_id is None:
            self._by_id = {}
            for name, bound in self.namespace.items():
                self._by_id.setdefault(id(bound), []).append(name)
        return self._by_id.get(id(obj), [])

    def names(self, value: Any) -> set[str] | None:
        """Names ``value`` can reach when called; None: more than the budget allows."""
        found: set[str] = set()
        stack = [value]
        while stack:
            obj = stack.pop()
            if id(obj) in self._seen:
                continue
            self._seen.add(id(obj))
            self.budget -= 1
            if self.budget < 0:
                return None
            if obj is not value:
                found.update(self.names_bound_to(obj))
            stack.extend(self._inside(obj, found))
        return found

    def _inside(self, obj: Any, found: set[str]) -> list[Any]:
        if isinstance(obj, types.FunctionType):
            found |= _global_names(obj.__code__)
            return [*_closure_values(obj), *self._wrapped(obj)]
        if isinstance(obj, (list, tuple, set, frozenset)):
            return list(obj) if len(obj) <= _SMALL_CONTAINER else []
        if isinstance(obj, dict):
            return list(obj.values()) if len(obj) <= _SMALL_CONTAINER else []
        if isinstance(obj, functools.partial):
            return [obj.func, *obj.args, *obj.keywords.values()]
        if isinstance(obj, types.MethodType):
            return [obj.__func__, obj.__self__]
        if isinstance(obj, type):
            if not _is_workspace(obj, self.workspace):
                return []
            return [a for klass in obj.__mro__ if _is_workspace(klass, self.workspace)
                    for a in vars(klass).values()]
        if isinstance(obj, (staticmethod, classmethod, property)):
            return self._wrapped(obj)
        if _is_workspace(type(obj), self.workspace):
            return [type(obj)]  # its methods (its own data is pickled with it)
        return self._wrapped(obj)  # lru_cache, vectorize …: what they wrap

    @staticmethod
    def _wrapped(obj: Any) -> list[Any]:
        inner = []
        for attr in _WRAPPED:
            try:
                found = getattr(obj, attr, None)
            except Exception:  # a property that raises: nothing to follow
                continue
            if callable(found):
                inner.append(found)
        return inner


def reachable_names(names: Iterable[str], namespace: Mapping[str, Any]) -> set[str] | None:
    """``names`` plus every namespace name the code they can run can reach.

    None when following them would look at more than `_BUDGET` objects: the
    caller then treats every name as changed.
    """
    follow = _Follow(namespace)
    seen = {n for n in names if n in namespace}
    todo = list(seen)
    while todo:
        reached = follow.names(namespace[todo.pop()])
        if reached is None:
            return None
        for ref in reached:
            if ref in namespace and ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return seen


class CellTracker:
    """Which names of a namespace a cell could have changed."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self._bindings: dict[str, int] = {}

    def _current(self) -> dict[str, int]:
        return {n: id(v) for n, v in self.namespace.items() if not n.startswith("_")}

    def before(self) -> None:
        """Note every name's binding before the cell runs (ids only: cheap)."""
        self._bindings = self._current()

    def changed(self, code: str) -> set[str] | None:
        """Names the cell that just ran could have changed; None: it could be any."""
        after = self._current()
        rebound = {n for n, i in after.items() if self._bindings.get(n) != i}
        rebound |= self._bindings.keys() - after.keys()
        mentioned = names_in_code(code)
        if mentioned is None:
            return None
        reached = reachable_names(mentioned | rebound, self.namespace)
        return None if reached is None else rebound | reached


# -- the extension --------------------------------------------------------------


def branch_for_session(namespace: Mapping[str, Any]) -> str:
    """A branch named after the notebook (Jupyter tells its path), or the session."""
    path = os.environ.get("JPY_SESSION_NAME") or namespace.get("__session__")
    if isinstance(path, str) and path:
        stem = Path(path).stem
        name = "nb/" + re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-.")
        if name != "nb/":
            return name
    return f"ipython/{datetime.datetime.now():%Y%m%d-%H%M%S}"


class _Writer:
    """Writes prepared snapshots in order, on a thread, so a cell does not wait for the disk.

    The thread is not a daemon and ends when there is nothing left to write:
    the interpreter waits for the last snapshot before it exits.
    """

    def __init__(self) -> None:
        self._queue: collections.deque[_Pending] = collections.deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, pending: _Pending) -> None:
        with self._lock:
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stashdb-snapshots")
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                pending = self._queue.popleft()
            try:
                pending.prepared.write()
            except BaseException as exc:  # reported by the session, on the main thread
                pending.error = exc
            pending.done.set()

    def wait(self) -> None:
        """Block until every submitted snapshot is written."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join()


class _Pending:
    """A snapshot handed to the writer."""

    def __init__(self, prepared: PreparedCommit, label: str) -> None:
        self.prepared = prepared
        self.label = label  # "cell [N]", for undo's message
        self.done = threading.Event()
        self.error: BaseException | None = None

    @property
    def commit(self) -> Commit:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.prepared.written is not None
        return self.prepared.written


class Session:
    """stashdb's state for one IPython shell: its store, its branch, what changed since."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell
        self.namespace = shell.user_ns
        self.tracker = CellTracker(self.namespace)
        self.auto = False
        self.branch: str | None = None
        self._repo: stashdb.Repo | None = None
        #: The snapshot the namespace equals, but for the names in ``dirty``:
        #: a commit, or a prepared one still being written.
        self.base: Commit | PreparedCommit | None = None
        self.dirty: set[str] = set()
        self.everything_dirty = False
        #: Snapshots the namespace went through in this session, for undo.
        self.states: list[_Pending | Commit] = []
        self._writer = _Writer()
        self._reported: dict[str, int] = {}  # unstorable name -> id of the value reported

    @property
    def repo(self) -> stashdb.Repo:
        """The store: ``STASHDB_URL`` if set (as for the CLI), else the ``.stashdb/`` found
        from the current directory upwards, else a new one here."""
        if self._repo is None:
            self.use_store(os.environ.get("STASHDB_URL") or None)
        assert self._repo is not None
        return self._repo

    def use_store(self, store: str | None) -> None:
        """Snapshot into another store (a directory, a SQLite file or a database URL)."""
        self.flush()
        repo = stashdb.open(store, create=True)
        # stashdb.log() & co. in a cell see the snapshots still being written.
        repo.writes_in_flight = self._writer.wait
        if repo is not self._repo:  # what the old store held says nothing about this one
            self.base, self.states, self.everything_dirty = None, [], False
        self._repo = repo

    # -- IPython events ---------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        self.tracker.before()

    def post_run_cell(self, result: Any) -> None:
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
            print(f"stashdb: auto-snapshot failed: {exc}", file=sys.stderr)

    # -- snapshots --------------------------------------------------------------

    def snapshot(self, message: str, *, full: bool = False) -> Commit | None:
        """Snapshot what changed since the last snapshot, and wait for it; None if nothing did."""
        pending = self.submit(message, full=full)
        self.flush()
        return pending.commit if pending is not None else None

    def submit(self, message: str, *, full: bool = False, label: str = "") -> _Pending | None:
        """Snapshot what changed since the last snapshot; None if nothing did.

        Values are pickled and hashed now; the commit is written on the
        writer thread: the cell does not wait for the disk.
        """
        self._collect_failures()
        base = None if full or self.everything_dirty else self.base
        changed = self.dirty
        prepared = self.repo.prepare_changes(
            base, changed, message, namespace=self.namespace, branch=self.branch
        )
        self.dirty = set()
        self.everything_dirty = False
        if prepared is None:
            return None
        prepared.detach()  # the next cell may change what it still points at
        pending = _Pending(prepared, label or message)
        self._writer.submit(pending)
        self.base = prepared
        self.states.append(pending)
        self._report_unstorable(prepared.skipped)
        return pending

    def flush(self) -> None:
        """Wait for the snapshots being written; report any that failed."""
        self._writer.wait()
        self._collect_failures()

    def _collect_failures(self) -> None:
        failed = [s for s in self.states if isinstance(s, _Pending) and s.done.is_set() and s.error]
        if not failed:
            return
        for pending in failed:
            print(f"stashdb: a snapshot was not written: {pending.error}", file=sys.stderr)
        self.states = [s for s in self.states if s not in failed]
        # What it held must be captured again: the next snapshot takes everything.
        self.everything_dirty = True
        self.base = None

    @staticmethod
    def commit_of(state: _Pending | Commit) -> Commit:
        return state.commit if isinstance(state, _Pending) else state

    def _report_unstorable(self, skipped: Iterable[Skipped]) -> None:
        for item in skipped:
            value_id = id(self.namespace.get(item.name))
            if self._reported.get(item.name) != value_id:
                self._reported[item.name] = value_id
                print(
                    f"stashdb: not stored: {item.name} ({item.type_name}): {item.reason}",
                    file=sys.stderr,
                )

    def unchanged_since_base(self) -> set[str]:
        """Names whose value is still the base snapshot's.

        A name that shares objects with a changed one (its group in the base)
        may have changed through it: `records.append(…)` changes `alias` too.
        """
        if self.base is None or self.everything_dirty:
            return set()
        dirty = set(self.dirty)
        for entry in self.base.entries:
            if entry.name in self.dirty:
                dirty.update(entry.group)
        return {
            e.name for e in self.base.entries
            if e.kind != "skipped" and e.name not in dirty and e.name in self.namespace
        }

    def keep_for(self, target: Commit, unchanged: set[str]) -> set[str]:
        """Names whose current value already is ``target``'s: checkout leaves them in memory.

        ``unchanged``: `unchanged_since_base`.
        """
        if self.base is None or not unchanged:
            return set()
        ours = {e.name: e.stored_as for e in self.base.entries}
        keep = {
            e.name for e in target.entries
            if e.name in unchanged and ours.get(e.name) == e.stored_as
        }
        # A group is kept whole or read whole: half of it kept and half read
        # back would no longer share its objects.
        for entry in target.entries:
            if entry.name in keep and not keep.issuperset(entry.group):
                keep.difference_update((entry.name, *entry.group))
        return keep

    def checkout(
        self, rev: str, only: list[str] | None = None, merge: bool = False
    ) -> CheckoutReport:
        self.flush()
        target = self.repo.show(rev)
        held = sorted(e.name for e in target.entries)
        missing = [n for n in only or () if n not in held]
        if missing:  # before anything is released
            raise NameNotInSnapshot(missing, target.id, held)
        unchanged = self.unchanged_since_base()
        keep = self.keep_for(target, unchanged)
        holder = self.commit_of(self.states[-1]) if self.states else None
        released = self._release_for(target, only, unchanged - keep)
        try:
            report = self.repo.checkout(
                target, namespace=self.namespace, only=only, merge=merge, keep=keep,
            )
        finally:
            # Not restored (it failed, or the checkout was interrupted): the old
            # values come back from the snapshot that holds them.
            lost = [n for n in released if n not in self.namespace]
            if lost and holder is not None:
                self.repo.checkout(holder, namespace=self.namespace, only=lost)
        touched = set(report.restored) | set(report.removed)
        if only is None and not merge:
            self.base = target
            self.dirty = {f.name for f in report.failed} | {s.name for s in report.skipped}
            self.everything_dirty = False
            self.states.append(target)
        else:
            self.dirty |= touched
        self.tracker.before()  # the magic's own changes are accounted for
        if self.auto and (only is not None or merge):
            self.snapshot(f"checkout {rev}" + (f" --only {','.join(only)}" if only else ""))
        return report

    def _release_for(self, target: Commit, only: list[str] | None, safe: set[str]) -> list[str]:
        """Drop the old values that checkout replaces and the last snapshot holds (``safe``).

        Otherwise a checkout holds two copies of every replaced value at its
        peak. Safe: the last snapshot has the old value, and a name that then
        fails to restore gets it back from there.
        """
        if not self.states:
            return []
        wanted = set(only) if only is not None else {e.name for e in target.entries}
        replaced = [
            e.name for e in target.entries
            if e.name in wanted and e.name in safe and e.kind == "value"
        ]
        for name in replaced:
            del self.namespace[name]
        return replaced

    def undo(self) -> tuple[str, CheckoutReport]:
        """Restore the state before the last cell that changed something."""
        if not self.auto and not self.states:
            raise UsageError("undo needs snapshots of this session: run %stash auto on first")
        self.flush()
        if self.dirty or self.everything_dirty:
            if self.base is None or not self.states:
                raise UsageError("nothing to undo to: no snapshot of this session yet")
            target = self.commit_of(self.states[-1])  # a cell ran since (it failed, say)
            what = "the changes since the last snapshot"
        else:
            if len(self.states) < 2:
                raise UsageError("nothing to undo: this is the first snapshot of this session")
            undone = self.states.pop()
            target = self.commit_of(self.states[-1])
            what = undone.label if isinstance(undone, _Pending) else f"checkout {undone.short_id}"
        report = self.checkout(target.id)
        self.states.pop()  # checkout added the target, which already is the last state
        return what, report


# -- the magic ------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"%stash: {message}\n{self.format_usage().strip()}")


def _parser() -> _Parser:
    parser = _Parser(prog="%stash", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("commit")
    p.add_argument("-m", "--message", default="")
    p = sub.add_parser("log")
    p.add_argument("-n", type=int, default=None)
    p = sub.add_parser("show")
    p.add_argument("rev", nargs="?", default="HEAD")
    p = sub.add_parser("diff")
    p.add_argument("a")
    p.add_argument("b", nargs="?", default="HEAD")
    p = sub.add_parser("history")
    p.add_argument("name")
    p = sub.add_parser("tag")
    p.add_argument("name")
    p.add_argument("rev", nargs="?", default="HEAD")
    p = sub.add_parser("checkout")
    p.add_argument("rev")
    p.add_argument("--only", default=None)
    p.add_argument("--merge", action="store_true")
    sub.add_parser("undo")
    p = sub.add_parser("auto")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("--branch", default=None)
    p.add_argument("--store", default=None)
    sub.add_parser("status")
    return parser


USAGE = """\
%stash commit [-m MSG]          snapshot the namespace now
%stash log [-n N]               snapshots of this session's branch, newest first
%stash show [REV]               one snapshot: every name, type, size, preview
%stash diff A [B]               names added, removed and changed from A to B
%stash history NAME             the versions of one variable
%stash tag NAME [REV]           name a snapshot for good
%stash checkout REV [--only a,b] [--merge]
                                restore a snapshot (or only some names)
%stash undo                     back to the state before the last cell
%stash auto on|off [--branch B] [--store PATH_OR_URL]
                                a snapshot after every successful cell
%stash status                   store, branch, what changed since the last snapshot
REV: a commit id, tag, branch, HEAD, HEAD~N (HEAD is this session's branch when auto is on)"""


@magics_class
class StashMagics(Magics):
    """The ``%stash`` line magic."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.session = Session(shell)

    @staticmethod
    def _print(renderable: Any) -> None:
        from rich.console import Console

        # A Console per call: rich renders HTML in Jupyter and ANSI in a terminal.
        Console(highlight=False).print(renderable)

    @line_magic
    def stash(self, line: str) -> None:
        """Version the namespace with stashdb: %stash commit|log|show|diff|history|tag|
        checkout|undo|auto|status. Run %stash with no arguments for usage."""
        words = shlex.split(line)
        if not words or words[0] in ("-h", "--help", "help"):
            print(USAGE)
            return
        args = _parser().parse_args(words)
        try:
            self.session.flush()  # what the subcommand reads includes the last cell's snapshot
            getattr(self, f"_{args.command}")(args)
        except StashError as exc:
            raise UsageError(f"stashdb: {exc}") from None

    # -- subcommands ------------------------------------------------------------

    def _rev(self, rev: str) -> str:
        """HEAD means this session's branch once it has snapshots."""
        s = self.session
        if s.branch is not None and s.states and (rev == "HEAD" or rev[:5] in ("HEAD~", "HEAD^")):
            return s.branch + rev[4:]
        return rev

    def _commit(self, args: argparse.Namespace) -> None:
        made = self.session.snapshot(args.message, full=True)
        assert made is not None
        print(f"[{made.branch} {made.short_id}] {made.message}: stored {len(made.stored)}, "
              f"reused {len(made.reused)}, skipped {len(made.skipped)}")

    def _log(self, args: argparse.Namespace) -> None:
        from stashdb import render

        repo, s = self.session.repo, self.session
        branch = s.branch if s.states else None
        commits = repo.log(branch=branch, limit=args.n)
        if not commits:
            print("no snapshots yet")
            return
        tips: dict[str, list[str]] = {}
        for ref in repo.branches():
            tips.setdefault(ref.commit_id, []).append(ref.name)
        self._print(render.log_table(commits, repo.store.change_counts(commits), tips))

    def _show(self, args: argparse.Namespace) -> None:
        from stashdb import render

        made = self.session.repo.show(self._rev(args.rev))
        print(f"commit {made.id} ({made.branch})  {made.time.astimezone():%Y-%m-%d %H:%M:%S}")
        print(f"    {made.message or '(no message)'}")
        self._print(render.entries_table(made.entries))

    def _diff(self, args: argparse.Namespace) -> None:
        from stashdb import render

        found = self.session.repo.diff(self._rev(args.a), self._rev(args.b))
        if not found.changes:
            print("no differences")
            return
        self._print(render.diff_table(found))

    def _history(self, args: argparse.Namespace) -> None:
        from stashdb import render

        s = self.session
        versions = s.repo.history(args.name, branch=s.branch if s.states else None)
        self._print(render.history_table(versions))

    def _tag(self, args: argparse.Namespace) -> None:
        ref = self.session.repo.tag(args.name, self._rev(args.rev))
        print(f"tagged {ref.commit_id[:8]} as {ref.name}")

    def _checkout(self, args: argparse.Namespace) -> None:
        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        report = self.session.checkout(self._rev(args.rev), only, args.merge)
        self._report(f"checked out {report.commit.short_id}", report)

    def _undo(self, args: argparse.Namespace) -> None:
        what, report = self.session.undo()
        self._report(f"undid {what}: back to {report.commit.short_id}", report)

    def _report(self, title: str, report: CheckoutReport) -> None:
        parts = [f"restored {len(report.restored)}{_listing(report.restored)}"]
        if report.kept:
            parts.append(f"kept {len(report.kept)} unchanged in memory")
        if report.removed:
            parts.append(f"removed {len(report.removed)}{_listing(report.removed)}")
        print(f"{title}: " + "; ".join(parts))
        for skipped in report.skipped:
            print(f"  skipped at commit, left as is: {skipped.name} ({skipped.type_name}): "
                  f"{skipped.reason}")
        for failed in report.failed:
            print(f"  not restored, left as is: {failed.name}: {failed.reason}")
        for warning in report.warnings:
            print(f"  warning: {warning}")

    def _auto(self, args: argparse.Namespace) -> None:
        s = self.session
        if args.state == "off":
            s.auto = False
            print("auto-snapshot off")
            return
        if args.store:
            s.use_store(args.store)
        s.branch = args.branch or s.branch or branch_for_session(s.namespace)
        s.auto = True
        made = s.snapshot("auto-snapshot on", full=True)
        where = f"{made.short_id} " if made is not None else ""
        print(f"auto-snapshot on: a snapshot after every cell, on branch {s.branch} "
              f"({where}in {s.repo.location})")

    def _status(self, args: argparse.Namespace) -> None:
        s = self.session
        print(f"store   {s.repo.location}")
        print(f"auto    {'on' if s.auto else 'off'}" + (f", branch {s.branch}" if s.branch else ""))
        s.flush()
        if s.states:
            last = s.commit_of(s.states[-1])
            print(f"last    {last.short_id} {last.message}")
        hidden = shell_names(s.namespace)
        if s.everything_dirty:
            print("changed since: anything (a cell ran another magic)")
        else:
            changed = sorted(
                n for n in s.dirty
                if n in s.namespace and not excluded_by_default(n, hidden)
            )
            print(f"changed since: {', '.join(changed) if changed else 'nothing'}")
        if s._reported:
            print(f"not storable: {', '.join(sorted(s._reported))}")


def _listing(names: list[str], most: int = 8) -> str:
    if not names:
        return ""
    more = ", …" if len(names) > most else ""
    return f" ({', '.join(names[:most])}{more})"


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext stashdb``: register ``%stash`` and the cell hooks."""
    magics = StashMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.session.pre_run_cell)
    ipython.events.register("post_run_cell", magics.session.post_run_cell)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        magics.session.flush()
        ipython.events.unregister("pre_run_cell", magics.session.pre_run_cell)
        ipython.events.unregister("post_run_cell", magics.session.post_run_cell)


_loaded: dict[int, StashMagics] = {}
