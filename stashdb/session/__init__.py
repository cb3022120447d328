"""Sessions: execute code step by step with persistent, snapshottable, crash-proof state.

`Session` (and `AsyncSession`) is the API; docs/sessions.md is the guide. The
pieces, from the top: ``host`` (the Session), ``aio`` (AsyncSession),
``runners`` (a worker process or in-process), ``server`` (the fork server that
makes workers), ``worker`` (a worker's loop), ``runtime`` (the state where the
code runs, and its commits), ``interpreter`` (running one piece of code),
``output``, ``callbacks``, ``files`` (the working directory), ``catalog`` (which
branches are sessions), ``protocol``, ``results``, ``sizes``.
"""

from __future__ import annotations

from collections.abc import Iterable

from stashdb.session.aio import AsyncSession
from stashdb.session.host import Session
from stashdb.session.results import ErrorInfo, ExecutionResult

__all__ = ["AsyncSession", "ErrorInfo", "ExecutionResult", "Session", "preload"]


def preload(modules: Iterable[str]) -> None:
    """Have workers start with ``modules`` imported (``["numpy", "pandas"]``).

    The fork server imports them once; every worker forked from it then has
    them for free. Call before the first isolated session of this process
    (a server already running keeps what it has).
    """
    from stashdb.session.server import PRELOAD, ForkServer

    ForkServer.preload = [*PRELOAD, *modules]
