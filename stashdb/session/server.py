"""The fork server: one small process per host that forks session workers, ready to run.

Starting a Python interpreter and importing stashdb, SQLAlchemy and dill
costs a few hundred milliseconds; forking a process that already did costs
a few. The host starts the server once, on its first isolated session; each
new worker is a fork of it (`ForkServer.spawn`), given its socket to the host.

Why not `multiprocessing`'s forkserver: its children import the host's
``__main__`` script again (a script without an ``if __name__ ==
"__main__"`` guard would run twice), and only the server knows its
children's exit statuses. Here the server reaps its children and writes each
one's exit status to a pipe the host reads, and kills a worker only on the
host's word while it is still its child (no pid reuse race).

No worker outlives its host, even one killed with SIGKILL: the server sees
the host's socket close, kills every worker and exits; each worker has the
kernel send it SIGKILL should the server die first (``PR_SET_PDEATHSIG``).
The server runs in a session of its own, so a Ctrl-C at the terminal reaches
the host only (which passes it on to the worker whose code it interrupts).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import ClassVar

from stashdb.errors import SessionError

__all__ = ["ForkServer", "WorkerHandle", "main"]

_PID = struct.Struct("<q")
_STATUS = struct.Struct("<i")
_PR_SET_PDEATHSIG = 1
#: Modules every worker needs, imported once by the server.
#: What every worker needs: the worker itself, and what signing a commit imports
#: (cryptography's key loading costs 24 ms to import: paid once, in the server).
PRELOAD = (
    "stashdb.session.worker",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "blake3",
)
_BOOT = (
    "import json, os, sys; sys.path[:0] = json.loads(os.environ.pop('STASHDB_SYS_PATH')); "
    "from stashdb.session.server import main; "
    "main(int(os.environ.pop('STASHDB_SERVER_FD')), json.loads(os.environ.pop('STASHDB_PRELOAD')))"
)
#: How long the host waits for a worker's exit status once its socket closed.
_STATUS_WAIT = 10.0


class WorkerHandle:
    """The host's side of one worker: its pid, its socket, and its exit status once it died."""

    def __init__(self, server: ForkServer, pid: int, sock: socket.socket, status_fd: int) -> None:
        self.server, self.pid, self._status_fd = server, pid, status_fd
        #: The conversation with the worker (`stashdb.session.protocol`).
        self.conn = Connection(sock.detach())
        self._exit_code: int | None = None

    def exit_code(self, timeout: float = _STATUS_WAIT) -> int | None:
        """The worker's exit code (negative: the signal that killed it), once it is known."""
        if self._exit_code is None and self._status_fd >= 0:
            ready, _, _ = select.select([self._status_fd], [], [], timeout)
            if ready:
                data = os.read(self._status_fd, _STATUS.size)
                if len(data) == _STATUS.size:
                    self._exit_code = _STATUS.unpack(data)[0]
                os.close(self._status_fd)
                self._status_fd = -1
        return self._exit_code

    def kill(self) -> None:
        """Have the server kill the worker (SIGKILL), if it is still running."""
        self.server.kill(self.pid)

    def interrupt(self) -> None:
        """Have the server send the worker SIGINT (the code sees KeyboardInterrupt)."""
        self.server.kill(self.pid, signal.SIGINT)

    def close(self) -> None:
        """Release the host's ends (the worker, if alive, sees its socket close and exits)."""
        with contextlib.suppress(OSError):
            self.conn.close()
        if self._status_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._status_fd)
            self._status_fd = -1


class ForkServer:
    """The host's side of the fork server (`shared` gives this process's one)."""

    _shared: ForkServer | None = None
    _shared_lock = threading.Lock()
    #: Modules the next server started imports for its workers (`stashdb.session.preload`).
    preload: ClassVar[list[str]] = list(PRELOAD)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        host, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            **os.environ,
            "STASHDB_SYS_PATH": json.dumps([p for p in sys.path if p]),
            "STASHDB_SERVER_FD": str(theirs.fileno()),
            "STASHDB_PRELOAD": json.dumps(self.preload),
        }
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT], pass_fds=[theirs.fileno()], env=env,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        theirs.close()
        self._sock = host
        self._owner = os.getpid()

    @classmethod
    def shared(cls) -> ForkServer:
        """This process's fork server, started on first use (and again if it died)."""
        with cls._shared_lock:
            server = cls._shared
            if server is None or not server.alive():
                server = cls._shared = cls()
            return server

    def alive(self) -> bool:
        """Whether the server is running and this process started it (not a fork's parent)."""
        return self._owner == os.getpid() and self._process.poll() is None

    def spawn(self) -> WorkerHandle:
        """Fork a new worker; returns the host's handle on it.

        Raises:
            SessionError: the server is gone (it is started again next time).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._sock, [b"spawn"], [theirs.fileno(), status_w])
                reply = self._sock.recv(_PID.size)
        except OSError as exc:
            ours.close()
            os.close(status_r)
            raise SessionError(f"the session fork server is gone ({exc})", None) from None
        finally:
            theirs.close()
            os.close(status_w)
        if len(reply) != _PID.size:
            ours.close()
            os.close(status_r)
            with contextlib.suppress(OSError):
                self._sock.close()
            raise SessionError("the session fork server stopped", None)
        return WorkerHandle(self, _PID.unpack(reply)[0], ours, status_r)

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Ask the server to signal worker ``pid`` (only if it has not been reaped)."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.send(b"kill" + _PID.pack(pid) + _STATUS.pack(sig))

    def close(self) -> None:
        """Stop the server: its workers are killed."""
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)


def _forget_after_fork() -> None:
    # A forked host starts its own server; the parent's socket must not keep the
    # parent's server alive after the parent is gone.
    server = ForkServer._shared
    ForkServer._shared = None
    ForkServer._shared_lock = threading.Lock()
    if server is not None:
        with contextlib.suppress(OSError):
            server._sock.close()


os.register_at_fork(after_in_child=_forget_after_fork)


# -- the server process -----------------------------------------------------------------


def main(fd: int, preload: Iterable[str]) -> None:
    """Serve the host on socket ``fd``: fork workers, reap them, report their statuses."""
    import importlib

    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # a module the user asked for is missing: workers import it then
            traceback.print_exc()
    from stashdb.session.worker import warm

    warm()
    host = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, int] = {}  # pid -> status pipe
    selector = selectors.DefaultSelector()
    selector.register(host, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is host:
                    if not _serve_request(host, children, (wake_r, wake_w)):
                        return
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                _reap(children)
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _serve_request(host: socket.socket, children: dict[int, int], own: tuple[int, int]) -> bool:
    """Handle one request of the host; False when the host is gone."""
    try:
        message, fds, _, _ = socket.recv_fds(host, 64, 2)
    except OSError:
        return False
    if not message:
        return False
    if message.startswith(b"kill"):
        pid = _PID.unpack_from(message, 4)[0]
        sig = _STATUS.unpack_from(message, 4 + _PID.size)[0]
        if pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        return True
    conn_fd, status_w = fds
    server_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run_child(conn_fd, status_w, server_pid, [*own, *children.values()], host)
    os.close(conn_fd)
    children[pid] = status_w
    host.send(_PID.pack(pid))
    return True


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status_w = children.pop(pid, None)
        if status_w is not None:
            with contextlib.suppress(OSError):
                os.write(status_w, _STATUS.pack(os.waitstatus_to_exitcode(status)))
            os.close(status_w)


def _run_child(
    conn_fd: int, status_w: int, server_pid: int, inherited: list[int], host: socket.socket
) -> None:
    """In a freshly forked worker: cut the server's ties, then serve the session. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        host.close()
        for fd in [status_w, *inherited]:
            with contextlib.suppress(OSError):
                os.close(fd)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != server_pid:  # the server died before the line above
            os._exit(1)
        from stashdb.session.worker import serve

        code = serve(socket.socket(fileno=conn_fd))
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        os._exit(code)
