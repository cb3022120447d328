"""What the host and a worker say to each other, over one socket.

Messages are pickled tuples, framed by `multiprocessing.connection.Connection`.
The host sends ``(op, arguments)``: ``start`` (a `WorkerConfig`; the first
message), ``execute``, ``commit``, ``restore``, ``clear``, ``close``. The worker
answers each with ``("done", value)``, ``("failed", error)`` or, for an
execution that ran out of memory under the session's limit, ``("memory",
result)``. While code runs, the worker may ask ``("call", name, arguments)``
of a host callback; the host answers ``("return", ok, payload)``, where the
payload is the result or the exception, pickled with dill.
"""

from __future__ import annotations

from dataclasses import dataclass

from stashdb.session.files import FileRules

__all__ = ["WorkerConfig"]


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a fresh worker needs to become a session's."""

    url: str  # the store, as the worker opens it
    lock_timeout: float
    branch: str
    base: str | None  # the commit whose state the worker starts in (None: empty)
    restore: bool  # restore base (resume, recovery), or take it as the empty start
    exact_files: bool  # after a crash: the working directory exactly as base has it
    workdir: str | None
    rules: FileRules
    callbacks: tuple[tuple[str, str], ...]  # (name, description)
    memory_limit: int | None  # bytes the code may add to a fresh worker's address space
    cwd: str  # where the code runs when there is no workdir
    sys_path: tuple[str, ...]  # the host's, so the code imports what the host could
