"""Session: run code step by step with persistent, snapshottable, crash-proof state.

The host side of a session. It owns a runner (a worker process, or the host
itself with ``isolated=False``) that keeps the namespace and commits the state
after each successful execution on the session's branch; the host keeps what
survives the runner: the branch, the commit the state equals (``head``), the
execution count, the steps ``undo`` goes back through, and the callbacks.
When a worker dies (a timeout, a crash, the memory limit), a new one is
forked and restores ``head``: the session is back at its last successful
execution, and says so. docs/sessions.md is the guide.
"""

# long: one class, the session's documented API, one short method per operation;
# running, committing and restoring live in runners.py and runtime.py.

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import Any

from stashdb import api
from stashdb.errors import (
    ExecutionTimeout,
    InvalidArguments,
    MemoryLimitExceeded,
    NothingToUndo,
    RefNotFound,
    SessionClosed,
    SessionError,
    WorkerCrashed,
)
from stashdb.model import Commit, Rev, Version
from stashdb.repo import Repo
from stashdb.session import catalog
from stashdb.session.callbacks import callbacks_of
from stashdb.session.files import DEFAULT_IGNORE, FileRules
from stashdb.session.protocol import WorkerConfig
from stashdb.session.results import ExecutionResult
from stashdb.session.runners import (
    LocalRunner,
    Runner,
    WorkerDied,
    WorkerRunner,
    WorkerTimedOut,
    answer_call,
    in_main_thread,
    workdir_of,
)
from stashdb.session.sizes import size_in_bytes

__all__ = ["Session"]

RepoLike = Repo | str | os.PathLike[str] | None


class Session:
    """A Python interpreter whose state is committed to a stashdb store after every step.

    Args:
        repo: the store (a Repo, a directory, a SQLite file or a database URL;
            None: the default store, as `stashdb.open` finds or makes it).
        branch: the session's branch (default ``session/<id>``). A branch that
            exists is continued from its tip.
        isolated: run the code in a worker process (default), which a
            timeout, a crash or the memory limit kills alone. False: in this
            process, faster, with no kill (a timeout interrupts pure Python
            code, on the main thread only).
        timeout: seconds an execution may run (None: no limit).
        memory_limit: bytes (or ``"512MB"``) the code may add to a fresh
            worker's address space.
        callbacks: host functions the code may call, ``{name: fn}`` or
            ``[{"name": …, "fn": …, "description": …}]``.
        workdir: a directory the code runs in, whose files are part of the state.
        autocommit: commit the state after every successful execution.
        max_file_size, max_total_size: the largest file and the most bytes of
            files stored (bigger ones are recorded as skipped).
        ignore: glob patterns of files and directories never stored.

    Raises:
        InvalidArguments: a setting that cannot be used.
        NotABranch: ``branch`` names a tag.
    """

    def __init__(
        self,
        repo: RepoLike = None,
        branch: str | None = None,
        *,
        isolated: bool = True,
        timeout: float | None = None,
        memory_limit: int | str | None = None,
        callbacks: Any = None,
        workdir: str | os.PathLike[str] | None = None,
        autocommit: bool = True,
        max_file_size: int | str = FileRules.max_file_size,
        max_total_size: int | str = FileRules.max_total_size,
        ignore: Iterable[str] = DEFAULT_IGNORE,
    ) -> None:
        self.repo: Repo = api.open(repo, create=True)
        self.branch = branch if branch is not None else f"session/{uuid.uuid4().hex[:8]}"
        self.isolated = bool(isolated)
        self.timeout = _seconds(timeout)
        self.memory_limit = None if memory_limit is None else size_in_bytes(memory_limit)
        if self.memory_limit is not None and not self.isolated:
            raise InvalidArguments("memory_limit needs isolated=True (a worker process)")
        self.autocommit = bool(autocommit)
        self.callbacks = callbacks_of(callbacks)
        self.rules = FileRules(size_in_bytes(max_file_size), size_in_bytes(max_total_size),
                               tuple(ignore))
        self.workdir = workdir_of(workdir)
        if self.workdir is not None:
            keys = self.repo.keyring.directory.expanduser().resolve()
            if keys.is_relative_to(self.workdir):
                raise InvalidArguments(
                    f"the working directory {self.workdir} holds your key directory {keys}: "
                    "its files would be stored (your private key among them); choose another"
                )
        #: Executions since the session started (continued by `resume`) or was reset.
        self.execution_count = 0
        self._lock = threading.RLock()
        self._closed = False
        self._closing = False
        self._undo: list[str] = []  # the state before each step, newest last
        self._warnings: list[str] = []  # said by the next result
        self._loop: asyncio.AbstractEventLoop | None = None  # set by AsyncSession
        self.repo.check_branch(self.branch)
        self.head, new = self._start_branch()
        self._record = catalog.record(self.repo, self.branch, self.workdir)
        if self.workdir is not None:  # on this machine, for `resume` (never read from the store)
            catalog.remember_workdir(self.repo, self.branch, self.workdir)
        self._runner: Runner | None = None
        self._runner = self._new_runner(self.head, restore=not new)
        if new and self.workdir is not None:  # the files it found are where undo ends
            self.head = self._ask("commit", message=catalog.FOUND_FILES)[0]

    # -- starting -----------------------------------------------------------------------

    @classmethod
    def resume(cls, branch: str, repo: RepoLike = None, **settings: Any) -> Session:
        """Re-attach to the session on ``branch`` (in a new process, or on another machine).

        The state is the branch's tip, files included; ``execution_count``
        goes on from the session's. ``settings`` are those of `Session`; the
        working directory, unless given, is the one the session was started
        with on this machine (noted in the user's key directory), if it exists.

        Raises:
            RefNotFound: there is no such branch.
        """
        opened = api.open(repo, create=False)
        ref = opened.storage.reader.find_ref(branch)
        if ref is None or ref.kind != "branch":
            raise RefNotFound("branch", branch)
        if "workdir" not in settings:
            # Where this machine ran it, from the user's own record: the store's record
            # is anyone's to write, and a directory taken from it would be stored
            # (and, after a crash, made exactly the state's).
            remembered = catalog.remembered_workdir(opened, branch)
            if remembered is not None and os.path.isdir(remembered):
                settings["workdir"] = remembered
        return cls(opened, branch, **settings)

    def _start_branch(self) -> tuple[str, bool]:
        """The commit the state starts from (the branch's tip, or a new empty root); new?"""
        ref = self.repo.storage.reader.find_ref(self.branch)
        if ref is not None:
            self.execution_count = catalog.executions_so_far(self.repo, self.branch)
            return ref.commit_id, False
        root = self.repo.commit_manifest((), catalog.STARTED, branch=self.branch, root=True)
        return root.id, True

    def _config(self, base: str | None, restore: bool, exact_files: bool) -> WorkerConfig:
        return WorkerConfig(
            url=self.repo.url, lock_timeout=self.repo.lock_timeout, branch=self.branch,
            base=base, restore=restore, exact_files=exact_files,
            workdir=self.workdir, rules=self.rules,
            callbacks=tuple((c.name, c.description) for c in self.callbacks.values()),
            memory_limit=self.memory_limit, cwd=os.getcwd(),
            sys_path=tuple(p for p in sys.path if p),
        )

    def _new_runner(
        self, base: str | None, *, restore: bool = True, exact_files: bool = False
    ) -> Runner:
        """A runner whose state is ``base``: restored (resume, recovery) or taken as it is."""
        config = self._config(base, restore, exact_files)
        runner: Runner
        if self.isolated:
            runner = WorkerRunner(config, self._answer_call)
        else:
            runner = LocalRunner(config, self.repo, self.callbacks, lambda: self._loop)
        kind, value = runner.start_reply
        if kind == "failed":
            runner.kill()
            raise value if isinstance(value, BaseException) else SessionError(str(value), None)
        self._warnings += value[1]
        return runner

    def _answer_call(self, name: str, payload: bytes) -> tuple[bool, bytes, BaseException | None]:
        return answer_call(self.callbacks, name, payload, self._loop)

    # -- running code -------------------------------------------------------------------

    def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run ``code`` in the session; the state after it is committed (with autocommit).

        The code's own exceptions are not raised here: ``result.ok`` is False
        and ``result.error`` says what it raised (`ExecutionResult.raise_for_error`).

        Raises:
            ExecutionTimeout: it ran past the timeout; the worker was killed.
            WorkerCrashed: the worker died (``exit_code`` or ``signal``).
            MemoryLimitExceeded: the code needed more than ``memory_limit``.
                After each of these the session is back at its last
                successful execution's state, restored from the store.
            SessionClosed: the session is closed.
        """
        if not isinstance(code, str):
            raise InvalidArguments(f"code must be a str, not {type(code).__name__}")
        with self._lock:
            runner = self._live_runner()
            self.execution_count += 1
            seconds = _seconds(timeout) if timeout is not None else self.timeout
            if seconds is not None and not self.isolated and not in_main_thread():
                raise InvalidArguments(
                    "a timeout with isolated=False works on the main thread only"
                )
            before = self.head
            arguments = {"code": code, "count": self.execution_count,
                         "autocommit": self.autocommit}
            try:
                reply = runner.request("execute", arguments, seconds)
            except WorkerTimedOut:
                self._recover("the code ran past its timeout")
                raise ExecutionTimeout(seconds or 0.0, self.head) from None
            except WorkerDied as died:
                raise self._crashed(died.exit_code) from None
            except KeyboardInterrupt:
                reply = runner.interrupted()
                if reply is None and self.isolated:
                    self._recover("Ctrl-C")
                elif reply is not None:
                    self._take(reply, before)
                raise
            return self._take(reply, before)

    def _take(self, reply: Any, before: str) -> ExecutionResult:
        kind, value = reply
        if kind == "failed":
            raise value
        if kind == "memory":
            self._recover("the code passed its memory limit")
            raise MemoryLimitExceeded(self.memory_limit or 0, self.head)
        result: ExecutionResult = value
        if result.commit != before:  # a change, or a failure that may have made one
            self._undo.append(before)
        if result.commit is not None:
            self.head = result.commit
        if self._warnings:
            result = replace(result, warnings=[*self._warnings, *result.warnings])
            self._warnings = []
        return result

    def _crashed(self, exit_code: int | None) -> SessionError:
        if exit_code is not None and exit_code < 0:
            name = _signal_name(-exit_code)
            self._recover(f"the worker was killed by signal {-exit_code} ({name})")
            return WorkerCrashed(None, -exit_code, self.head)
        self._recover(f"the worker exited with status {exit_code}")
        return WorkerCrashed(exit_code, None, self.head)

    def _recover(self, why: str) -> None:
        """Replace the runner with a fresh one at ``head``: the last successful state."""
        if self._runner is not None:
            self._runner.kill()
        self._runner = None
        if self._closing:  # killed by close(): no new worker
            raise SessionClosed(self.branch)
        commit = self.repo.show(self.head)
        self._warnings.append(
            f"{why}; the state was restored from commit {commit.short_id}, the last successful "
            "execution's"
        )
        self._runner = self._new_runner(self.head, exact_files=True)

    def _live_runner(self) -> Runner:
        if self._closed:
            raise SessionClosed(self.branch)
        if self._runner is None:  # a recovery failed earlier (store away): try again
            self._runner = self._new_runner(self.head, exact_files=True)
        return self._runner

    def _ask(self, op: str, **arguments: Any) -> Any:
        """A request that is not an execution; a dead worker is replaced, and said so."""
        runner = self._live_runner()
        try:
            kind, value = runner.request(op, arguments, None)
        except WorkerDied as died:
            raise self._crashed(died.exit_code) from None
        if kind == "failed":
            raise value
        return value

    # -- state --------------------------------------------------------------------------

    def commit(self, message: str = "") -> Commit:
        """Commit the state now (with ``autocommit=False``, or after a failed execution)."""
        with self._lock:
            commit_id, warnings = self._ask("commit", message=message or "session commit")
            self.head = commit_id
            self._warnings += warnings
            return self.repo.show(commit_id)

    def clear_state(self) -> Commit:
        """Remove every name (the interpreter and its loaded modules stay); commit that state.

        The working directory's files stay, and stay part of the state.
        """
        with self._lock:
            before = self.head
            self.head = self._ask("clear", message="clear_state")
            self._undo.append(before)
            return self.repo.show(self.head)

    def reset(self) -> Commit:
        """A fresh interpreter in a new worker, an empty namespace; ``execution_count`` is 0.

        The empty state (with the working directory's files) is committed.
        """
        with self._lock:
            if self._closed:
                raise SessionClosed(self.branch)
            before = self.head
            if self._runner is not None:
                self._runner.close()
            self._runner = None
            self._runner = self._new_runner(self.head, restore=False)
            self.head = self._ask("clear", message=catalog.RESET)
            self.execution_count = 0
            self._undo.append(before)
            return self.repo.show(self.head)

    def snapshot_state(self) -> bytes:
        """The state as one self-contained byte string (a bundle, docs/format.md).

        Whatever its size; `restore_state` takes it in any session, process or
        machine. What is not committed yet is committed first.
        """
        with self._lock:
            commit_id, warnings = self._ask("commit", message="snapshot_state")
            self.head = commit_id
            self._warnings += warnings
            return self.repo.bundle(commit_id)

    def restore_state(
        self, blob: bytes | bytearray | memoryview, *, trust: bool = False
    ) -> Commit:
        """Replace the state with one `snapshot_state` made (here or anywhere).

        Its objects are added to this session's store (what is there already is
        not written again) and it becomes the tip of this session's branch. The
        state's commit must be signed by a key trusted here, unless ``trust``.

        Raises:
            BadBundle: the bytes are not a whole, sound state: nothing changed.
            UntrustedSnapshot, TamperedData: not signed by a trusted key, or not
                what was signed: nothing changed, nothing unpickled.
        """
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise InvalidArguments(f"a state is bytes, not {type(blob).__name__}")
        with self._lock:
            runner = self._live_runner()
            before = self.head
            arguments = {"message": "restore_state", "trust": trust}
            try:
                if isinstance(runner, WorkerRunner):
                    kind, value = runner.request_with_file("restore_bundle", arguments, blob)
                else:
                    kind, value = runner.request("restore_bundle", {**arguments, "data": blob},
                                                 None)
            except WorkerDied as died:
                raise self._crashed(died.exit_code) from None
            if kind == "failed":
                raise value
            self.head, warnings = value
            self._warnings += warnings
            self._undo.append(before)
            return self.repo.show(self.head)

    def checkout(self, rev: Rev) -> Commit:
        """Make the state that of ``rev`` (an id, a tag, ``session/ab12~2`` …); the branch moves."""
        with self._lock:
            self._live_runner()
            commit_id = self.repo.resolve(rev)
            return self._go_to(commit_id, f"checkout {commit_id[:8]}")

    def undo(self) -> Commit:
        """Go back one step: to the state before the last change; again, further back.

        A step is an `execute` that changed something (or failed), a
        `checkout`, `restore_state`, `clear_state` or `reset`. The branch moves
        to the state gone back to, as a new commit: nothing is lost.

        Raises:
            NothingToUndo: no step of this session to go back from.
        """
        with self._lock:
            self._live_runner()
            if not self._undo:
                raise NothingToUndo("nothing to undo: no step of this session yet")
            target = self.repo.show(self._undo[-1])
            back = f"undo: back to {target.short_id} ({target.message or 'no message'})"
            commit = self._go_to(target.id, back, remember=False)
            self._undo.pop()
            return commit

    def _go_to(self, commit_id: str, message: str | None, *, remember: bool = True) -> Commit:
        before = self.head
        state, warnings = self._ask("restore", commit_id=commit_id, message=message)
        if remember:
            self._undo.append(before)
        self.head = state
        self._warnings += warnings
        return self.repo.show(state)

    def fork(self, branch: str | None = None, **settings: Any) -> Session:
        """A new session starting from this state, on a new branch (no value is copied).

        ``settings`` are those of `Session`; by default, this session's, but for
        the working directory: two sessions never share one, so a fork of a
        session with files gets a new temporary directory (``workdir=`` to say
        where), holding the same files.

        Raises:
            RefExists: the branch exists.
            InvalidArguments: ``workdir`` is this session's own.
        """
        given = settings.get("workdir")
        if self.workdir is not None and given is not None and workdir_of(given) == self.workdir:
            raise InvalidArguments(
                f"the fork cannot share this session's working directory {self.workdir}: "
                "give it another"
            )
        if self.workdir is not None and "workdir" not in settings:
            settings["workdir"] = tempfile.mkdtemp(prefix="stashdb-fork-")
        with self._lock:
            commit_id, warnings = self._ask("commit", message="fork")
            self.head = commit_id
            self._warnings += warnings
            name = branch if branch is not None else f"session/{uuid.uuid4().hex[:8]}"
            self.repo.branch(name, commit_id)
            mine = {
                "isolated": self.isolated, "timeout": self.timeout,
                "memory_limit": self.memory_limit, "callbacks": self.callbacks_given(),
                "autocommit": self.autocommit,
                "max_file_size": self.rules.max_file_size,
                "max_total_size": self.rules.max_total_size, "ignore": self.rules.ignore,
            }
            forked = Session(self.repo, name, **{**mine, **settings})
            forked.execution_count = self.execution_count
            return forked

    def callbacks_given(self) -> dict[str, Any]:
        """The callbacks, as ``{name: fn}``."""
        return {name: cb.fn for name, cb in self.callbacks.items()}

    # -- history ------------------------------------------------------------------------

    def log(self, limit: int | None = None) -> list[Commit]:
        """The commits of the session's branch, newest first."""
        return self.repo.log(branch=self.branch, limit=limit)

    def history(self, name: str) -> list[Version]:
        """The versions of one variable (or ``file:<path>``) along the branch, newest first."""
        return self.repo.history(name, branch=self.branch)

    def show(self, rev: Rev | None = None) -> Commit:
        """The commit of the state now (or of ``rev``), with its entries. Unpickles nothing."""
        return self.repo.show(rev if rev is not None else self.head)

    @property
    def pid(self) -> int | None:
        """The worker's process id (None in-process, or between workers)."""
        return self._runner.pid if self._runner is not None else None

    # -- the end ------------------------------------------------------------------------

    def interrupt(self, *, kill: bool = False) -> None:
        """Interrupt the code running now, from another thread: it sees KeyboardInterrupt.

        With ``kill`` the worker is killed instead (the running `execute` raises
        `WorkerCrashed`, the session back at its last state). In-process there is
        no worker to signal: nothing happens.
        """
        runner = self._runner
        if isinstance(runner, WorkerRunner):
            if kill:
                runner.handle.kill()
            else:
                runner.handle.interrupt()

    def close(self) -> None:
        """Stop the worker; the state stays on the branch (`resume` opens it again).

        A worker busy with an execution (in another thread) is killed, not waited for.
        """
        if not self._lock.acquire(blocking=False):
            self._closing = True
            self.interrupt(kill=True)
            self._lock.acquire()
        try:
            if self._closed:
                return
            self._closed = True
            if self._runner is not None:
                self._runner.close()
                self._runner = None
        finally:
            self._lock.release()

    @property
    def closed(self) -> bool:
        """Whether `close` was called (and has begun: a busy worker is being stopped)."""
        return self._closed or self._closing

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None and not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # the interpreter may be shutting down
                runner.kill()

    def __repr__(self) -> str:
        where = "isolated" if self.isolated else "in-process"
        state = "closed" if self._closed else f"at {self.head[:8]}"
        count = self.execution_count
        return f"<stashdb.Session {self.branch} {where}, {count} executions, {state}>"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _seconds(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidArguments(f"timeout must be a number of seconds, not {value!r}") from None
    if not seconds > 0:
        raise InvalidArguments(f"timeout must be more than 0 seconds, not {value!r}")
    return seconds
