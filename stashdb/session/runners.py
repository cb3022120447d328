"""Where a session's code runs: a worker process (`WorkerRunner`) or the host (`LocalRunner`).

Both take the same requests (`stashdb.session.protocol`) and give the same
replies; a `Session` does not care which it has, but for what only a worker
can do: be killed at a timeout, crash alone, keep a memory limit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from multiprocessing import reduction
from pathlib import Path
from typing import Any, Protocol

import dill

from stashdb.errors import CallbackError, SessionError
from stashdb.repo import Repo
from stashdb.session.callbacks import Callback, CallbackProxy, install, run_callback
from stashdb.session.files import Workdir
from stashdb.session.output import StreamCapture
from stashdb.session.protocol import WorkerConfig
from stashdb.session.runtime import Runtime
from stashdb.session.server import ForkServer, WorkerHandle

__all__ = ["LocalRunner", "Runner", "WorkerDied", "WorkerRunner", "WorkerTimedOut"]

#: Seconds a worker has to answer after Ctrl-C before it is killed.
_INTERRUPT_GRACE = 5.0
#: Seconds a worker has to stop when asked to close.
_CLOSE_GRACE = 2.0


class WorkerDied(Exception):
    """The worker's socket closed before its answer: it died (``exit_code``: how)."""

    def __init__(self, exit_code: int | None) -> None:
        super().__init__(f"the worker died (exit code {exit_code})")
        self.exit_code = exit_code


class WorkerTimedOut(Exception):
    """The answer did not come in time."""


class CallHandler(Protocol):
    """Answers a callback's call: ``(ok, dill-pickled result or exception, to raise here)``."""

    def __call__(self, name: str, payload: bytes) -> tuple[bool, bytes, BaseException | None]:
        ...


class Runner(Protocol):
    """Runs a session's requests somewhere."""

    pid: int | None
    start_reply: tuple[str, Any]  # the worker's answer to "start"

    def request(self, op: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Send a request and return the worker's reply ``(kind, value)``."""
        ...

    def interrupted(self) -> Any:
        """After Ctrl-C during `request`: stop the code; its reply, or None if it was killed."""
        ...

    def kill(self) -> None:
        """Stop at once (a worker is killed)."""
        ...

    def close(self) -> None:
        """Stop, politely."""
        ...


class WorkerRunner:
    """A worker process forked by the fork server."""

    def __init__(self, config: WorkerConfig, on_call: CallHandler) -> None:
        self._on_call = on_call
        self._calls: concurrent.futures.ThreadPoolExecutor | None = None
        self.handle: WorkerHandle = ForkServer.shared().spawn()
        self.pid: int | None = self.handle.pid
        self.handle.conn.send(("start", config))
        try:
            self.start_reply = self._answer(None)
        except WorkerDied as died:
            self.handle.close()
            raise SessionError(
                f"the session's worker died while starting (exit code {died.exit_code})", None
            ) from None

    def request(self, op: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Send a request; answer callbacks meanwhile; return the reply.

        Raises:
            WorkerTimedOut: past ``timeout`` seconds (the worker is left running).
            WorkerDied: the worker died first.
        """
        try:
            self.handle.conn.send((op, arguments))
        except OSError:
            raise WorkerDied(self.handle.exit_code()) from None
        return self._answer(None if timeout is None else time.monotonic() + timeout)

    def _answer(self, deadline: float | None) -> Any:
        """The worker's reply; its callbacks' calls answered meanwhile, within ``deadline``.

        ``("ran", None)`` says the code has ended and the commit begins: the
        deadline is the code's, so it stops there.
        """
        conn = self.handle.conn
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready = conn.poll(wait)
            except OSError:
                ready = True  # closed under us: recv says how
            if not ready:
                raise WorkerTimedOut
            try:
                message = conn.recv()
            except (EOFError, OSError):
                raise WorkerDied(self.handle.exit_code()) from None
            if message[0] == "ran":
                deadline = None
                continue
            if message[0] != "call":
                return message
            ok, payload, interrupt = self._call(message[1], message[2], deadline)
            try:
                conn.send(("return", ok, payload))
            except OSError:
                raise WorkerDied(self.handle.exit_code()) from None
            if interrupt is not None:
                raise interrupt

    def _call(
        self, name: str, payload: bytes, deadline: float | None
    ) -> tuple[bool, bytes, BaseException | None]:
        """Answer one callback's call; a call still running at the deadline is a timeout."""
        if deadline is None:
            return self._on_call(name, payload)
        if self._calls is None:
            self._calls = concurrent.futures.ThreadPoolExecutor(1, "stashdb-callback")
        running = self._calls.submit(self._on_call, name, payload)
        try:
            return running.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            # The callback goes on in its thread (a thread cannot be stopped); its
            # answer is dropped, and the worker is killed by the caller.
            self._calls.shutdown(wait=False)
            self._calls = None
            raise WorkerTimedOut from None

    def request_with_file(
        self, op: str, arguments: dict[str, Any], data: bytes | bytearray | memoryview
    ) -> Any:
        """A request whose data goes along as a memory file (a state: no pickling of it).

        Raises:
            WorkerDied: the worker died first.
        """
        fd = os.memfd_create("stashdb-state", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as file:
                file.write(data)
            try:
                self.handle.conn.send((op, arguments))
                reduction.send_handle(self.handle.conn, fd, self.handle.pid)
            except OSError:
                raise WorkerDied(self.handle.exit_code()) from None
        finally:
            os.close(fd)
        return self._answer(None)

    def interrupted(self) -> Any:
        """Send the worker SIGINT and wait a little for its answer; kill it if none comes."""
        self.handle.interrupt()
        try:
            return self._answer(time.monotonic() + _INTERRUPT_GRACE)
        except (WorkerTimedOut, WorkerDied):
            self.kill()
            return None

    def kill(self) -> None:
        """Kill the worker and wait until the server has reaped it."""
        self.handle.kill()
        self.handle.exit_code()
        self.handle.close()

    def close(self) -> None:
        """Ask the worker to stop; kill it if it does not within two seconds."""
        try:
            self.handle.conn.send(("close", {}))
            if self.handle.conn.poll(_CLOSE_GRACE):
                self.handle.conn.recv()
        except (OSError, EOFError):
            pass
        if self.handle.exit_code(_CLOSE_GRACE) is None:
            self.kill()
        self.handle.close()


#: Held by an in-process execution (and restore): see `LocalRunner.request`.
_IN_PROCESS = threading.RLock()


class _Alarm(BaseException):
    """An in-process execution's timeout, raised in its code by SIGALRM."""


class LocalRunner:
    """The session's runtime in the host process itself (``isolated=False``)."""

    pid: int | None = None

    def __init__(
        self, config: WorkerConfig, repo: Repo, callbacks: dict[str, Callback],
        loop: Callable[[], Any],
    ) -> None:
        proxies = {
            name: CallbackProxy(name, cb.description, lambda n, a, k: run_callback(
                callbacks[n], a, k, loop()))
            for name, cb in callbacks.items()
        }
        install(proxies)
        self._workdir = config.workdir
        namespace = types.ModuleType("__main__").__dict__
        workdir = Workdir(config.workdir, config.rules) if config.workdir else None
        self._timeout: float | None = None
        self.runtime = Runtime(
            repo, config.branch, namespace, callbacks=proxies, workdir=workdir,
            output=StreamCapture(), guard=lambda: _alarm(self._timeout),
        )
        warnings: list[str] = []
        with _IN_PROCESS, self._in_workdir():
            if config.base is not None and config.restore:
                warnings = self.runtime.restore(config.base, exact_files=config.exact_files)[1]
            elif config.base is not None:
                self.runtime.adopt(config.base)
        self.start_reply = ("done", (None, warnings))

    @contextlib.contextmanager
    def _in_workdir(self) -> Iterator[None]:
        if self._workdir is None:
            yield
            return
        before = os.getcwd()
        os.chdir(self._workdir)
        try:
            yield
        finally:
            os.chdir(before)

    def request(self, op: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        """Run a request here; a timeout interrupts the code with SIGALRM (main thread only).

        Raises:
            WorkerTimedOut: the code ran past ``timeout``.
        """
        runtime = self.runtime
        # One in-process execution at a time in a process: they share its current
        # directory, sys.stdout and SIGALRM.
        with _IN_PROCESS, self._in_workdir():
            try:
                if op == "execute":
                    self._timeout = timeout  # the alarm rings in the code, not in the commit
                    try:
                        result = runtime.execute(
                            arguments["code"], arguments["count"],
                            autocommit=arguments["autocommit"],
                        )
                    finally:
                        self._timeout = None
                    if result.error is not None and result.error.type == _Alarm.__name__:
                        raise WorkerTimedOut
                    return ("done", result)
                if op == "commit":
                    return ("done", runtime.commit(arguments["message"]))
                if op == "restore":
                    return ("done", runtime.restore(
                        arguments["commit_id"], message=arguments["message"]))
                if op == "restore_bundle":
                    return ("done", runtime.restore_bundle(
                        arguments["data"], arguments["message"], arguments["trust"]))
                if op == "clear":
                    return ("done", runtime.clear(arguments["message"]))
            except (WorkerTimedOut, KeyboardInterrupt):
                raise
            except Exception as exc:
                return ("failed", exc)
        raise SessionError(f"unknown request {op!r}", None)

    def interrupted(self) -> Any:
        """In-process, Ctrl-C already interrupted the code: nothing to wait for."""
        return None

    def kill(self) -> None:
        """Nothing to kill in-process; the runtime lets go of its store connections."""
        self.runtime.close()

    def close(self) -> None:
        """Release the runtime."""
        self.runtime.close()


@contextlib.contextmanager
def _alarm(timeout: float | None) -> Iterator[None]:
    if timeout is None:
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def in_main_thread() -> bool:
    """Whether this is the main thread (where an in-process timeout can be kept)."""
    return threading.current_thread() is threading.main_thread()


def answer_call(
    callbacks: dict[str, Callback], name: str, payload: bytes, loop: Any
) -> tuple[bool, bytes, BaseException | None]:
    """Run the callback a worker asked for; its result or exception, pickled for the trip back.

    Whatever the callback raises, an answer goes back (or host and worker would
    no longer agree on whose turn it is); a Ctrl-C that came during it is raised
    here too, once the worker has its answer.
    """
    callback = callbacks.get(name)
    if callback is None:
        return False, dill.dumps(CallbackError(name, "the host has no callback of that name")), None
    try:
        args, kwargs = dill.loads(payload)
        value = run_callback(callback, args, kwargs, loop)
    except BaseException as exc:  # SystemExit, CancelledError too: the code gets them
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
        try:
            return False, dill.dumps(exc), interrupt
        except Exception:
            failed = CallbackError(name, f"{type(exc).__name__}: {exc}")
            return False, dill.dumps(failed), interrupt
    try:
        return True, dill.dumps(value), None
    except Exception as exc:
        return False, dill.dumps(CallbackError(
            name, f"its result ({type(value).__name__}) cannot be sent to the worker: {exc}")), None


def workdir_of(path: str | os.PathLike[str] | None) -> str | None:
    """The working directory, absolute, made if missing."""
    if path is None:
        return None
    folder = Path(path).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)
