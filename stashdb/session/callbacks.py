"""Host callbacks: functions of the host that a session's code calls by name.

They are given as eryx gives them (``[{"name": …, "fn": …, "description": …}]``)
or as a mapping ``{name: fn}``. The code finds them among its builtins, never
in its globals, so they are never stored; a name bound to one in the code
(``f = increment``) is stored as a reference by name and is bound again to the
callback of whatever session restores it. In a worker each callback is a
`CallbackProxy` whose call crosses to the host and waits for the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stashdb.errors import CallbackError, InvalidArguments

__all__ = ["Callback", "CallbackProxy", "bound", "callbacks_of", "run_callback"]


@dataclass(frozen=True)
class Callback:
    """One host function the code may call."""

    name: str
    fn: Callable[..., Any]
    description: str = ""


def callbacks_of(given: Any) -> dict[str, Callback]:
    """The callbacks of a session, from either form a user may give them in.

    Raises:
        InvalidArguments: not a mapping or list of them, a name that is not an
            identifier, or something that cannot be called.
    """
    if given is None:
        return {}
    items: Iterable[tuple[Any, Any, Any]]
    if isinstance(given, Mapping):
        items = ((name, fn, "") for name, fn in given.items())
    elif isinstance(given, (list, tuple)):
        try:
            items = [(c["name"], c["fn"], c.get("description", "")) for c in given]
        except (TypeError, KeyError) as exc:
            raise InvalidArguments(
                f"each callback must be a dict with 'name' and 'fn' (missing {exc})"
            ) from None
    else:
        raise InvalidArguments(
            "callbacks must be a dict {name: function} or a list of "
            "{'name': …, 'fn': …, 'description': …}"
        )
    found: dict[str, Callback] = {}
    for name, fn, description in items:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidArguments(f"callback name {name!r} is not a Python identifier")
        if not callable(fn):
            raise InvalidArguments(f"callback {name!r} is not callable")
        found[name] = Callback(name, fn, str(description or ""))
    return found


def run_callback(
    callback: Callback,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loop: asyncio.AbstractEventLoop | None = None,
) -> Any:
    """Call a host callback; a coroutine function is run to its end.

    ``loop`` is the host's running event loop (`AsyncSession`): coroutines run
    there. Without one, a coroutine runs on a loop of its own.
    """
    result = callback.fn(*args, **kwargs)
    if not inspect.isawaitable(result):
        return result
    if loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(result))
    # Called from inside a running loop (a sync Session used in async code): not here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _awaited(result)).result()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


#: The callbacks of the session running in this process, by name (a worker has one).
_CURRENT: dict[str, Callable[..., Any]] = {}


def bound(name: str) -> Callable[..., Any]:
    """The callback ``name`` of the session that runs here (a restored reference to one)."""
    found = _CURRENT.get(name)
    if found is not None:
        return found
    return _Missing(name)


def install(callbacks: Mapping[str, Callable[..., Any]]) -> None:
    """Make ``callbacks`` the ones a restored reference by name finds."""
    _CURRENT.clear()
    _CURRENT.update(callbacks)


class _Missing:
    """A reference to a callback this session does not have: calling it says so."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise CallbackError(self.name, "this session has no callback of that name")

    def __reduce__(self) -> Any:
        return (bound, (self.name,))

    def __repr__(self) -> str:
        return f"<missing stashdb callback {self.name}>"


class CallbackProxy:
    """A callback as the code sees it: calling it asks the host and waits for the answer."""

    def __init__(self, name: str, description: str, call: Callable[..., Any]) -> None:
        self.name = name
        self.__doc__ = description or None
        self._call = call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.name, args, kwargs)

    def __reduce__(self) -> Any:
        # Stored by name: bound again to the callback of the session that restores it.
        return (bound, (self.name,))

    def __repr__(self) -> str:
        return f"<stashdb callback {self.name}>"
