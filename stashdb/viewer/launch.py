"""Starting the viewer: `serve` runs it here until Ctrl-C; `ui` runs it in its own process.

`serve` binds the address first (port 0: one the system picks), so the URL it
announces is the one served, with a fresh random token as Jupyter's is. `ui`
(``stashdb.ui()``, ``%stash ui``) starts ``python -m stashdb ui`` as a child
process and returns once it serves: the web server's threads and polling then
never share a kernel's interpreter (its GIL, its forks for snapshots). The
child ends when `Viewer.stop` is called, when the parent exits, or when the
parent dies (it watches its stdin, a pipe from the parent).
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
import subprocess
import sys
import threading
import warnings
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stashdb.errors import ViewerFailed

__all__ = ["LOOPBACK", "Viewer", "serve", "ui"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: How long `ui` waits for the child to serve (imports and opening the store).
START_TIMEOUT = 60.0


def exposed_warning(host: str) -> str:
    """What is said when the viewer listens beyond this machine."""
    return (
        f"the history viewer listens on {host}, not only on this machine: anyone who can "
        "reach it and has the token can read this store's history"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one).

    Raises:
        ViewerFailed: the address cannot be used (taken, or not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ViewerFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    repo: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
    until_stdin_closes: bool = False,
) -> None:
    """Serve ``repo``'s history at ``host:port`` until interrupted (Ctrl-C, SIGTERM).

    ``announce`` is given the tokenized URL once the socket listens.

    Raises:
        ViewerFailed: the ui extra is not installed, or the address cannot be used.
    """
    try:
        import uvicorn

        from stashdb.viewer.app import build_app
        from stashdb.viewer.guard import Guard, allowed_hosts
        from stashdb.viewer.history import History
    except ImportError as exc:
        raise ViewerFailed(f"{exc.name or exc} is not installed", missing=True) from None
    sock = bind(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    history = History(repo)
    history.graph()  # the layout of the whole history and the first page, before the URL is out
    app = Guard(build_app(history, repo.location), token, allowed_hosts(host, port))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    if until_stdin_closes:
        threading.Thread(target=_stop_at_eof, args=(server,), daemon=True).start()
    announce(url)
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    server.run(sockets=[sock])


def _stop_at_eof(server: Any) -> None:
    # The parent holds our stdin's other end: when it exits or dies, read() ends.
    try:
        while sys.stdin.buffer.read(1024):
            pass
    except (OSError, ValueError):
        pass
    server.should_exit = True


@dataclass
class Viewer:
    """A viewer running in a child process: its URL, and `stop`."""

    url: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """End the viewer (waits for its process)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()

    @property
    def running(self) -> bool:
        """Whether its process still serves."""
        return self.process.poll() is None

    def _repr_html_(self) -> str:
        from html import escape

        url = escape(self.url, quote=True)
        return f'stashdb ui: <a href="{url}" target="_blank" rel="noopener">{url}</a>'

    def __str__(self) -> str:
        return self.url


def ui(
    store: Any = None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    open_browser: bool = True,
) -> Viewer:
    """Start the read-only history viewer of ``store`` and open it in the browser.

    ``store``: a Repo, a path or a URL (default: the store found from here, as
    `stashdb.open` finds it). The server runs in its own process, bound to
    ``host`` (127.0.0.1: this machine only) and ``port`` (0: a free one); the
    URL carries a random token. Returns a `Viewer` (``.url``, ``.stop()``).

    Raises:
        ViewerFailed: the ui extra is missing, or the server did not start.
        StoreNotFound, NotAStore …: as `stashdb.open`.
    """
    from stashdb.api import open as open_store
    from stashdb.repo import Repo

    if host not in LOOPBACK:
        warnings.warn(exposed_warning(host), stacklevel=2)
    repo = store if isinstance(store, Repo) else open_store(store)
    env = {**os.environ, "STASHDB_URL": repo.url}  # a password stays out of argv
    command = [sys.executable, "-m", "stashdb", "ui", "--port", str(port), "--host", host,
               "--no-browser", "--until-stdin-closes"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    url = _wait_for_url(process)
    viewer = Viewer(url, process)
    atexit.register(viewer.stop)
    if open_browser:
        webbrowser.open(url)
    return viewer


def _wait_for_url(process: subprocess.Popen[bytes]) -> str:
    """The URL the child announces; its output is drained from then on (a full pipe
    would stop it)."""
    found: list[str] = []
    errors: list[str] = []
    ready = threading.Event()

    def read(stream: Any, into: list[str], url: bool) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").strip()
            if url and not found and line.startswith("http://"):
                found.append(line)
                ready.set()
            elif not url:
                into[:] = [*into[-20:], line]
        ready.set()  # the process closed it: exited

    threading.Thread(target=read, args=(process.stdout, found, True), daemon=True).start()
    threading.Thread(target=read, args=(process.stderr, errors, False), daemon=True).start()
    ready.wait(START_TIMEOUT)
    if found:
        return found[0]
    if process.poll() is None:
        try:
            process.wait(2)  # it may be exiting, with its reason on stderr
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise ViewerFailed(f"its server did not start within {START_TIMEOUT:.0f} s") from None
    said = [line for line in errors if line]
    raise ViewerFailed(said[-1] if said else f"its process exited ({process.returncode})")
