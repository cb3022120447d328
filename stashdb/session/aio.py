"""AsyncSession: a `Session` for asyncio code (agent frameworks): every method a coroutine.

The session's blocking work (the worker's answer, the store) runs in a thread
(`asyncio.to_thread`), so the event loop keeps serving while code executes.
Host callbacks that are coroutine functions run on the loop that awaits the
session; plain ones in that thread. The constructor does no I/O: the session
starts on the first await.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from stashdb.errors import SessionClosed
from stashdb.model import Commit, Rev, Version
from stashdb.session.host import RepoLike, Session
from stashdb.session.results import ExecutionResult

__all__ = ["AsyncSession"]

_T = TypeVar("_T")
#: Seconds a cancelled execution's code has to stop after KeyboardInterrupt.
_CANCEL_GRACE = 2.0


class AsyncSession:
    """`Session`, with ``async def`` methods (``close`` too) and ``async with``.

    Takes the arguments of `Session`. ``branch`` is known at once.
    """

    def __init__(self, repo: RepoLike = None, branch: str | None = None, **settings: Any) -> None:
        self.branch = branch if branch is not None else f"session/{uuid.uuid4().hex[:8]}"
        self._repo, self._settings = repo, settings
        self._session: Session | None = None
        self._resume = False
        self._closed = False
        self._starting: asyncio.Lock | None = None

    @classmethod
    def resume(cls, branch: str, repo: RepoLike = None, **settings: Any) -> AsyncSession:
        """Re-attach to the session on ``branch`` (see `Session.resume`); starts on first await."""
        made = cls(repo, branch, **settings)
        made._resume = True
        return made

    async def _started(self) -> Session:
        if self._closed:
            raise SessionClosed(self.branch)
        if self._session is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._session is None:
                    self._session = await asyncio.to_thread(self._make)
                    if self._closed:  # close() came while it started
                        await asyncio.to_thread(self._session.close)
                        raise SessionClosed(self.branch)
        self._session._loop = asyncio.get_running_loop()
        return self._session

    def _make(self) -> Session:
        if self._resume:
            return Session.resume(self.branch, self._repo, **self._settings)
        return Session(self._repo, self.branch, **self._settings)

    async def _run(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.to_thread(method, *args, **kwargs)

    @property
    def session(self) -> Session | None:
        """The `Session` underneath, once started."""
        return self._session

    @property
    def execution_count(self) -> int:
        """Executions so far (0 before the session started)."""
        return self._session.execution_count if self._session is not None else 0

    async def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """See `Session.execute`. Cancelled, it interrupts the code (kills it if need be)."""
        session = await self._started()
        running = asyncio.ensure_future(asyncio.to_thread(session.execute, code, timeout=timeout))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            # The thread cannot be cancelled; the code can: KeyboardInterrupt in it,
            # then, past a grace, the worker killed (the session recovers).
            session.interrupt()
            done, _ = await asyncio.wait({running}, timeout=_CANCEL_GRACE)
            if not done:
                session.interrupt(kill=True)
                await asyncio.wait({running})
            if not running.cancelled():
                running.exception()  # seen: no "never retrieved" warning
            raise

    async def commit(self, message: str = "") -> Commit:
        """See `Session.commit`."""
        session = await self._started()
        return await self._run(session.commit, message)

    async def clear_state(self) -> Commit:
        """See `Session.clear_state`."""
        return await self._run((await self._started()).clear_state)

    async def reset(self) -> Commit:
        """See `Session.reset`."""
        return await self._run((await self._started()).reset)

    async def snapshot_state(self) -> bytes:
        """See `Session.snapshot_state`."""
        return await self._run((await self._started()).snapshot_state)

    async def restore_state(
        self, blob: bytes | bytearray | memoryview, *, trust: bool = False
    ) -> Commit:
        """See `Session.restore_state`."""
        session = await self._started()
        return await self._run(lambda: session.restore_state(blob, trust=trust))

    async def checkout(self, rev: Rev) -> Commit:
        """See `Session.checkout`."""
        return await self._run((await self._started()).checkout, rev)

    async def undo(self) -> Commit:
        """See `Session.undo`."""
        return await self._run((await self._started()).undo)

    async def fork(self, branch: str | None = None, **settings: Any) -> AsyncSession:
        """See `Session.fork`; the new session is an AsyncSession, started."""
        forked = await self._run((await self._started()).fork, branch, **settings)
        made = AsyncSession(forked.repo, forked.branch)
        made._session = forked
        return made

    async def log(self, limit: int | None = None) -> list[Commit]:
        """See `Session.log`."""
        return await self._run((await self._started()).log, limit)

    async def history(self, name: str) -> list[Version]:
        """See `Session.history`."""
        return await self._run((await self._started()).history, name)

    async def close(self) -> None:
        """See `Session.close` (a busy worker is killed, not waited for)."""
        self._closed = True
        if self._session is not None:
            await self._run(self._session.close)

    async def __aenter__(self) -> AsyncSession:
        await self._started()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<stashdb.AsyncSession {self.branch}>"
