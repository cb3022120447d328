"""Values to pickle streams and back.

Pickling goes the cheap way first: the C pickler at protocol 5, with large
buffers (numpy, pandas, arrow) handed out of band so they are hashed in place.
Only what it cannot do (lambdas, closures, functions and classes defined in the
workspace) goes to dill, whose pure-Python pickler is 10–20× slower on plain
data (DESIGN.md, "Commit").

Classes and functions defined in the workspace are pickled by value when they
are the value being stored, and *by name* everywhere else, so that an instance
comes back as an instance of the restored class (``isinstance(p, Point)``).
References to the namespace itself (a function's globals) are stored as a
placeholder and bound to the namespace being restored into.
"""

from __future__ import annotations

import copyreg
import functools
import io
import pickle
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from stashdb.pickling import stored_names
from stashdb.pickling.definitions import _create_function, is_workspace_defined, reduce_definition
from stashdb.pickling.references import refers_to
from stashdb.pickling.stored_names import stored_as

__all__ = [
    "Group",
    "Pickled",
    "Unpicklable",
    "WorkspaceRefs",
    "dumps",
    "dumps_alias",
    "group_values",
    "is_workspace_defined",
    "loads",
]

PROTOCOL = 5
#: Buffers at least this big leave the stream and are chunked and hashed in place.
OUT_OF_BAND_MIN = 64 * 1024

class Unpicklable(Exception):
    """A value cannot be stored; ``reason`` says why, for the skipped entry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@stored_as("stashdb.serialize")
class Group(NamedTuple):
    """How names that share objects are stored together (part of the stored format).

    The names are in the object, so two groups whose values happen to be
    equal are two objects, and each name restores to its own group's value.
    """

    names: tuple[str, ...]
    values: tuple[Any, ...]


def group_values(loaded: Any) -> Any:
    """The values of a loaded group object (stores written before `Group` held a tuple)."""
    return loaded.values if isinstance(loaded, Group) else loaded


@dataclass(frozen=True)
class Pickled:
    """A pickled value: who pickled it, the stream, its out-of-band buffers."""

    pickler: str  # "pickle" (C pickler) or "dill"
    parts: list[Any]  # the stream, then each buffer (memoryviews, not copies)
    seconds: float
    #: Workspace names the stream refers to: the snapshot must hold them for it to restore.
    refers_to: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        """Bytes of the stream and its buffers."""
        return sum(memoryview(p).nbytes for p in self.parts)


@dataclass
class WorkspaceRefs:
    """Which objects of the namespace are pickled by name rather than by value.

    ``by_name`` maps ``id(obj)`` to the name under which a class or function
    defined in the workspace is stored in this snapshot.
    """

    namespace: Mapping[str, Any]
    module: str
    by_name: dict[int, str]

    @property
    def modules(self) -> frozenset[str]:
        """The module names under which workspace definitions are pickled by reference."""
        return frozenset({self.module, "__main__"})

    @classmethod
    def of(cls, namespace: Mapping[str, Any], names: Iterable[str]) -> WorkspaceRefs:
        """The workspace classes and functions among ``names`` of ``namespace``."""
        module = str(namespace.get("__name__", "__main__"))
        by_name: dict[int, str] = {}
        for name in names:
            value = namespace[name]
            # The binding that matches the object's own __name__ wins (P = Point).
            if is_workspace_defined(value, module) and (
                id(value) not in by_name or getattr(value, "__name__", None) == name
            ):
                by_name[id(value)] = name
        return cls(namespace, module, by_name)


def _live_resource_types() -> tuple[type, ...]:
    """Types that stand for process-local resources: restoring them elsewhere is meaningless.

    The C pickler refuses these, but dill would "pickle" a lock as a new lock
    and an open file by reopening its path, which is worse than skipping.
    """
    import _thread
    import socket
    import threading

    found: list[type] = [
        type(_thread.allocate_lock()),
        type(threading.RLock()),
        threading.Thread,
        io.IOBase,
        socket.socket,
        types.GeneratorType,
        types.CoroutineType,
        types.AsyncGeneratorType,
        types.FrameType,
        types.TracebackType,
    ]
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None:
        found += [sqlite3.Connection, sqlite3.Cursor]
    return tuple(found)


def _timed(
    fn: Callable[[], tuple[str, list[Any]]], refs: WorkspaceRefs, named: Iterable[str] = ()
) -> Pickled:
    start = time.perf_counter()
    pickler, parts = fn()
    seconds = time.perf_counter() - start
    # By name: the names dill's pickler referred to, and the workspace globals in the stream.
    return Pickled(pickler, parts, seconds, refers_to(parts[0], refs.modules) | set(named))


def dumps(value: Any, refs: WorkspaceRefs, *, roots: Iterable[str] = ()) -> Pickled:
    """Pickle ``value``, whose top-level members are stored under ``roots``.

    Raises:
        Unpicklable: neither the C pickler nor dill can store it.
    """
    root_names = set(roots)
    root_ids = {oid for oid, name in refs.by_name.items() if name in root_names}
    members = _members(value, root_names)
    for member in members:
        if isinstance(member, type):
            # copyreg caches __slotnames__ on a class the first time one of its
            # instances is pickled; fill the cache now, or the class's own pickle
            # would change (and be stored again) after its first instance is.
            copyreg._slotnames(member)  # type: ignore[attr-defined]
    needs_dill = any(id(v) in root_ids for v in members)
    if not needs_dill:
        try:
            return _timed(lambda: _dumps_c(value), refs)
        except RecursionError as exc:
            raise Unpicklable(f"nesting too deep to pickle ({exc})") from None
        except Exception as first:
            c_error = first
    else:
        c_error = None
    try:
        named: set[str] = set()
        return _timed(lambda: _dumps_dill(value, refs, root_ids, named), refs, named)
    except Unpicklable:
        raise
    except RecursionError as exc:
        raise Unpicklable(f"nesting too deep to pickle ({exc})") from None
    except Exception as exc:
        raise Unpicklable(_reason(c_error if c_error is not None else exc, exc)) from None


def dumps_alias(name: str) -> Pickled:
    """A stream that stands for the workspace class or function stored as ``name``."""
    stream = io.BytesIO()
    pickler = pickle.Pickler(stream, protocol=PROTOCOL)
    pickler.persistent_id = lambda obj: ("global", name) if obj is _ALIAS else None  # type: ignore[method-assign]
    pickler.dump(_ALIAS)
    return Pickled("pickle", [stream.getvalue()], 0.0, frozenset({name}))


_ALIAS = object()


def _members(value: Any, roots: set[str]) -> list[Any]:
    # A group is pickled as a Group of its members' values; a single value alone.
    if len(roots) > 1 and isinstance(value, Group):
        return list(value.values)
    return [value]


def _reason(c_error: BaseException, dill_error: BaseException) -> str:
    first = f"{type(c_error).__name__}: {c_error}"
    if dill_error is c_error:
        return _clip(first)
    return _clip(f"{first} (dill: {type(dill_error).__name__}: {dill_error})")


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _buffer_callback(buffers: list[Any]) -> Callable[[pickle.PickleBuffer], bool]:
    def collect(buffer: pickle.PickleBuffer) -> bool:
        shaped = memoryview(buffer)
        if shaped.nbytes < OUT_OF_BAND_MIN:
            return True  # small buffers stay in the stream
        # A C-contiguous 2-D buffer keeps its shape: chunks align on its rows.
        buffers.append(shaped if shaped.ndim > 1 and shaped.c_contiguous else buffer.raw())
        return False

    return collect


def _dumps_c(value: Any) -> tuple[str, list[Any]]:
    from stashdb.pickling import reducers

    buffers: list[Any] = []
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=PROTOCOL, buffer_callback=_buffer_callback(buffers))
    pickler.dispatch_table = reducers.dispatch_table()  # string columns as codes
    pickler.dump(value)
    return "pickle", [out.getbuffer(), *buffers]


def _dumps_dill(
    value: Any, refs: WorkspaceRefs, root_ids: set[int], named: set[str]
) -> tuple[str, list[Any]]:
    import dill

    resources = _live_resource_types()
    namespace = refs.namespace

    class WorkspacePickler(dill.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if obj is namespace:
                return ("ns",)
            name = refs.by_name.get(id(obj))
            if name is not None and id(obj) not in root_ids:
                named.add(name)
                return ("global", name)
            return None

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, functools.cached_property):
                return reduce_definition(obj, False, namespace)  # before its lock is met
            if isinstance(obj, resources):
                raise Unpicklable(
                    f"cannot pickle {type(obj).__name__!r} object: a live resource of this "
                    "process (lock, file, socket, thread, generator, connection …) "
                    "cannot be restored elsewhere"
                )
            return reduce_definition(obj, id(obj) in root_ids, namespace)

    buffers: list[Any] = []
    stream = io.BytesIO()
    WorkspacePickler(stream, protocol=PROTOCOL, buffer_callback=_buffer_callback(buffers)).dump(
        value
    )
    return "dill", [stream.getvalue(), *buffers]


class _WorkspaceUnpickler(pickle.Unpickler):
    def __init__(
        self,
        stream: Any,
        buffers: list[Any],
        module: str,
        resolve: Callable[[str], Any],
        namespace: dict[str, Any],
    ) -> None:
        super().__init__(stream, buffers=buffers)
        self._module = module
        self._resolve = resolve
        self._namespace = namespace

    def find_class(self, module: str, name: str) -> Any:
        stored = stored_names.find(module, name)
        if stored is not None:
            return stored
        if module in (self._module, "__main__"):
            head, _, rest = name.partition(".")
            obj = self._resolve(head)
            for attr in rest.split(".") if rest else ():
                obj = getattr(obj, attr)
            return obj
        # Names older dill streams use (dill.Unpickler does the same).
        if (module, name) == ("__builtin__", "NoneType"):
            return type(None)
        if module == "dill.dill":
            module = "dill._dill"
        if (module, name) == ("dill._dill", "_create_function"):
            return _create_function
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            # A stashdb object a user stored, named by stashdb 0.1.0's module layout.
            found = stored_names.moved(module, name) if module.startswith("stashdb.") else None
            if found is None:
                raise
            return found

    def persistent_load(self, pid: Any) -> Any:
        if pid == ("ns",):
            return self._namespace
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "global":
            return self._resolve(pid[1])
        raise pickle.UnpicklingError(f"unknown persistent reference {pid!r}")


def loads(
    parts: list[Any],
    *,
    module: str,
    resolve: Callable[[str], Any],
    namespace: dict[str, Any],
) -> Any:
    """Unpickle an object's parts.

    Args:
        parts: the stream, then its out-of-band buffers.
        module: the workspace's module name when it was committed.
        resolve: gives the object a workspace name stands for (a class or
            function stored in the same snapshot, or found in the namespace).
        namespace: the namespace restored functions use as their globals.
    """
    stream, *buffers = parts
    return _WorkspaceUnpickler(io.BytesIO(stream), buffers, module, resolve, namespace).load()
