"""The one writer of a Repo: writes happen one at a time, in the order they are asked for.

A front end that must not wait for the disk (the IPython extension after each
cell, a session after each execution) hands a prepared commit to
`BackgroundWriter.submit` and goes on; the write runs on the Repo's writer
thread. Everything else the Repo writes (a commit from a script, a tag, gc)
goes through `BackgroundWriter.run`, which first waits for the writes in
flight and then writes *on the caller's thread*: Ctrl-C interrupts it and its
transaction rolls back, as it would without a writer thread, and a write made
while the interpreter shuts down (an ``atexit`` handler) still works. One lock
keeps the two kinds apart, so the order of writes is the order they were asked
for, and reads call `BackgroundWriter.settle` first: they see every write asked
for before them.

A write that only waits for a forked child (`Repo.fork_changes`) does not
touch the database in this process; every other write does, and holds
`BackgroundWriter.quiet`'s lock while it runs: a fork waits for it, because
SQLite keeps its locks' bookkeeping in process memory, and a child forked in
the middle of a transaction would inherit a lock it can never release.

The thread ends with the interpreter, after the queued writes
(``concurrent.futures`` joins its workers at exit), so the last snapshot of a
session is written before the process exits. After ``fork()`` the child starts
with no writer, no writes in flight (those are the parent's) and fresh locks:
a lock the parent held at the fork would otherwise stay held in the child.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TypeVar

__all__ = ["BackgroundWriter"]

_T = TypeVar("_T")


class BackgroundWriter:
    """A single-thread executor for one Repo's writes, and the lock every write takes."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._state = threading.Lock()  # guards the fields below
        self._writing = threading.RLock()  # held by the one write under way
        self._in_database = threading.RLock()  # held while a write uses the database here
        self._local = threading.local()  # .writing: this thread is inside a write
        self._executor: futures.ThreadPoolExecutor | None = None
        self._pending: set[futures.Future[object]] = set()
        self._thread: int | None = None

    def submit(self, write: Callable[[], _T], *, here: bool = True) -> futures.Future[_T]:
        """Queue ``write`` behind the writes in flight; its future holds its result or error.

        ``here=False``: the write only waits for another process (a forked
        child) and does not use the database in this one (see `quiet`).
        While the interpreter shuts down no thread can start: then ``write``
        runs here and now, and the future is already done.
        """
        self._after_fork()
        with self._state:
            try:
                if self._executor is None:
                    self._executor = futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="stashdb-writer",
                        initializer=self._note_thread,
                    )
                future = self._executor.submit(self._locked, write, here)
            except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
                future = None
            else:
                self._pending.add(future)  # type: ignore[arg-type]
        if future is None:
            return _done_now(lambda: self.run(write))
        future.add_done_callback(self._done)  # type: ignore[arg-type]
        return future

    def run(self, write: Callable[[], _T]) -> _T:
        """Run ``write`` on this thread after the writes in flight; return its result (or raise)."""
        if self._inside_a_write():
            return write()  # a write that writes: already in order, already locked
        self.settle()
        return self._locked(write)

    def settle(self) -> None:
        """Wait until every write asked for so far has run (their errors are their futures')."""
        self._after_fork()
        if self._inside_a_write():
            return  # those queued behind this write wait for it, not it for them
        with self._state:
            pending = list(self._pending)
        futures.wait(pending)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Hold off every write that uses the database in this process (for a fork)."""
        self._after_fork()
        with self._in_database:
            yield

    def on_writer_thread(self) -> bool:
        """Whether the caller is the writer thread itself."""
        return self._thread == threading.get_ident() and self._pid == os.getpid()

    def close(self) -> None:
        """Wait for the writes in flight, then stop the thread (a later write starts another)."""
        self._after_fork()
        with self._state:
            executor, self._executor = self._executor, None
        if executor is not None and not self.on_writer_thread():
            executor.shutdown(wait=True)

    def _locked(self, write: Callable[[], _T], here: bool = True) -> _T:
        with self._writing, self._in_database if here else contextlib.nullcontext():
            self._local.writing = True
            try:
                return write()
            finally:
                self._local.writing = False

    def _inside_a_write(self) -> bool:
        return bool(getattr(self._local, "writing", False)) and self._pid == os.getpid()

    def _after_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's writer and locks are not ours
            self._pid = os.getpid()
            self._state, self._writing = threading.Lock(), threading.RLock()
            self._in_database = threading.RLock()
            self._local = threading.local()
            self._executor, self._pending, self._thread = None, set(), None

    def _note_thread(self) -> None:
        self._thread = threading.get_ident()

    def _done(self, future: futures.Future[object]) -> None:
        with self._state:
            self._pending.discard(future)


def _done_now(write: Callable[[], _T]) -> futures.Future[_T]:
    """A future that already holds what ``write`` returned or raised."""
    future: futures.Future[_T] = futures.Future()
    try:
        future.set_result(write())
    except BaseException as exc:  # the caller reads it from the future
        future.set_exception(exc)
    return future
