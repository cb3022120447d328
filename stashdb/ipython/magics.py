"""The ``%stash`` line magic: parse, call the session or the Repo, render.

No logic of its own lives here: `stashdb.ipython.shell.ShellSession` keeps the
shell's state, `Repo` does the work, `stashdb.render` draws the results (the
same tables and reports as the command line; rich renders them as HTML in
Jupyter). A mistake is one `UsageError` line, as IPython shows its own.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_magic, magics_class

from stashdb import render
from stashdb.errors import StashError, UnsavedValues
from stashdb.ipython.shell import ShellSession, branch_for_session

__all__ = ["USAGE", "StashMagics"]


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
    p.add_argument("--force", action="store_true")
    p.add_argument("--trust", action="store_true")
    p.add_argument("--safe", action="store_true")
    sub.add_parser("undo")
    sub.add_parser("redo")
    p = sub.add_parser("auto")
    p.add_argument("state", choices=["on", "off"])
    p.add_argument("--branch", default=None)
    p.add_argument("--store", default=None)
    sub.add_parser("status")
    p = sub.add_parser("ui")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--stop", action="store_true")
    return parser


USAGE = """\
%stash commit [-m MSG]          snapshot the namespace now
%stash log [-n N]               snapshots of this session's branch, newest first
%stash show [REV]               one snapshot: every name, type, size, preview
%stash diff A [B]               names added, removed and changed from A to B
%stash history NAME             the versions of one variable
%stash tag NAME [REV]           name a snapshot for good
%stash checkout REV [--only a,b] [--merge] [--force] [--trust | --safe]
                                restore a snapshot (or only some names); --force even
                                over values no snapshot holds; --trust even if not
                                signed by a key you trust; --safe: only plain data
%stash undo                     back to the state before the last cell
%stash redo                     forward again, after an undo
%stash auto on|off [--branch B] [--store PATH_OR_URL]
                                a snapshot after every successful cell
%stash status                   store, branch, what changed since the last snapshot
%stash ui [--port N] [--no-browser] [--stop]
                                the history in the browser (read-only, live)
REV: a commit id, tag, branch, HEAD, HEAD~N (HEAD is this session's branch when auto is on)"""


@magics_class
class StashMagics(Magics):
    """The ``%stash`` line magic."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.session = ShellSession(shell)
        self.viewer: Any = None  # the `%stash ui` server, in its own process

    @staticmethod
    def _print(renderable: Any) -> None:
        from rich.console import Console

        # A Console per call: rich renders HTML in Jupyter and ANSI in a terminal.
        Console(highlight=False).print(renderable)

    @line_magic
    def stash(self, line: str) -> None:
        """Version the namespace with stashdb: %stash commit|log|show|diff|history|tag|
        checkout|undo|redo|auto|status. Run %stash with no arguments for usage."""
        words = shlex.split(line)
        if not words or words[0] in ("-h", "--help", "help"):
            print(USAGE)
            return
        args = _parser().parse_args(words)
        try:
            self.session.flush()  # what the subcommand reads includes the last cell's snapshot
            getattr(self, f"_{args.command}")(args)
        except StashError as exc:
            raise UsageError(render.printable(f"stashdb: {exc}")) from None

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
        self._print(render.commit_report(made))

    def _log(self, args: argparse.Namespace) -> None:
        repo, s = self.session.repo, self.session
        branch = s.branch if s.states else None
        commits = repo.log(branch=branch, limit=args.n)
        if not commits:
            print("no snapshots yet")
            return
        self._print(render.log_table(commits, repo.change_counts(commits), _tips(repo)))

    def _show(self, args: argparse.Namespace) -> None:
        made = self.session.repo.show(self._rev(args.rev))
        self._print(render.commit_header(made))
        self._print(render.entries_table(made.entries))

    def _diff(self, args: argparse.Namespace) -> None:
        found = self.session.repo.diff(self._rev(args.a), self._rev(args.b))
        if not found:
            print("no differences")
            return
        self._print(render.diff_table(found))

    def _history(self, args: argparse.Namespace) -> None:
        s = self.session
        versions = s.repo.history(args.name, branch=s.branch if s.states else None)
        self._print(render.history_table(versions))

    def _tag(self, args: argparse.Namespace) -> None:
        ref = self.session.repo.tag(args.name, self._rev(args.rev))
        print(render.printable(f"tagged {ref.commit_id[:8]} as {ref.name}"))

    def _checkout(self, args: argparse.Namespace) -> None:
        only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        try:
            report = self.session.checkout(self._rev(args.rev), only, args.merge, args.force,
                                           trust=args.trust, safe=args.safe)
        except UnsavedValues as exc:
            raise UsageError(render.printable(
                f"stashdb: {exc} (%stash commit, or %stash checkout {args.rev} --force)"
            )) from None
        self._print(render.checkout_report(report))

    def _undo(self, args: argparse.Namespace) -> None:
        what, report = self.session.undo()
        title = f"undid {what}: back to {report.commit.short_id}"
        self._print(render.checkout_report(report, title))

    def _redo(self, args: argparse.Namespace) -> None:
        what, report = self.session.redo()
        title = f"redid {what}: at {report.commit.short_id}"
        self._print(render.checkout_report(report, title))

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
        print(render.printable(f"auto-snapshot on: a snapshot after every cell, on branch "
                               f"{s.branch} ({where}in {s.repo.location})"))

    def _ui(self, args: argparse.Namespace) -> None:
        from stashdb.viewer.launch import ui

        if self.viewer is not None and (args.stop or not self.viewer.running):
            self.viewer.stop()
            self.viewer = None
        if args.stop:
            print("stashdb ui stopped")
            return
        if self.viewer is None:
            self.viewer = ui(self.session.repo, port=args.port, open_browser=not args.no_browser)
        print(f"stashdb ui: {self.viewer.url}")

    def _status(self, args: argparse.Namespace) -> None:
        s = self.session
        branch = f", branch {s.branch}" if s.branch else ""
        lines = [f"store   {s.repo.location}", f"auto    {'on' if s.auto else 'off'}{branch}"]
        s.flush()
        if s.states:
            last = s.states[-1].commit
            lines.append(f"last    {last.short_id} {last.message}")
        changed = s.changed_names()
        if changed is None:
            lines.append("changed since: anything (a cell ran another magic)")
        else:
            lines.append(f"changed since: {', '.join(changed) if changed else 'nothing'}")
        if s.reported:
            lines.append(f"not storable: {', '.join(sorted(s.reported))}")
        cost = s.last_cost
        if cost is not None:
            lines += render.snapshot_cost_lines(cost)
        print(render.printable("\n".join(lines)))


def _tips(repo: Any) -> dict[str, list[str]]:
    tips: dict[str, list[str]] = {}
    for ref in repo.branches():
        tips.setdefault(ref.commit_id, []).append(ref.name)
    return tips


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext stashdb``: register ``%stash`` and the cell hooks."""
    magics = StashMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.session.pre_run_cell)
    ipython.events.register("post_run_cell", magics.session.post_run_cell)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext stashdb``: wait for the snapshots in flight, then unhook."""
    magics = _loaded.pop(id(ipython), None)
    if magics is not None:
        magics.session.flush()
        ipython.events.unregister("pre_run_cell", magics.session.pre_run_cell)
        ipython.events.unregister("post_run_cell", magics.session.post_run_cell)


_loaded: dict[int, StashMagics] = {}
