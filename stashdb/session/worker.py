"""A session's worker process: it holds the namespace, runs the code, commits the state.

Forked by the fork server (`stashdb.session.server`), a worker is told its
session (`WorkerConfig`), opens the store, restores the state it starts from,
and then serves the host's requests one at a time (`stashdb.session.protocol`).
Its namespace is the ``__dict__`` of a fresh ``__main__`` module, so classes
and functions the code defines are ``__main__``'s, as in a script.

The memory limit is an address-space limit (``RLIMIT_AS``) set while the
code runs: a fresh worker's size (before any state is restored) plus the
session's ``memory_limit``. Past it
allocations fail, the code sees ``MemoryError``, and the worker tells the host,
which replaces it. Between executions the limit is lifted, so a commit never
fails for it. SIGINT is ignored but while code runs, where it is the code's
``KeyboardInterrupt`` (the host sends it on Ctrl-C).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import signal
import socket
import sys
import threading
import types
from collections.abc import Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any

import dill

from stashdb.errors import CallbackError, SessionError, StashError
from stashdb.repo import Repo
from stashdb.session import callbacks as host_callbacks
from stashdb.session.files import Workdir
from stashdb.session.output import DescriptorCapture
from stashdb.session.protocol import WorkerConfig
from stashdb.session.results import ExecutionResult
from stashdb.session.runtime import Runtime
from stashdb.workspace.environment import origin

__all__ = ["serve", "warm"]

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def warm() -> None:
    """Do once, in the fork server, what every worker's first commit would do again.

    The imports a commit makes lazily (the engine, SQLAlchemy's SQLite dialect,
    zstandard) and who and where commits are made (dill's version is read from
    its package metadata, ~20 ms): measured, a worker's first execution took
    140 ms without this.
    """
    import importlib

    for module in _FIRST_COMMIT_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    origin("__main__", {})


#: What a worker's first commit imports (found by diffing sys.modules around it).
_FIRST_COMMIT_IMPORTS = (
    "sqlalchemy", "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.sqlite.pysqlite",
    "stashdb.storage.engine", "stashdb.storage.engine_driver", "stashdb.storage.commits",
    "stashdb.storage.objects", "stashdb.storage.schema", "stashdb.pickling.reducers",
    "zstandard", "importlib.metadata", "decimal", "csv", "email.message",
)


def serve(sock: socket.socket) -> int:
    """Serve one session on ``sock`` until the host says close or goes away; the exit code."""
    conn = Connection(sock.detach())
    try:
        op, config = conn.recv()
    except (EOFError, OSError):
        return 0
    assert op == "start"
    try:
        worker = _Worker(conn, config)
        warnings = worker.start()
    except BaseException as exc:
        _send(conn, ("failed", _portable(exc)))
        return 1
    _send(conn, ("done", (os.getpid(), warnings)))
    return worker.loop()


def _send(conn: Connection, message: Any) -> None:
    with contextlib.suppress(OSError):
        conn.send(message)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it can cross to the host, else a StashError saying it."""
    try:
        dill.loads(dill.dumps(exc))
    except Exception:
        return StashError(f"{type(exc).__name__}: {exc}")
    return exc


def _out_of_memory(result: ExecutionResult) -> bool:
    """Whether the code's MemoryError came from a failed allocation, not its own ``raise``.

    A failed allocation raises ``MemoryError()`` with no message (numpy's says
    "Unable to allocate …"); code that raises one itself usually says why.
    """
    error = result.error
    return error is not None and error.type in ("MemoryError", "_ArrayMemoryError") and (
        error.message == "" or error.message.startswith("Unable to allocate")
    )


def _address_space() -> int:
    """This process's virtual memory size in bytes (what RLIMIT_AS limits)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


class _Worker:
    def __init__(self, conn: Connection, config: WorkerConfig) -> None:
        self.conn, self.config = conn, config
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.path[:] = list(config.sys_path)
        os.chdir(config.workdir or config.cwd)
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        proxies = {
            name: host_callbacks.CallbackProxy(name, description, self._call_host)
            for name, description in config.callbacks
        }
        host_callbacks.install(proxies)
        self._talk = threading.Lock()  # one message at a time (threads call callbacks)
        self._executing = False
        repo = Repo.open(config.url, lock_timeout=config.lock_timeout)
        workdir = Workdir(config.workdir, config.rules) if config.workdir else None
        self.runtime = Runtime(
            repo, config.branch, main.__dict__, callbacks=proxies, workdir=workdir,
            output=DescriptorCapture(), guard=self._guard,
        )
        self.limit: int | None = None

    def start(self) -> list[str]:
        # The limit counts from a fresh worker, before any state is restored: the
        # same cap for the first worker and for one that replaced it.
        if self.config.memory_limit is not None:
            self.limit = _address_space() + self.config.memory_limit
        warnings: list[str] = []
        if self.config.base is not None and self.config.restore:
            _, warnings = self.runtime.restore(
                self.config.base, exact_files=self.config.exact_files
            )
        elif self.config.base is not None:
            self.runtime.adopt(self.config.base)
        return warnings

    def loop(self) -> int:
        while True:
            try:
                op, arguments = self.conn.recv()
            except (EOFError, OSError):  # the host is gone
                return 0
            if op == "close":
                self.runtime.close()
                _send(self.conn, ("done", None))
                return 0
            try:
                reply = self._handle(op, arguments)
            except BaseException as exc:  # a store error, say: the host raises it
                reply = ("failed", _portable(exc))
            with self._talk:
                _send(self.conn, reply)

    def _handle(self, op: str, arguments: dict[str, Any]) -> tuple[str, Any]:
        runtime = self.runtime
        if op == "execute":
            self._executing = True
            try:
                result = runtime.execute(
                    arguments["code"], arguments["count"], autocommit=arguments["autocommit"],
                    ran=self._ran,
                )
            finally:
                self._executing = False
            if self.limit is not None and _out_of_memory(result):
                return ("memory", result)
            return ("done", result)
        if op == "commit":
            return ("done", runtime.commit(arguments["message"]))
        if op == "restore_bundle":
            return ("done", self._restore_bundle(arguments["message"], arguments["trust"]))
        if op == "restore":
            return ("done", runtime.restore(arguments["commit_id"], message=arguments["message"]))
        if op == "clear":
            return ("done", runtime.clear(arguments["message"]))
        raise SessionError(f"the worker does not know request {op!r}", None)

    def _restore_bundle(self, message: str, trust: bool) -> tuple[str, list[str]]:
        """A state the host passed as a memory file (it follows the request on the socket)."""
        fd = reduction.recv_handle(self.conn)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return self.runtime.restore_bundle(b"", message, trust)  # refused: not one
            # Mapped in one go (MAP_POPULATE): page by page, the faults cost more
            # than the copy (measured: 1.1 s against 0.2 s for 400 MB).
            mapped = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        # Not closed here: the restored values were copied out, but the bundle's
        # views may outlive this call in a traceback; the map goes with them.
        return self.runtime.restore_bundle(memoryview(mapped), message, trust)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Around the code: its memory limit, and Ctrl-C as its KeyboardInterrupt."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if self.limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit, hard))
        try:
            yield
        finally:
            if self.limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _ran(self) -> None:
        """The code has ended: the host stops the execution's clock (the commit is ours)."""
        with self._talk:
            _send(self.conn, ("ran", None))

    def _call_host(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A callback's call: the arguments cross to the host, the answer comes back.

        One call at a time, from any of the code's threads; only while an
        execution runs (between executions the host is not listening).
        """
        try:
            payload = dill.dumps((args, kwargs))
        except Exception as exc:
            raise CallbackError(name, f"its arguments cannot be sent to the host: {exc}") from None
        with self._talk:
            if not self._executing:
                raise CallbackError(
                    name, "called between executions (from a thread that outlived one); "
                    "callbacks answer while an execution runs"
                )
            self.conn.send(("call", name, payload))
            op, ok, answer = self.conn.recv()
        assert op == "return"
        value = dill.loads(answer)
        if ok:
            return value
        raise value
