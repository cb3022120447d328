"""Snapshots made by a forked child, as Redis' background save: the cell only forks.

``fork()`` gives the child a copy-on-write image of the whole process as it is
when the cell ends; the child pickles, hashes and writes from that image while
the parent runs the next cell, so the next cell may change the same objects at
once without touching what is being written. Forking costs the parent its page
tables (0.5 ms per GiB of numpy buffers, which use huge pages; about 12 ms per
GiB of small Python objects, docs/performance.md), nothing more.

A child is started at once but waits for its *handoff* (the commit it builds on,
known only once the snapshot before it has landed) on a pipe: `ForkedChild.hand`
sends it, `ForkedChild.result` reads what the child sends back, and
`ForkedChild.cancel` ends a child that has not started (a newer snapshot took
its place). The child:

- closes every other child's pipe it inherited, so that when the parent dies
  (``kill -9``) a child waiting for its handoff reads end-of-file and exits
  rather than waiting forever;
- ignores SIGINT (Ctrl-C in a terminal reaches the whole process group: it is
  meant for the user's cell, not for the snapshot);
- never prints, never runs ``atexit`` handlers and never flushes the parent's
  buffers (``os._exit``), and uses no lock another thread of the parent may
  have held at the fork: it opens its own connections to the store, and sends
  output nowhere but its pipe (a kernel's stdout is a socket other threads own);
- pauses the garbage collector: a collection would write to every object's
  header and copy the page it sits on;
- runs at a lower priority (``nice`` 10), so that the user's next cell gets
  the CPU first on a machine with few cores.

The parent freezes its own collector's view of the objects that exist at the
fork (``gc.freeze``) while a child lives, for the same reason: a full
collection in the parent would otherwise copy every page of Python objects.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stashdb.errors import SnapshotLost
from stashdb.model import Commit, SnapshotCost
from stashdb.workspace.capture import Prior

__all__ = [
    "STALL_SECONDS",
    "Amendment",
    "ForkedChild",
    "ForkedSnapshot",
    "Handoff",
    "Landed",
    "can_fork",
    "private_bytes",
    "reap_cancelled",
    "still_working",
    "threads_allow_fork",
]

#: In a child: when it began (``time.perf_counter``), right after the fork.
child_began = 0.0
#: Pipe ends of the children alive, which a newer child must close.
_open_pipes: set[int] = set()
_children_alive = 0
#: Children cancelled but not yet reaped (they exit on their own).
_cancelled: list[ForkedChild] = []
_lock = threading.Lock()


def can_fork() -> bool:
    """Whether snapshots can be made by a forked child here (Linux: yes).

    macOS has ``fork`` but its system libraries are not safe to use in a child
    of a process with threads, and Windows has none: there the snapshot is
    pickled on the cell's thread and written on the Repo's writer thread.
    """
    return hasattr(os, "fork") and sys.platform.startswith("linux")


def private_bytes() -> int:
    """Memory this process holds that no other shares (for a child: what its image cost)."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


class ForkedChild:
    """A child process that runs ``work(handoff)`` on its image of the parent."""

    def __init__(self, work: Callable[[Any], Any]) -> None:
        global _children_alive
        reap_cancelled()
        handoff_read, handoff_write = os.pipe()
        result_read, result_write = os.pipe()
        with _lock:
            if _children_alive == 0:
                gc.freeze()
            _children_alive += 1
            inherited = set(_open_pipes)
            with _ipython_history_left_running():
                pid = os.fork()
            if pid == 0:  # the child: never returns
                _run_child(work, handoff_read, result_write, inherited | {handoff_write,
                                                                          result_read})
            _open_pipes.update((handoff_write, result_read))
        os.close(handoff_read)
        os.close(result_write)
        self.pid = pid
        self._handoff, self._result = handoff_write, result_read
        self._ended = False

    def hand(self, handoff: Any) -> None:
        """Send the child what it builds on; it starts now."""
        try:
            _write_all(self._handoff, pickle.dumps(handoff, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # it died already: result() says how
            pass
        finally:
            self._close(self._handoff)

    def result(self) -> Any:
        """Wait for the child's result; raise what it raised.

        Raises:
            SnapshotLost: the child died before sending a result (killed, out of memory).
        """
        try:
            data = _read_all(self._result)
        finally:
            self._close(self._result)
            status = self._reap()
        if not data:
            raise SnapshotLost(_how_it_ended(self.pid, status))
        outcome, value = pickle.loads(data)
        if outcome == "error":
            raise value
        return value

    def cancel(self) -> None:
        """End a child that was never handed anything (its snapshot is not needed).

        Closing its handoff pipe makes it exit on its own; it is reaped later
        (`reap_cancelled`), since waiting for the kernel to tear down a large
        image costs milliseconds the cell should not pay.
        """
        self._close(self._handoff)
        self._close(self._result)
        with _lock:
            _cancelled.append(self)

    def _close(self, fd: int) -> None:
        with _lock:
            if fd in _open_pipes:
                _open_pipes.discard(fd)
            else:
                return
        os.close(fd)

    def _reap(self, *, wait: bool = True) -> int:
        global _children_alive
        if self._ended:
            return 0
        try:
            pid, status = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a SIGCHLD handler)
            pid, status = self.pid, 0
        if pid == 0:
            return 0  # still exiting
        self._ended = True
        with _lock:
            _children_alive -= 1
            if _children_alive == 0:
                gc.unfreeze()
        return status


#: Seconds a child may go without progress before it is ended (SIGALRM's default
#: action), so that a hang no test foresaw -- a library's lock or thread pool
#: that did not survive the fork -- costs one lost snapshot, not every later one.
STALL_SECONDS = 300


def still_working(done: int = 0, total: int = 0) -> None:
    """In a child: it made progress (a value pickled, a batch written); re-arm its watchdog."""
    if child_began:
        signal.alarm(STALL_SECONDS)


def reap_cancelled(*, wait: bool = False) -> None:
    """Reap the cancelled children that have exited (all of them, waiting, with ``wait``)."""
    with _lock:
        cancelled = list(_cancelled)
    for child in cancelled:
        child._reap(wait=wait)
        if child._ended:
            with _lock:
                _cancelled.remove(child)


def _run_child(
    work: Callable[[Any], Any], handoff_fd: int, result_fd: int, close: set[int]
) -> None:
    """The child's whole life: wait for the handoff, work, send the outcome, exit."""
    global child_began
    child_began = time.perf_counter()
    code = 0
    try:
        gc.disable()
        with contextlib.suppress(OSError):
            os.nice(10)  # on a machine with few cores, the user's next cell comes first
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process ends)
        data = _read_all(handoff_fd)
        if not data:
            os._exit(0)  # cancelled, or the parent is gone: nothing to do
        handoff = pickle.loads(data)
        still_working(0, 0)
        try:
            outcome: tuple[str, Any] = ("ok", work(handoff))
        except BaseException as exc:  # sent to the parent, which raises it
            outcome = ("error", _sendable(exc))
        _write_all(result_fd, pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:  # the parent sees no result: SnapshotLost
        code = 1
    finally:
        os._exit(code)


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a SnapshotLost that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return SnapshotLost(f"the snapshot failed: {type(exc).__name__}: {exc}")
    return exc


def threads_allow_fork() -> bool:
    """Whether every other thread waits, so that forking now is safe (else: snapshot in the cell).

    A child is a copy of the whole process with one thread; a lock another
    thread held inside native code at the fork stays held in the child forever,
    and some locks bite the parent too. Two real ones: OpenBLAS registers a
    ``pthread_atfork`` handler that stops its worker threads before every fork;
    if another thread is inside a multi-threaded BLAS call then (``a @ a`` in
    the user's thread pool), the handler takes the queue away from a worker
    that call waits on, and both wait forever -- a hang found by
    tests/test_never_wait.py (changing OpenBLAS's flags around the fork only
    moved the race). And SQLite keeps process-wide mutexes, which the child
    needs to open the store, while another thread is inside a query.

    A fork holds the GIL, so no thread can *begin* native work during it; only
    a thread already running native code can hold such a lock. So the fork is
    refused when another thread's innermost frame is not one of the waits every
    kernel's threads sit in (locks, queues, selectors, ZeroMQ, sockets):
    such a thread may be computing. (Our own writer thread is kept out of the
    database during a fork by `stashdb.background.BackgroundWriter.quiet`.)
    """
    if threading.active_count() == 1:
        return True
    me = threading.get_ident()
    return all(ident == me or _waiting(frame.f_code.co_filename)
               or frame.f_code.co_filename.endswith(_IPYTHON_HISTORY)
               for ident, frame in sys._current_frames().items())


#: IPython's history thread writes each cell's input as the cell ends; busy, it
#: is stopped before the fork by IPython's own fork handler, which waits for it
#: (see `_ipython_history_left_running`).
_IPYTHON_HISTORY = os.path.join("IPython", "core", "history.py")


#: Where a thread that waits sits: its innermost frame is in one of these files.
_WAITS = ("threading.py", "queue.py", "selectors.py", "socket.py", "ssl.py", "subprocess.py",
          "/asyncio/", "/concurrent/futures/", "/zmq/", "/tornado/", "/ipykernel/",
          "/jupyter_client/", "/stashdb/")


def _waiting(filename: str) -> bool:
    return any(part in filename for part in _WAITS)


@contextlib.contextmanager
def _ipython_history_left_running() -> Iterator[None]:
    """Fork without IPython stopping its history thread, when that thread waits.

    IPython registers an ``os.register_at_fork`` handler that stops (joins) the
    thread saving its input history before every fork: 8 ms a fork, measured in
    a kernel, most of a small cell's cost. The thread is stopped so that no
    child inherits it mid-query; when it waits for its next batch (its frame is
    in ``threading.py``) it holds nothing, and it is woken only by the main
    thread, which is forking. Then the handler is shown no instances to stop.
    """
    manager = getattr(sys.modules.get("IPython.core.history"), "HistoryManager", None)
    instances = getattr(manager, "_instances", None)
    threads = [getattr(i, "save_thread", None) for i in instances or ()]
    frames = sys._current_frames()
    idle = all(t is None or t.ident not in frames
               or frames[t.ident].f_code.co_filename.endswith("threading.py") for t in threads)
    if manager is None or instances is None or not idle:
        yield
        return
    manager._instances = type(instances)()
    try:
        yield
    finally:
        manager._instances = instances



def _how_it_ended(pid: int, status: int) -> str:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        return (f"the snapshot process {pid} made no progress for {STALL_SECONDS} s and was "
                "ended (a lock or thread pool that did not survive the fork?); the next "
                "snapshot captures what it held")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return (f"the snapshot process {pid} was killed ({name}) before it finished; "
                "the next snapshot captures what it held")
    return (f"the snapshot process {pid} ended (status {os.waitstatus_to_exitcode(status)}) "
            "without a result; the next snapshot captures what it held")


def _read_all(fd: int) -> bytes:
    parts: list[bytes] = []
    while True:
        part = os.read(fd, 1 << 20)
        if not part:
            return b"".join(parts)
        parts.append(part)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass(frozen=True)
class Handoff:
    """What a child builds on, known once the snapshots before it have landed."""

    base: Commit | None  # the last snapshot that landed (None: capture everything)
    priors: Mapping[str, Prior]  # its fingerprints
    also: frozenset[str]  # names owed by snapshots that did not land: captured too


@dataclass(frozen=True)
class Landed:
    """What a child made: its commit (None: nothing had changed) and what it cost."""

    commit: Commit | None
    priors: dict[str, Prior]  # fingerprints of the state it captured, for the next one
    cost: SnapshotCost


class ForkedSnapshot:
    """A snapshot whose child is started; `cancel` ends it if it has not begun.

    Until it begins it may be *amended*: a later cell that changed only small,
    immutable values (numbers, strings) hands it those values instead of
    forking again, and the child puts them into its image before capturing --
    so its commit is the later cell's state, at the cost of a pickled int.
    """

    def __init__(self, child: ForkedChild) -> None:
        self.child = child
        #: Its commit once landed (None: nothing had changed, or cancelled); set by the Repo.
        self.future: Future[Commit | None]
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "started" or "cancelled"
        self._amendment = Amendment()

    def start(self) -> Amendment | None:
        """Mark it begun and return what later cells amended; None when it was cancelled first."""
        with self._lock:
            if self._state == "cancelled":
                return None
            self._state = "started"
            return self._amendment

    def cancel(self) -> bool:
        """End the child unless it has begun; whether it was ended."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "cancelled"
        self.child.cancel()
        return True

    def amend(self, message: str, values: Mapping[str, Any], removed: Iterable[str]) -> bool:
        """Make it the snapshot of a later cell that set ``values`` and deleted ``removed``.

        False when it has begun (or was cancelled): then the later cell needs
        a snapshot of its own. ``values`` are pickled now, so the cell may
        change them at once.
        """
        data = pickle.dumps(dict(values), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._state != "waiting":
                return False
            self._amendment = self._amendment.then(message, data, frozenset(removed))
            return True


@dataclass(frozen=True)
class Amendment:
    """What cells after a forked snapshot's own changed, for the child to apply first."""

    message: str | None = None  # the last amending cell's, replacing the snapshot's own
    pickled: tuple[bytes, ...] = ()  # each cell's values, in order
    removed: tuple[frozenset[str], ...] = ()  # each cell's deleted names

    def then(self, message: str, pickled: bytes, removed: frozenset[str]) -> Amendment:
        """This amendment followed by one more cell's."""
        return Amendment(message, (*self.pickled, pickled), (*self.removed, removed))

    def apply(self, namespace: MutableMapping[str, Any]) -> set[str]:
        """Put the cells' values into ``namespace`` (the child's image), in order; their names."""
        names: set[str] = set()
        for data, removed in zip(self.pickled, self.removed, strict=True):
            values = pickle.loads(data)  # what this process pickled a moment ago, nothing else
            namespace.update(values)
            for name in removed:
                namespace.pop(name, None)
            names |= set(values) | removed
        return names
