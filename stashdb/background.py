"""The one writer of a Repo: writes run on one thread, one at a time, in the order asked.

A front end that must not wait for the disk (the IPython extension after each
cell, a session after each execution) hands a prepared commit to
`BackgroundWriter.submit` and goes on; everything else the Repo writes (a
commit from a script, a tag, gc) goes through `BackgroundWriter.run`, which
queues behind the writes in flight, so the order of writes is the order they
were asked for. Reads call `BackgroundWriter.settle` first and see every write
asked for before them.

The thread ends with the interpreter, after the queued writes
(``concurrent.futures`` joins its workers at exit), so the last snapshot of a
session is written before the process exits. After ``fork()`` the child starts
with no writer and no writes in flight: those are the parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

__all__ = ["BackgroundWriter"]

_T = TypeVar("_T")


class BackgroundWriter:
    """A single-thread executor for one Repo's writes, safe across ``fork()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: futures.ThreadPoolExecutor | None = None
        self._pending: set[futures.Future[object]] = set()
        self._thread: int | None = None
        self._pid = os.getpid()

    def submit(self, write: Callable[[], _T]) -> futures.Future[_T]:
        """Queue ``write`` behind the writes in flight; its future holds its result or error."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's writer is not ours
                self._executor, self._pending, self._thread = None, set(), None
                self._pid = os.getpid()
            if self._executor is None:
                self._executor = futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="stashdb-writer",
                    initializer=self._note_thread,
                )
            future = self._executor.submit(write)
            self._pending.add(future)  # type: ignore[arg-type]
        future.add_done_callback(self._done)  # type: ignore[arg-type]
        return future

    def run(self, write: Callable[[], _T]) -> _T:
        """Run ``write`` after the writes in flight, and return what it returns (or raise)."""
        if self.on_writer_thread():
            return write()  # a write that writes: already in order
        return self.submit(write).result()

    def settle(self) -> None:
        """Wait until every write asked for so far has run (their errors are their futures')."""
        if self.on_writer_thread():
            return
        with self._lock:
            pending = list(self._pending) if self._pid == os.getpid() else []
        futures.wait(pending)

    def on_writer_thread(self) -> bool:
        """Whether the caller is the writer thread itself."""
        return self._thread == threading.get_ident() and self._pid == os.getpid()

    def close(self) -> None:
        """Wait for the writes in flight, then stop the thread (a later write starts another)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid() and not self.on_writer_thread():
            executor.shutdown(wait=True)

    def _note_thread(self) -> None:
        self._thread = threading.get_ident()

    def _done(self, future: futures.Future[object]) -> None:
        with self._lock:
            self._pending.discard(future)
