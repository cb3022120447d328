"""Run a Python script as ``__main__``, as ``python SCRIPT ARGS…`` would, and keep its state.

Used by ``stashdb commit SCRIPT``: the script's globals are committed when it
ends, also when it crashes, so that the state of a failed run is there to
inspect. The run is what ``python SCRIPT`` does: ``__file__`` is absolute, the
threads the script started are joined before its state is taken (the
interpreter would wait for them too), ``sys.exit`` codes are kept, and a
process the script forks commits nothing. Two things are added, both so that
a run is never thrown away: ``os._exit(n)`` commits the state it leaves before
the process ends with status ``n``, and when the commit itself fails after the
script ran (a lock held too long, a full disk, an ``only`` pattern matching
nothing), the state goes to a new store in a temporary directory instead, and
the result says where.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from stashdb.errors import ScriptNotFound, StashError
from stashdb.model import Commit, Progress
from stashdb.repo import Repo
from stashdb.storage.sqlite_driver import sqlite_url
from stashdb.workspace.main_module import main_module

__all__ = ["ScriptCommit", "ScriptRun", "commit_script", "load_script", "running_script"]


@dataclass
class ScriptRun:
    """How a script run ended, with the globals it left."""

    namespace: dict[str, Any]
    exit_code: int  # what `python SCRIPT` would have exited with
    error: BaseException | None = None  # the exception that ended it, if any
    traceback: str | None = None  # formatted as Python prints it, without our frames
    os_exit: bool = False  # it ended by calling os._exit(exit_code)

    @property
    def failure(self) -> str | None:
        """A short description of how it failed, for the commit message; None if it did not."""
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.os_exit:
            return f"called os._exit({self.exit_code})"
        if self.exit_code != 0:
            return f"exited with status {self.exit_code}"
        return None


@dataclass
class ScriptCommit:
    """How `commit_script` ended: the run, and where its state went."""

    run: ScriptRun
    #: The commit in the store asked for (None: it is not there).
    commit: Commit | None = None
    #: Where the state went instead, when committing to that store failed.
    rescued: str | None = None
    #: Why it is not in the store asked for (the commit's error).
    problem: BaseException | None = None
    #: Ctrl-C came while committing (``commit`` says whether it was written).
    interrupted: bool = False
    #: This is a process the script forked: it commits nothing.
    in_child: bool = False

    @property
    def exit_code(self) -> int:
        """What ``stashdb commit`` exits with: the script's status, unless stashdb failed."""
        if self.interrupted:
            return 130
        if self.problem is not None:
            return self.run.exit_code or 1
        return self.run.exit_code


def load_script(path: str | Path) -> CodeType:
    """The compiled script, before anything runs.

    Raises:
        ScriptNotFound: the file is missing, unreadable, or does not compile.
    """
    script = Path(path)
    try:
        source = script.read_bytes()
    except OSError as exc:
        raise ScriptNotFound(str(script), exc.strerror or str(exc)) from None
    try:
        return compile(source, str(script), "exec")
    except SyntaxError as exc:
        raise ScriptNotFound(str(script), f"line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes on some Pythons
        raise ScriptNotFound(str(script), str(exc)) from None


def commit_script(
    repo: Repo,
    path: str | Path,
    args: list[str],
    *,
    message: str = "",
    branch: str | None = None,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    progress: Progress | None = None,
    code: CodeType | None = None,
    report: Callable[[ScriptCommit], None] = lambda done: None,
) -> ScriptCommit:
    """Run a script and commit the state it leaves, whatever happens to it.

    Everything that can be checked before the script runs is: the script
    compiles, the branch can be committed to, the store can be written (and
    its write lock had). ``report`` is called with the result once the state
    is committed (also when ``os._exit`` ends the process right after).

    Raises:
        ScriptNotFound, InvalidRefName, NotABranch, StoreWriteError, StoreLocked:
            before the script runs; nothing ran.
    """
    code = load_script(path) if code is None else code
    if branch is not None:
        repo.check_branch(branch)
    repo.check_writable()
    parent = os.getpid()
    text = message or f"run {Path(path).name}"

    def finish(run: ScriptRun) -> ScriptCommit:
        if os.getpid() != parent:
            return ScriptCommit(run, in_child=True)
        done = _commit_run(repo, run, text, branch, only, exclude, progress)
        report(done)
        return done

    with running_script(path, args, code, on_os_exit=finish) as run:
        return finish(run)


def _commit_run(
    repo: Repo,
    run: ScriptRun,
    text: str,
    branch: str | None,
    only: Iterable[str] | None,
    exclude: Iterable[str] | None,
    progress: Progress | None,
) -> ScriptCommit:
    if run.failure is not None:
        text = f"{text} [failed: {run.failure}]"
    target = branch or repo.head
    before = repo.storage.reader.find_ref(target)
    try:
        made = repo.commit(
            text, namespace=run.namespace, branch=branch, only=only, exclude=exclude,
            progress=progress,
        )
        return ScriptCommit(run, commit=made)
    except KeyboardInterrupt:
        repo.wait()  # a write already handed over ends (or fails) on its own
        after = repo.storage.reader.find_ref(target)
        moved = after is not None and (before is None or after.commit_id != before.commit_id)
        landed = repo.show(after.commit_id) if moved and after is not None else None
        return ScriptCommit(run, commit=landed, interrupted=True)
    except (StashError, OSError) as exc:
        try:
            rescued = _rescue(run.namespace, text)
        except (StashError, OSError) as again:
            exc.__context__ = again
            return ScriptCommit(run, problem=exc)
        return ScriptCommit(run, rescued=rescued, problem=exc)


def _rescue(namespace: dict[str, Any], message: str) -> str:
    """Commit ``namespace`` to a new store in a temporary directory; where that is."""
    directory = Path(tempfile.mkdtemp(prefix="stashdb-rescue-"))
    store_dir = directory / ".stashdb"
    store_dir.mkdir()
    rescue = Repo.open(sqlite_url(store_dir / "stash.db"), create=True, location=str(store_dir))
    try:
        rescue.commit(f"{message} [rescued]", namespace=namespace)
    finally:
        rescue.close()
    return str(directory)


@contextlib.contextmanager
def running_script(
    path: str | Path,
    args: list[str],
    code: CodeType | None = None,
    *,
    on_os_exit: Callable[[ScriptRun], object] | None = None,
) -> Iterator[ScriptRun]:
    """Run ``path`` as ``__main__`` with ``sys.argv[1:] = args``; yield its end state.

    Inside the ``with`` block the script's module is still ``__main__``, so its
    classes and functions resolve by name while they are committed. Threads
    the script started and did not make daemons are joined first.
    ``on_os_exit`` is called with the state if the script calls ``os._exit``
    (in this process; a forked child just exits), before the process ends.

    Raises:
        ScriptNotFound: the file is missing, unreadable, or does not compile (when
            ``code`` is not given).
    """
    script = Path(path)
    if code is None:
        code = load_script(script)
    saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else None
    sys.argv = [str(script), *args]
    if sys.path:
        sys.path[0] = str(script.resolve().parent)
    with main_module() as module:
        module.__dict__["__file__"] = str(script.resolve())  # as `python SCRIPT` (3.9+)
        run = ScriptRun(module.__dict__, 0)
        threads_before = set(threading.enumerate())
        with _os_exit_calls(run, on_os_exit):
            _execute(code, module.__dict__, run)
            _join_new_threads(threads_before)
        try:
            yield run
        finally:
            sys.argv = saved_argv
            if saved_path0 is not None:
                sys.path[0] = saved_path0


def _execute(code: CodeType, namespace: dict[str, Any], run: ScriptRun) -> None:
    try:
        exec(code, namespace)
    except SystemExit as exc:
        run.exit_code = _exit_status(exc.code)
    except BaseException as exc:  # the script's own failure, Ctrl-C included
        run.error = exc
        run.exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        # Drop our own frame (the exec call) from what the user sees.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        run.traceback = "".join(traceback.format_exception(type(exc), exc, tb))


def _join_new_threads(before: set[threading.Thread]) -> None:
    """Wait for the script's own non-daemon threads, as the interpreter does at exit."""
    for thread in threading.enumerate():
        if thread not in before and not thread.daemon and thread is not threading.current_thread():
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop waiting, commit
                thread.join()


@contextlib.contextmanager
def _os_exit_calls(
    run: ScriptRun, on_os_exit: Callable[[ScriptRun], object] | None
) -> Iterator[None]:
    """While the script runs, ``os._exit(n)`` first hands its state to ``on_os_exit``."""
    real_exit = os._exit
    parent = os.getpid()

    def exit_after_saving(status: int) -> None:
        if on_os_exit is not None and os.getpid() == parent:
            run.exit_code, run.os_exit = status, True
            try:
                on_os_exit(run)
            finally:
                sys.stdout.flush()  # os._exit flushes nothing; what we printed must show
                sys.stderr.flush()
                real_exit(status)
        real_exit(status)

    os._exit = exit_after_saving  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = real_exit


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # as the interpreter does for sys.exit("message")
    return 1
