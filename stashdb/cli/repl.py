"""``stashdb repl``: an interactive Python on a session, every statement a snapshot.

At a terminal it is the standard library's `code.InteractiveConsole` (line
editing, continuation lines), with each complete statement sent to the
session and ``:undo``, ``:log``, ``:help`` as commands. Piped input is read
whole and cut into its top-level statements, each one step, so a script
piped in gives one snapshot per statement, however its blocks are spaced.
"""

from __future__ import annotations

import ast
import code
import codeop
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stashdb.cli.app import err, out
from stashdb.errors import SessionError, StashError
from stashdb.render import markup_safe as safe
from stashdb.repo import Repo
from stashdb.session import ExecutionResult, Session

__all__ = ["run_repl", "steps_of"]

_COMMAND = re.compile(r"^:(\w+)\s*$")
_HELP = """\
:undo   go back to the state before the last step
:log    the last steps of this session
:help   this
Ctrl-D  leave (the state stays on the branch: stashdb session resume BRANCH)"""


@dataclass(frozen=True)
class Command:
    """A REPL command (``:undo``) among the statements."""

    name: str


def steps_of(text: str) -> list[str | Command]:
    """Piped input as steps: its top-level statements, and its ``:command`` lines.

    Statements that share a line (``n += 1; print(n)``) are one step. A line
    ``:undo`` inside an open string or bracket is code, not a command.
    """
    found: list[str | Command] = []
    block: list[str] = []
    for line in [*text.splitlines(), None]:
        command = _COMMAND.match(line) if line is not None else None
        if line is not None and (command is None or _open("\n".join(block))):
            block.append(line)
            continue
        found += _statements("\n".join(block))
        block = []
        if command is not None:
            found.append(Command(command.group(1)))
    return found


def _open(source: str) -> bool:
    """Whether ``source`` stops inside a string or bracket (the next line continues it)."""
    try:
        return codeop.compile_command(source, symbol="exec") is None
    except (SyntaxError, OverflowError, ValueError):
        return False


def _statements(source: str) -> list[str]:
    """The top-level statements of ``source``, each with the lines it spans."""
    if not source.strip():
        return []
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        # The statements before the broken one run; the rest is one step, whose
        # error the session reports with its line.
        before = "\n".join(lines[: (exc.lineno or 1) - 1])
        try:
            ast.parse(before)
        except SyntaxError:
            return [source]
        rest = "\n".join(lines[(exc.lineno or 1) - 1 :])
        return [*_statements(before), rest]
    spans: list[list[int]] = []
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        last = node.end_lineno or node.lineno
        if spans and first <= spans[-1][1]:  # on a line the previous one ends on
            spans[-1][1] = max(spans[-1][1], last)
        else:
            spans.append([first, last])
    return ["\n".join(lines[first - 1 : last]) for first, last in spans]


class _Repl:
    """Runs steps on a session and prints what each gave."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.failed = False

    def run(self, source: str) -> None:
        try:
            result = self.session.execute(source)
        except SessionError as exc:  # timeout, crash, memory: the session is back, it says so
            self.failed = True
            err.print(f"[red]stashdb:[/red] {safe(exc)}", soft_wrap=True)
            return
        except KeyboardInterrupt:
            self.failed = True
            err.print("KeyboardInterrupt")
            return
        self._show(result)

    def _show(self, result: ExecutionResult) -> None:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.value is not None:
            sys.stdout.write(result.value + "\n")
        if result.error is not None:
            self.failed = True
            sys.stderr.write(result.error.traceback)
        sys.stdout.flush()
        for warning in result.warnings:
            err.print(f"[yellow]stashdb:[/yellow] {safe(warning)}", soft_wrap=True)

    def command(self, name: str) -> None:
        try:
            if name == "undo":
                out.print(safe(self.session.undo().message))
            elif name == "log":
                for commit in self.session.log(limit=10):
                    out.print(f"[yellow]{commit.short_id}[/yellow] {safe(commit.message)}")
            elif name == "help":
                out.print(safe(_HELP))
            else:
                err.print(f"[red]stashdb:[/red] no command :{safe(name)} (:help lists them)")
        except StashError as exc:
            err.print(f"[red]stashdb:[/red] {safe(exc)}", soft_wrap=True)


class _Console(code.InteractiveConsole):
    """The standard console, with statements run by the session."""

    def __init__(self, repl: _Repl) -> None:
        super().__init__()
        self.repl = repl

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        command = _COMMAND.match(source.strip())
        if command is not None:
            self.repl.command(command.group(1))
            return False
        try:
            if codeop.compile_command(source, filename, symbol) is None:
                return True  # more lines to come
        except (SyntaxError, OverflowError, ValueError):
            pass  # the session reports it
        self.repl.run(source)
        return False


def run_repl(
    repo: Repo,
    branch: str | None,
    *,
    timeout: float | None = None,
    workdir: Path | None = None,
    isolated: bool = True,
) -> int:
    """Run the REPL until end of input; returns the exit status (1: a step failed, piped)."""
    settings: dict[str, Any] = {"timeout": timeout, "isolated": isolated}
    if workdir is not None:
        settings["workdir"] = workdir
    ref = repo.storage.reader.find_ref(branch) if branch is not None else None
    if branch is not None and ref is not None and ref.kind == "branch":
        # As Session.resume: the working directory the session was started with.
        opened = Session.resume(branch, repo, **settings)
    else:
        opened = Session(repo, branch, **settings)
    with opened as session:
        repl = _Repl(session)
        if sys.stdin.isatty():
            steps = session.execution_count
            resumed = f", resumed after {steps} executions" if steps else ""
            banner = (f"stashdb repl: session {session.branch}{resumed}, store "
                      f"{repo.location}\nevery statement is a snapshot; :help for commands")
            _Console(repl).interact(banner=banner, exitmsg="")
        else:
            for step in steps_of(sys.stdin.read()):
                if isinstance(step, Command):
                    repl.command(step.name)
                else:
                    repl.run(step)
        err.print(f"session {safe(session.branch)} saved: "
                  f"stashdb session resume {safe(session.branch)}", soft_wrap=True)
    return 1 if repl.failed and not sys.stdin.isatty() else 0
